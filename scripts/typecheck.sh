#!/usr/bin/env bash
# mypy --strict over the installed package names. The folders api/, workers/, adapters/, store/
# are installed as scim_bridge.api, ... (pyproject's package-dir), which mypy cannot follow, so it
# reads them through a tree of links named the way they are imported.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SCIM_BRIDGE_VENV:-.venv}"
TREE=build/typecheck/scim_bridge
rm -rf build/typecheck && mkdir -p "$TREE"
for part in $(python3 -c 'import tomllib; d = tomllib.load(open("pyproject.toml", "rb")); print(" ".join(d["tool"]["setuptools"]["package-dir"].values()))'); do
  ln -s "../../../$part" "$TREE/$part"
done
MYPYPATH=build/typecheck exec "$VENV/bin/mypy" -p scim_bridge "$@"
