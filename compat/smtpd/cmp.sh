#!/bin/bash
# Differential check of smtpd: run one SMTP script against the real Postfix 3.7.11 smtpd
# (PF_PORT, default 20025, with its maillog at PF_LOG) and rostfix's `smtpd -L`
# (RF_PORT, default 20026, started with -o maillog_file=$RF_LOG), from SRC (default
# 127.0.0.2, outside mynetworks = 127.0.0.1/32). Diffs replies and smtpd log lines after
# normalising queue IDs, pids and dates. Script syntax: see smtpc.py.
#
#   printf 'EHLO x\nMAIL FROM:<a@b.c>\nRCPT TO:<x@y.z>\nQUIT\n' | compat/smtpd/cmp.sh
src=${1:-127.0.0.2}
PF_PORT=${PF_PORT:-20025}; RF_PORT=${RF_PORT:-20026}
PF_LOG=${PF_LOG:-/var/tmp/t5-smtpd-pf/maillog}; RF_LOG=${RF_LOG:-/tmp/t5-smtpd/r.log}
here=$(dirname "$0"); tmp=$(mktemp -d)
script=$(cat)
: > "$RF_LOG"
n=$(wc -l < "$PF_LOG")
echo "$script" | python3 "$here/smtpc.py" "$PF_PORT" "$src" > "$tmp/c.p"
echo "$script" | python3 "$here/smtpc.py" "$RF_PORT" "$src" > "$tmp/c.r"
sleep 0.3
norm() { sed -E 's/^.{15} [^ ]+ //; s/\[[0-9]+\]:/:/; s/[0-9A-F]{10,12}/QID/g'; }
sed -i -E 's/queued as [0-9A-F]+/queued as QID/' "$tmp/c.p" "$tmp/c.r"
rc=0
if diff "$tmp/c.p" "$tmp/c.r" > /dev/null; then echo "REPLIES SAME"; else echo "REPLIES DIFFER"; diff "$tmp/c.p" "$tmp/c.r"; rc=1; fi
tail -n +$((n+1)) "$PF_LOG" | grep 'smtpd' | norm > "$tmp/l.p"
norm < "$RF_LOG" > "$tmp/l.r"
if diff "$tmp/l.p" "$tmp/l.r" > /dev/null; then echo "LOGS SAME"; else echo "LOGS DIFFER"; diff "$tmp/l.p" "$tmp/l.r"; rc=1; fi
rm -rf "$tmp"; exit $rc
