#!/bin/sh
# Record the messages and exit statuses of Postfix 3.7.11's `postfix`
# command (through a terminal, as an administrator sees them) into
# compat/golden/postfix-command.txt. Needs root, the unpacked Postfix
# binaries (PFROOT, default /tmp/pfroot; see
# ../shared/reference/running-postfix-3.7.md) and the accounts postfix and
# postdrop. Usage: compat/record-postfix-command.sh [OUT]
set -eu
PFROOT=${PFROOT:-/tmp/pfroot}
OUT=${1:-$(dirname "$0")/golden/postfix-command.txt}
W=$(mktemp -d /tmp/pfcmd.XXXXXX)
trap 'PF stop >/dev/null 2>&1 || true; rm -rf "$W"' EXIT
L=$PFROOT/usr/lib/postfix:$PFROOT/usr/lib/x86_64-linux-gnu
export LD_LIBRARY_PATH=$L
chmod 755 "$W"
mkdir -p "$W/conf" "$W/q" "$W/data"
chown postfix "$W/data"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$W/conf/main.cf" <<EOT
compatibility_level = 3.6
queue_directory = $W/q
data_directory = $W/data
daemon_directory = $PFROOT/usr/lib/postfix/sbin
command_directory = $PFROOT/usr/sbin
meta_directory = $PFROOT/etc/postfix
shlib_directory = $PFROOT/usr/lib/postfix
maillog_file = $W/maillog
maillog_file_prefixes = /tmp
import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ XAUTHORITY DISPLAY LANG=C POSTLOG_SERVICE POSTLOG_HOSTNAME LD_LIBRARY_PATH=$L
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
EOT
cat > "$W/conf/master.cf" <<EOT
127.0.0.1:$PORT inet n - n - - smtpd
postlog unix-dgram n - n - 1 postlogd
EOT
touch -d '1 hour ago' "$W/conf/main.cf" "$W/conf/master.cf"
PF() { "$PFROOT/usr/sbin/postfix" -c "$W/conf" "$@"; }
run() {
    label=$1; shift
    # A terminal on stderr, so that postfix-script's messages are printed.
    script -qec "$PFROOT/usr/sbin/postfix -c $W/conf $*; echo rc=\$?" /dev/null \
        | tr -d '\r' > "$W/out"
    rc=$(sed -n 's/^rc=//p' "$W/out")
    echo "== $label rc=$rc"
    grep -v '^rc=' "$W/out" | sed 's/PID: [0-9]*/PID: <PID>/' || true
}
{
    echo "# Recorded from Postfix 3.7.11 by compat/record-postfix-command.sh"
    run "status (not running)" status
    run "stop (not running)" stop
    run "abort (not running)" abort
    run "reload (not running)" reload
    PF start >"$W/start.out" 2>&1 || { cat "$W/start.out" "$W/maillog" >&2; exit 1; }
    run "start (running)" start
    run "status (running)" status
    run "reload (running)" reload
    run "stop (running)" stop
    run "unknown command" bogus
    run "no command" ""
    run "flush (no qmgr)" flush
} > "$OUT"
