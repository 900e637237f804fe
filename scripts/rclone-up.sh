#!/usr/bin/env bash
# runlock's own copy of the infra reference: a real network remote for the push/pull tests.
# Starts `rclone serve sftp` (keeps hashes and mtimes, unlike webdav) on 127.0.0.1, serving
# $RCLONE_SERVE_DIR/data with user/password auth; installs rclone (Debian) when missing.
# Idempotent; prints the RCLONE_CONFIG_* exports that make it the remote `sftplocal:`.
# (The tests do not need this: tests/conftest_rclone.py starts its own server on a free port.)
# Env: RCLONE_SERVE_DIR (default /tmp/runlock-rclone), SFTP_PORT (12022),
#      RCLONE_SERVE_USER (test), RCLONE_SERVE_PASS (test)
set -euo pipefail
D=${RCLONE_SERVE_DIR:-/tmp/runlock-rclone}
SFTP_PORT=${SFTP_PORT:-12022}
U=${RCLONE_SERVE_USER:-test}; P=${RCLONE_SERVE_PASS:-test}
if ! command -v rclone >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rclone >/dev/null
fi
mkdir -p "$D/data" "$D/run" "$D/log"
: > "$D/rclone.conf"   # an empty config of our own: rclone may rewrite it, never /dev/null
export RCLONE_CONFIG="$D/rclone.conf"   # remotes come from the environment only

if ! { [ -s "$D/run/sftp.pid" ] && kill -0 "$(cat "$D/run/sftp.pid")" 2>/dev/null; }; then
  setsid rclone serve sftp --addr "127.0.0.1:$SFTP_PORT" --user "$U" --pass "$P" \
    --cache-dir "$D/cache" "$D/data" </dev/null >"$D/log/sftp.log" 2>&1 &
  echo $! > "$D/run/sftp.pid"
fi

OBSCURED=$(rclone obscure "$P")
export RCLONE_CONFIG_SFTPLOCAL_TYPE=sftp RCLONE_CONFIG_SFTPLOCAL_HOST=127.0.0.1 \
       RCLONE_CONFIG_SFTPLOCAL_PORT="$SFTP_PORT" RCLONE_CONFIG_SFTPLOCAL_USER="$U" \
       RCLONE_CONFIG_SFTPLOCAL_PASS="$OBSCURED"
for _ in $(seq 1 50); do rclone lsf sftplocal: >/dev/null 2>&1 && break; sleep 0.2; done
rclone lsf sftplocal: >/dev/null || { echo "sftp server not answering; see $D/log/sftp.log" >&2; exit 1; }
cat <<EOT
rclone $(rclone version | head -1 | cut -d' ' -f2) serving $D/data over SFTP on 127.0.0.1:$SFTP_PORT (user $U).
  export RCLONE_CONFIG=$D/rclone.conf RCLONE_CONFIG_SFTPLOCAL_TYPE=sftp RCLONE_CONFIG_SFTPLOCAL_HOST=127.0.0.1 \\
         RCLONE_CONFIG_SFTPLOCAL_PORT=$SFTP_PORT RCLONE_CONFIG_SFTPLOCAL_USER=$U RCLONE_CONFIG_SFTPLOCAL_PASS=$OBSCURED
  runlock push RUN --to sftplocal:runs;  runlock remote --remote sftplocal:runs ls
Stop: $(dirname "$(readlink -f "$0")")/rclone-down.sh
EOT
