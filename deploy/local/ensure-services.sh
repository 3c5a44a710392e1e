#!/usr/bin/env bash
# Make PostgreSQL and Redis (and the test tools: Chromium, dcmtk, gettext) reachable for
# the test suite: use what runs, start what is installed, install with apt what is missing
# (only as root). Prints the URLs to use as shell assignments on stdout; talks on stderr.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
say() { echo "[services] $*" >&2; }
die() { echo "[services] error: $*" >&2; exit 1; }

can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }
APT_UPDATED=0
apt_install() {
  can_apt || return 1
  if [ "$APT_UPDATED" = 0 ]; then apt-get update -qq >&2 || true; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

PG_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/hub}"
REDIS="${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"

pg_ok() { $PY - "$1" <<'PYEOF' 2>/dev/null
import sys, psycopg
from urllib.parse import urlsplit, urlunsplit
u = urlsplit(sys.argv[1])
# Connect to the maintenance database: the test database is created by the suite.
psycopg.connect(urlunsplit(u._replace(path="/postgres")), connect_timeout=3).close()
PYEOF
}
redis_ok() { $PY -c "import redis,sys; redis.Redis.from_url(sys.argv[1], socket_timeout=3).ping()" "$1" 2>/dev/null; }

start_pg() {
  if command -v pg_ctlcluster >/dev/null && ls /etc/postgresql >/dev/null 2>&1; then
    for ver in $(ls /etc/postgresql); do
      pg_ctlcluster --skip-systemctl-redirect "$ver" main start >&2 2>&1 || true
    done
  fi
}

# The embedded PostgreSQL 18 and Valkey that `make run` uses (PyPI wheels, alliance/embedded.py),
# in a data folder of the suite's own: chosen by HUB_TEST_SERVERS=embedded, and the fallback on
# a machine where neither server runs and none can be installed (no root or no apt).
embedded_env() {
  local folder="${HUB_TEST_SERVERS_DIR:-$PWD/var/test-servers}"
  say "using the embedded PostgreSQL and Valkey (data in $folder)"
  HUB_DATA_DIR="$folder" HUB_PG_PORT="${HUB_TEST_PG_PORT:-25442}" \
    HUB_REDIS_PORT="${HUB_TEST_REDIS_PORT:-26389}" "$PY" -m alliance.embedded test-env
}
if [ "${HUB_TEST_SERVERS:-}" = embedded ] \
  || { ! can_apt && ! pg_ok "$PG_URL" && ! command -v pg_ctlcluster >/dev/null; }; then
  servers="$(embedded_env)" || die "the embedded servers did not start (see above)."
  eval "$servers"
  PG_URL="$DATABASE_URL" REDIS="$REDIS_URL"
fi

if ! pg_ok "$PG_URL"; then
  say "PostgreSQL not reachable at $PG_URL; trying to start it"
  start_pg; sleep 2
  if ! pg_ok "$PG_URL" && ! command -v pg_ctlcluster >/dev/null; then
    say "installing PostgreSQL with apt"
    apt_install postgresql || die "PostgreSQL is not running at $PG_URL and cannot be installed here (needs root and apt). Start one, or set TEST_DATABASE_URL."
    start_pg; sleep 2
  fi
  if ! pg_ok "$PG_URL" && [ -z "${TEST_DATABASE_URL:-}" ] && can_apt; then
    # A fresh Debian cluster wants a password over TCP: give the postgres role one.
    say "setting a local password for the postgres role"
    su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'hub-test'\"" >&2
    PG_URL="postgres://postgres:hub-test@127.0.0.1:5432/hub"
  fi
  pg_ok "$PG_URL" || die "PostgreSQL is still not reachable at $PG_URL."
fi

if ! redis_ok "$REDIS"; then
  say "Redis not reachable at $REDIS; trying to start it"
  if ! command -v redis-server >/dev/null; then
    apt_install redis-server || die "Redis is not running at $REDIS and cannot be installed here (needs root and apt). Start one, or set TEST_REDIS_URL."
  fi
  mkdir -p /tmp/hub-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp/hub-redis --logfile /tmp/hub-redis/redis.log >&2
  sleep 1
  redis_ok "$REDIS" || die "Redis is still not reachable at $REDIS."
fi

# Tools the integration tests drive: Debian's Chromium, dcmtk's DICOM peers, gettext...
deploy/local/ensure-tools.sh

echo "DATABASE_URL='$PG_URL'"
echo "REDIS_URL='$REDIS'"
