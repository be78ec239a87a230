#!/usr/bin/env bash
# Installs PostgreSQL's server binaries for the test suite (tests/pg.py starts a
# throwaway cluster of its own). Idempotent; run as root: `bash .ci/postgres.sh`.
# Takes ~25 s the first time. Debian's default version (15 on Debian 12) is used.
set -euo pipefail

if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    echo "PostgreSQL is already installed: $(ls -d /usr/lib/postgresql/*/bin/initdb | head -1)"
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    echo "postgres.sh: run as root (apt-get install needs it)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql >/dev/null
# The package starts no server here (no systemd); tests run their own cluster.
ls -d /usr/lib/postgresql/*/bin/initdb
