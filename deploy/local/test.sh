#!/usr/bin/env bash
# `make test`: services up, lint, type-check, then the whole pytest suite on PostgreSQL + Redis.
set -euo pipefail
cd "$(dirname "$0")/../.."
services="$(deploy/local/ensure-services.sh)"
eval "$services"
export DATABASE_URL REDIS_URL
export HUB_ENV=test
export HUB_DATA_DIR="${HUB_DATA_DIR:-$PWD/var/test}"
echo "[test] PostgreSQL: ${DATABASE_URL%%@*}@…  Redis: $REDIS_URL"

echo "[test] ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "[test] mypy"
.venv/bin/mypy .
.venv/bin/python manage.py compile_translations >/dev/null
echo "[test] pytest"
set +e
# The JUnit report is what `make security-check` reads its probes from afterwards.
.venv/bin/python -m pytest --junitxml="$HUB_DATA_DIR/junit.xml" "$@"
status=$?
set -e
if [ "$status" = 5 ]; then echo "[test] error: pytest collected no tests" >&2; exit 1; fi
exit "$status"
