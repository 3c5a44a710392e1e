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
# Procfile notes: `exec` so that honcho signals the real programs (no shell in between to
# leave a zombie); the worker uses the threads pool because honcho stops a process by
# signalling its whole process group, which would kill prefork children mid-task instead of
# letting the warm shutdown finish them.
# honcho SIGKILLs whatever still runs 5 s after Ctrl-C. The worker's warm shutdown on the
# polling filesystem broker alone can take 4-5 s, and every task it holds is lost from that
# broker if it is killed, so give it HUB_STOP_TIMEOUT seconds (honcho has no option for it).
exec "$PY" -c '
import sys
import honcho.manager
from honcho.command import main
honcho.manager.KILL_WAIT = float(sys.argv.pop(1))
main()
' "${HUB_STOP_TIMEOUT:-15}" --no-prefix -d . -f deploy/local/Procfile start
