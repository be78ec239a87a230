"""The one wording of "the database cannot be used", for the app and ``parley db``."""

from __future__ import annotations

from bots.config import ParleyConfig, database_url
from bots.errors import StartupError


def database_error(config: ParleyConfig, exc: BaseException) -> StartupError:
    """One sentence: which database (password masked), what is wrong, what to check."""
    from core.http import redact_url
    from core.store.errors import describe_database_error

    url = database_url(config)
    where = (
        "check database.url"
        if config.database.url
        else "check $PARLEY_HOME, or set database.url in the config"
    )
    return StartupError(
        f"cannot use the database at {redact_url(url)}: "
        f"{describe_database_error(exc, url)}; {where}"
    )
