#!/usr/bin/env bash
# README command 2: set up the virtualenv (.venv) and run the whole test suite.
# Extra arguments go to pytest. Real components: SLURM tests need `scripts/slurm-up.sh` (root);
# rclone and MLflow servers are started by the tests themselves. Outside CI a missing component
# skips its tests with the reason; in CI (CI=true) it fails them.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -m pip install -q -e '.[all,test]' 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -c 'import runlock, omegaconf, pytest' # fail early if the install did not work
exec .venv/bin/python -m pytest "$@"
