#!/usr/bin/env bash
# scripts/run after its install (tests/system/test_answers_never_wait.py runs this part as it is):
# migrate, then the server and, without a broker, the job runner next to it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export DEBUG="${DEBUG:-true}"
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
.venv/bin/python manage.py migrate --noinput
.venv/bin/python manage.py ensure_admin --url "http://$HOST:$PORT/admin/"
if [ -n "${REDIS_URL:-}" ]; then
  # A broker: the jobs are the Celery worker's and beat's (Procfile), not this script's.
  exec .venv/bin/python manage.py runserver "$HOST:$PORT"
fi
# The runner's parent is this process, then the server that replaces it (exec keeps the pid): it
# stops within a second of the server (Ctrl-C reaches both, a kill only the server).
.venv/bin/python manage.py koogallery_run_jobs --with-parent &
exec .venv/bin/python manage.py runserver "$HOST:$PORT"
