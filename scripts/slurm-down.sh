#!/usr/bin/env bash
# Stops what slurm-up.sh started, by PID file only. Idempotent. Env: SLURM_DIR (default /tmp/slurm-local),
# SLURM_PURGE=1 also deletes $SLURM_DIR (job state, logs).
SLURM_DIR=${SLURM_DIR:-/tmp/slurm-local}
stop_pidfile() {  # stop_pidfile <pidfile>: SIGTERM, wait up to 10 s, then SIGKILL
  local f=$1 pid
  [ -s "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  rm -f "$f"
}
# Cancel jobs first so that their slurmstepd/job processes end too (only if slurmctld is up:
# otherwise scancel retries for ~20 s).
if [ -s "$SLURM_DIR/run/slurmctld.pid" ] && kill -0 "$(cat "$SLURM_DIR/run/slurmctld.pid")" 2>/dev/null; then
  scancel --user=root 2>/dev/null; sleep 0.5
fi
stop_pidfile "$SLURM_DIR/run/slurmd.pid"
stop_pidfile "$SLURM_DIR/run/slurmctld.pid"   # its child slurmscriptd exits with it
stop_pidfile "$SLURM_DIR/run/slurmdbd.pid"
stop_pidfile "$SLURM_DIR/mysql/mariadb.pid"
stop_pidfile /run/munge/munged.pid
[ "${SLURM_PURGE:-0}" = 1 ] && rm -rf "$SLURM_DIR"
echo "SLURM stopped."
