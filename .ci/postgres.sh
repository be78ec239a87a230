#!/usr/bin/env bash
# Installs PostgreSQL 15 for the test suite (tests/pg.py starts a throwaway cluster).
# Idempotent; run as root: `bash .ci/postgres.sh`. Takes ~25 s the first time.
set -euo pipefail

if [[ -x /usr/lib/postgresql/15/bin/initdb ]]; then
    echo "postgresql-15 is already installed"
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    echo "postgres.sh: run as root (apt-get install needs it)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends postgresql-15
# The package starts no server here (no systemd); tests run their own cluster.
/usr/lib/postgresql/15/bin/initdb --version
