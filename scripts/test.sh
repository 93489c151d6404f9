#!/usr/bin/env bash
# Install scim-bridge with its test tools into .venv and run the whole test suite.
# The suite starts what it needs itself: a redis-server on a free port, a Celery worker,
# gunicorn. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SCIM_BRIDGE_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e '.[test]'
exec "$VENV/bin/python" -m pytest "$@"
