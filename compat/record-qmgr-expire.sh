#!/bin/sh
# Record what Postfix 3.7.11 (the Debian package, installed, not running)
# logs for the expiry scenario of tests/qmgr.rs
# (expiry_and_warning_log_like_postfix): one message to a deferring
# destination (retry:4.4.4), with 1 s backoff times, delay_warning_time =
# 1s and maximal_queue_lifetime = 4s; the sender's notices go to the
# discard transport. Writes tests/golden/qmgr/expire.maillog (raw; the test
# normalises IDs, dates, delays and pids), or $OUT/expire.maillog when OUT
# is set (the test runs it so for a live comparison). Run as root from the
# repository top.
set -eu
P=/var/tmp/record-qmgr-expire.$$
OUT=${OUT:-tests/golden/qmgr}
mkdir -p $P/conf $P/q $P/data "$OUT"
chown postfix $P/data
cat > $P/conf/main.cf <<EOC
compatibility_level = 3.6
queue_directory = $P/q
data_directory = $P/data
maillog_file = $P/maillog
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = test.example
mydestination = test.example, localhost
alias_maps =
alias_database =
transport_maps = texthash:$P/conf/transport
minimal_backoff_time = 1s
maximal_backoff_time = 1s
queue_run_delay = 1s
maximal_queue_lifetime = 4s
bounce_queue_lifetime = 4s
delay_warning_time = 1s
EOC
cp "$(dirname "$0")/../tests/golden/qmgr/expire.transport" $P/conf/transport
cat > $P/conf/master.cf <<EOC
postlog unix-dgram n - n - 1 postlogd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
EOC
touch -d '1 hour ago' $P/conf/*
postfix -c $P/conf start
sleep 1
printf 'Subject: expire\n\nbody\n' |
    sendmail -C $P/conf -f sender@discard.example nobody@retry.example
# Until the message and both notices are gone (at most 20 s).
n=0
while [ $n -lt 200 ] && [ "$(grep -c ': removed' $P/maillog 2>/dev/null)" != 3 ]; do
    sleep 0.1
    n=$((n + 1))
done
postfix -c $P/conf stop
sleep 1
cp $P/maillog "$OUT/expire.maillog"
rm -rf $P
