#!/usr/bin/env bash
# Stops the server started by mlflow-up.sh: its whole process group (mlflow CLI + uvicorn
# worker), found through the PID file. Idempotent. MLFLOW_PURGE=1 also deletes db and artifacts.
D=${MLFLOW_DIR:-/tmp/runlock-mlflow}
PIDF="$D/run/mlflow.pid"
if [ -s "$PIDF" ] && kill -0 "$(cat "$PIDF")" 2>/dev/null; then
  pgid=$(cat "$PIDF")              # started with setsid, so PID == process-group ID
  kill -TERM -- "-$pgid"
  for _ in $(seq 1 50); do kill -0 -- "-$pgid" 2>/dev/null || break; sleep 0.2; done
  kill -0 -- "-$pgid" 2>/dev/null && kill -KILL -- "-$pgid"
fi
rm -f "$PIDF"
if [ "${MLFLOW_PURGE:-0}" = 1 ]; then rm -rf "$D/mlflow.db" "$D/artifacts"; fi
echo "mlflow server stopped."
