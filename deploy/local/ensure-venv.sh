#!/usr/bin/env bash
# Create the project's virtualenv, installing Debian's python3-venv first if it is missing.
set -euo pipefail
PYTHON="${1:-python3}"
VENV="${2:-.venv}"
[ -x "$VENV/bin/python" ] && exit 0
if ! command -v "$PYTHON" >/dev/null; then
  echo "error: $PYTHON not found; the hub needs Python 3.11 or newer." >&2; exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "error: $("$PYTHON" --version) is too old; the hub needs Python 3.11 or newer." >&2; exit 1
fi
if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
  rm -rf "$VENV"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    ver="$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python${ver}-venv" \
      || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
    "$PYTHON" -m venv "$VENV"
  else
    echo "error: '$PYTHON -m venv' failed. Install your distribution's python3-venv package." >&2
    exit 1
  fi
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
