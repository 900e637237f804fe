#!/usr/bin/env bash
# Stops the server started by rclone-up.sh, by PID file. Idempotent.
# RCLONE_SERVE_PURGE=1 also deletes $RCLONE_SERVE_DIR (the served data).
D=${RCLONE_SERVE_DIR:-/tmp/runlock-rclone}
for f in "$D"/run/*.pid; do
  [ -s "$f" ] || continue
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 25); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  rm -f "$f"
done
[ "${RCLONE_SERVE_PURGE:-0}" = 1 ] && rm -rf "$D"
echo "rclone server stopped."
