#!/usr/bin/env bash
# Single-node SLURM "cluster" on loopback (Debian 12: Slurm 22.05 + MUNGE), run as root.
# Idempotent: installs packages if missing, (re)writes the config, starts only daemons not running,
# restarts slurmctld/slurmd if slurm.conf changed.
# Env: SLURM_DIR  state/log/pid dir (default /tmp/slurm-local)
#      SLURM_DBD=1  (default; 0 to skip) also MariaDB (unix socket only) + slurmdbd, so that `sacct` works
#                   (submitit polls sacct for job states; without it states read UNKNOWN).
set -euo pipefail
SLURM_DIR=${SLURM_DIR:-/tmp/slurm-local}
SLURM_DBD=${SLURM_DBD:-1}
export DEBIAN_FRONTEND=noninteractive
bash "$(dirname "$0")/devnull-ok.sh"   # munged and slurmdbd run as other users

pkgs=(munge slurmctld slurmd slurm-client)
[ "$SLURM_DBD" = 1 ] && pkgs+=(slurmdbd mariadb-server)
missing=(); for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
wait_for() { for _ in $(seq 1 100); do eval "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done; echo "timeout: $1" >&2; return 1; }
HOST=$(hostname -s)
# With NoInAddrAny the daemons bind to what the host name resolves to: make that loopback.
getent hosts "$HOST" | grep -q '^127\.' || echo "127.0.0.1 $HOST" >> /etc/hosts
mkdir -p "$SLURM_DIR"/{ctld,d,log,run} /etc/slurm

# --- MUNGE (authentication; unix socket only) ---
[ -s /etc/munge/munge.key ] || { mungekey --create --force; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
alive /run/munge/munged.pid || runuser -u munge -- /usr/sbin/munged
wait_for "munge -n | unmunge"

# --- slurm.conf for this one node ---
ACCT="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
[ "$SLURM_DBD" = 1 ] && ACCT="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/linux"
# Tuned for tests: cred_expire=10 -> a requeued job may restart after 11 s (default 121 s);
# batch_sched_delay=0 -> jobs start ~1 s after sbatch (default up to 3 s); sched_interval/bf_interval=5
# -> jobs whose BeginTime passed (e.g. requeued) start within 5 s (defaults 60/30 s).
cat > "$SLURM_DIR/slurm.conf.new" <<EOF
ClusterName=local
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$SLURM_DIR/ctld
SlurmdSpoolDir=$SLURM_DIR/d
SlurmctldPidFile=$SLURM_DIR/run/slurmctld.pid
SlurmdPidFile=$SLURM_DIR/run/slurmd.pid
SlurmctldLogFile=$SLURM_DIR/log/slurmctld.log
SlurmdLogFile=$SLURM_DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=5,bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobCompType=jobcomp/filetxt
JobCompLoc=$SLURM_DIR/log/jobcomp.txt
$ACCT
MinJobAge=300
KillWait=10
$(slurmd -C | head -1) NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
if ! cmp -s "$SLURM_DIR/slurm.conf.new" /etc/slurm/slurm.conf; then   # changed: restart running daemons
  mv "$SLURM_DIR/slurm.conf.new" /etc/slurm/slurm.conf
  for d in slurmd slurmctld; do
    if alive "$SLURM_DIR/run/$d.pid"; then kill "$(cat "$SLURM_DIR/run/$d.pid")"; wait_for "! alive $SLURM_DIR/run/$d.pid"; fi
  done
fi
rm -f "$SLURM_DIR/slurm.conf.new"

# --- optional accounting: MariaDB (no TCP) + slurmdbd on 127.0.0.1:6819 ---
if [ "$SLURM_DBD" = 1 ]; then
  install -d -o mysql -g mysql /run/mysqld "$SLURM_DIR/mysql"   # mariadbd runs as mysql: pid/log here
  alive "$SLURM_DIR/mysql/mariadb.pid" || { setsid /usr/sbin/mariadbd --user=mysql --skip-networking \
      --pid-file="$SLURM_DIR/mysql/mariadb.pid" --log-error="$SLURM_DIR/mysql/mariadb.log" </dev/null >/dev/null 2>&1 & }
  wait_for "mysqladmin ping"
  mysql -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
  # NoInAddrAny is undocumented for slurmdbd.conf in 22.05 but works: without it slurmdbd binds 0.0.0.0.
  cat > /etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
CommunicationParameters=NoInAddrAny
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=slurm
PidFile=$SLURM_DIR/run/slurmdbd.pid
LogFile=$SLURM_DIR/log/slurmdbd.log
EOF
  chmod 600 /etc/slurm/slurmdbd.conf
  alive "$SLURM_DIR/run/slurmdbd.pid" || slurmdbd
  wait_for "sacctmgr -n list cluster"
  sacctmgr -n list cluster format=cluster | grep -qw local || sacctmgr -i add cluster local >/dev/null
fi

# --- controller + compute daemon (both daemonize and write their PID files) ---
alive "$SLURM_DIR/run/slurmctld.pid" || slurmctld -i
wait_for "scontrol ping | grep -q UP"
alive "$SLURM_DIR/run/slurmd.pid" || slurmd
wait_for "sinfo -h -o %T | grep -Eq '^(idle|mixed|allocated)'"
sinfo
cat <<EOF
SLURM is up on 127.0.0.1 (slurmctld :6817, slurmd :6818); config /etc/slurm/slurm.conf, logs $SLURM_DIR/log.
  sbatch --wrap 'hostname'; squeue; scancel <id>; scontrol show job <id>
  sacct: $([ "$SLURM_DBD" = 1 ] && echo "enabled (slurmdbd 127.0.0.1:6819, MariaDB on unix socket)" || echo "disabled (SLURM_DBD=0); finished jobs are logged to $SLURM_DIR/log/jobcomp.txt")
  submitit: submitit.AutoExecutor(folder=...) uses this cluster (it finds srun/sbatch on PATH).
Stop: $(dirname "$(readlink -f "$0")")/slurm-down.sh
EOF
