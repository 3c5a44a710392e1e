#!/usr/bin/env bash
# `make run`: the hub on its embedded PostgreSQL and Valkey, web + Celery worker + beat, until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
export HUB_DATA_DIR="${HUB_DATA_DIR:-$PWD/var}"
export HUB_PORT="${HUB_PORT:-8000}"
export HUB_HOST="${HUB_HOST:-127.0.0.1}"
export PYTHONUNBUFFERED=1

if [ -n "${DATABASE_URL:-}" ] && [ -n "${REDIS_URL:-}" ]; then
  # Servers named by hand: use them, start nothing.
  HUB_OWNER_DATABASE_URL="$DATABASE_URL"
else
  # The real servers production runs, from PyPI wheels, kept under $HUB_DATA_DIR
  # (alliance/embedded.py). They run in sessions of their own: Ctrl-C reaches web, worker and
  # beat only, and once those have stopped (the worker handing back what it holds), this
  # trap stops PostgreSQL and Valkey. A second Ctrl-C does not cut that short.
  stop_servers() { trap '' INT TERM; "$PY" -m alliance.embedded stop || true; }
  trap stop_servers EXIT
  servers="$("$PY" -m alliance.embedded start)"
  eval "$servers"
fi
export DATABASE_URL REDIS_URL

$PY manage.py compile_translations >/dev/null
# As in production: migrate as the schema's owner, then run as hub_app, which owns nothing.
DATABASE_URL="$HUB_OWNER_DATABASE_URL" $PY manage.py migrate --noinput -v0
$PY manage.py seed_demo --if-empty

if [ "$HUB_HOST" = 127.0.0.1 ] || [ "$HUB_HOST" = localhost ]; then
  address="$(hostname -I 2>/dev/null | awk '{print $1}')"
  other_pcs="only this PC. For other PCs on the network, start it with
                        HUB_HOST=0.0.0.0 ALLOWED_HOSTS=${address:-<this-pc-address>},127.0.0.1,localhost make run"
else
  other_pcs="http://<this-pc-address>:${HUB_PORT}/ (the address must be in ALLOWED_HOSTS:
                        now ${ALLOWED_HOSTS:-127.0.0.1,localhost only; set ALLOWED_HOSTS=<address>,127.0.0.1,localhost})"
fi
if [ -n "${EMAIL_HOST:-}" ] || [ -n "${EMAIL_BACKEND:-}" ]; then
  mail_to="sent by ${EMAIL_BACKEND:-SMTP via ${EMAIL_HOST:-}:${EMAIL_PORT:-25}}"
else
  mail_to="not sent: one file per message in ${EMAIL_FILE_PATH:-${HUB_DATA_DIR}/mail}
                        (invitations, password resets; set EMAIL_HOST to send by SMTP)"
fi
cat <<BANNER

  Alliance imaging hub: http://127.0.0.1:${HUB_PORT}/
  Reachable from:       ${other_pcs}
  Demo logins:          tech, referrer, radiologist, senior, hospadmin, allianceadmin,
                        commission, mdt (password hub-demo-2026)
  Data folder:          ${HUB_DATA_DIR} (PostgreSQL, Valkey, images)
  Health:               http://127.0.0.1:${HUB_PORT}/healthz
  Mail:                 ${mail_to}
  Press Ctrl-C to stop the web server, the Celery worker and beat, then the servers.

BANNER
# Report PDFs and MDT minutes are laid out with Pango: without a CJK font, Chinese prints as
# boxes. Say so (and how to fix it) rather than let the first PDF find out.
if command -v fc-list >/dev/null && [ -z "$(fc-list :lang=zh family 2>/dev/null | head -n1)" ]; then
  echo "  Note: no Chinese font found; PDFs will show boxes for Chinese text."
  echo "        Install one: sudo apt install fonts-noto-cjk"
  echo
fi
# Procfile notes: `exec` so that honcho signals the real programs (no shell in between to
# leave a zombie); the worker uses the threads pool because honcho stops a process by
# signalling its whole process group, which would kill prefork children mid-task instead of
# letting the warm shutdown finish them.
# honcho SIGKILLs whatever still runs 5 s after Ctrl-C; a worker finishing a long task needs
# longer, so give it HUB_STOP_TIMEOUT seconds (honcho has no option for it). A killed
# worker's task is not lost (acks_late: Valkey hands it out again), only delayed.
"$PY" -c '
import sys
import honcho.manager
from honcho.command import main
honcho.manager.KILL_WAIT = float(sys.argv.pop(1))
main()
' "${HUB_STOP_TIMEOUT:-15}" --no-prefix -d . -f deploy/local/Procfile start
