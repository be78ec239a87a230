"""Migration versions (alembic skips this file; it makes the folder an installed package)."""
