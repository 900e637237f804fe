#!/usr/bin/env bash
# MLflow tracking server for runlock's tests and demos: 127.0.0.1 only, SQLite backend, proxied
# artifacts, job execution off. Idempotent (a running server is reused).
# Env: MLFLOW_DIR   state dir (default /tmp/runlock-mlflow): db, artifacts, pid, logs
#      MLFLOW_PORT  (default 5000)
#      MLFLOW_VENV  a venv that has full mlflow (e.g. the project's .venv); default: this repo's
#                   .venv when it has mlflow, else $MLFLOW_DIR/venv, created on first use
#      MLFLOW_SPEC  pip requirement for a created venv (default mlflow==3.17.2; 3.18.0 needs an
#                   mlflow-skinny release the registry lacks)
# Prints the `export MLFLOW_TRACKING_URI=...` line to use. Stop with scripts/mlflow-down.sh.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
D=${MLFLOW_DIR:-/tmp/runlock-mlflow}
PORT=${MLFLOW_PORT:-5000}
if [ -z "${MLFLOW_VENV:-}" ] && [ -x "$HERE/../.venv/bin/mlflow" ]; then
  MLFLOW_VENV="$HERE/../.venv"
fi
VENV=${MLFLOW_VENV:-$D/venv}
mkdir -p "$D/artifacts" "$D/run" "$D/log"
if [ ! -x "$VENV/bin/mlflow" ]; then
  # Full mlflow: mlflow-skinny has neither the server nor SQLAlchemy. ~30-45 s, ~850 MB.
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "${MLFLOW_SPEC:-mlflow==3.17.2}" >"$D/log/pip.log" 2>&1 \
    || { cat "$D/log/pip.log" >&2; exit 1; }
fi
PIDF="$D/run/mlflow.pid"
if ! { [ -s "$PIDF" ] && kill -0 "$(cat "$PIDF")" 2>/dev/null; }; then
  # --workers 1: one uvicorn process (default 4). Job execution off: otherwise MLflow 3 also
  # starts a job runner + huey consumers (~1.9 GB RSS, +5 s). setsid: own process group, so
  # mlflow-down.sh stops the CLI and its uvicorn worker together.
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false} \
  MLFLOW_DISABLE_TELEMETRY=${MLFLOW_DISABLE_TELEMETRY:-true} \
    setsid "$VENV/bin/mlflow" server --host 127.0.0.1 --port "$PORT" --workers 1 \
      --backend-store-uri "sqlite:///$D/mlflow.db" --artifacts-destination "$D/artifacts" \
      </dev/null >"$D/log/server.log" 2>&1 &
  echo $! > "$PIDF"
fi
healthy() { "$VENV/bin/python" - "$PORT" <<'PY' 2>/dev/null
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=1).read()
PY
}
# Boot takes ~6 s on an idle machine, much longer on a loaded one: wait up to 120 s.
for _ in $(seq 1 240); do
  healthy && break
  kill -0 "$(cat "$PIDF")" 2>/dev/null || { echo "mlflow server died; see $D/log/server.log" >&2; exit 1; }
  sleep 0.5
done
healthy || { echo "mlflow server not answering on port $PORT; see $D/log/server.log" >&2; exit 1; }
echo "MLflow server on http://127.0.0.1:$PORT (backend sqlite:///$D/mlflow.db, artifacts $D/artifacts)"
echo "  export MLFLOW_TRACKING_URI=http://127.0.0.1:$PORT"
echo "Stop: $HERE/mlflow-down.sh"
