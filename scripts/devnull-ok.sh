#!/usr/bin/env bash
# Make sure /dev/null is a character device every user can write (mode 666).
# Some sandboxes hand out a /dev/null with mode 644: root does not notice, but apt's `_apt`
# user (gpgv signature checks), munged and slurmdbd run as other users and fail on it with
# "cannot create /dev/null: Permission denied". Needs root to repair; a no-op when it is fine.
set -euo pipefail
if [ -c /dev/null ] && [ "$(stat -c %a /dev/null)" = 666 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "warning: /dev/null is not writable by all users (mode $(stat -c %a /dev/null)); run as root to repair" >&2
  exit 0
fi
echo "repairing /dev/null (was: $(stat -c '%F, mode %a' /dev/null))" >&2
if [ -c /dev/null ]; then
  chmod 666 /dev/null
else
  rm -f /dev/null && mknod -m 666 /dev/null c 1 3
fi
