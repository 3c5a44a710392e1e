#!/usr/bin/env bash
# `make run`: the hub on its embedded default, web + Celery worker + beat, until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
export HUB_DATA_DIR="${HUB_DATA_DIR:-$PWD/var}"
export HUB_PORT="${HUB_PORT:-8000}"
export PYTHONUNBUFFERED=1

$PY manage.py compile_translations >/dev/null
$PY manage.py migrate --noinput -v0
if [ -z "${REDIS_URL:-}" ]; then
  $PY manage.py migrate --database channels --noinput -v0
fi
$PY manage.py seed_demo --if-empty

cat <<BANNER

  Alliance imaging hub: http://127.0.0.1:${HUB_PORT}/
  Data folder:          ${HUB_DATA_DIR}
  Health:               http://127.0.0.1:${HUB_PORT}/healthz
  Press Ctrl-C to stop the web server, the Celery worker and beat.

BANNER
exec .venv/bin/honcho --no-prefix -d . -f deploy/local/Procfile start
