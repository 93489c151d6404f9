#!/usr/bin/env bash
# Install scim-bridge into .venv and run everything on this machine: its own Redis (with an
# append-only file in .scim-bridge/), a Celery worker, beat, and the api on port 8080, with the
# demo legacy application in scim-bridge-legacy.db. Extra arguments go to `scim-bridge dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SCIM_BRIDGE_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e .
exec "$VENV/bin/scim-bridge" dev "$@"
