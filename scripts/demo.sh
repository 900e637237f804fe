#!/usr/bin/env bash
# README command 1: set up the virtualenv and run the demo in a scratch copy of examples/.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -m pip install -q -e '.[demo]' 2>&1 | grep -v '^WARNING: Location' || true
exec .venv/bin/python examples/demo.py "$@"
