#!/bin/sh
# Record what Postfix 3.7.11 (the Debian package, installed, not running)
# does with the mail that tests/qmgr.rs sends through rostfix: a private
# instance under /var/tmp runs pickup, cleanup, qmgr, local (to a scratch
# mail_spool_directory), error/retry and discard. Two messages, then
# `postqueue -f`. Writes tests/golden/qmgr/postfix.maillog and
# postfix.mailbox (raw; the test normalises IDs, dates, delays and pids).
# Run as root from the repository top.
set -eu
P=/var/tmp/record-qmgr.$$
OUT=tests/golden/qmgr
mkdir -p $P/conf $P/q $P/data $P/spool "$OUT"
chmod 1777 $P/spool
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
mail_spool_directory = $P/spool
alias_maps =
alias_database =
transport_maps = texthash:$P/conf/transport
EOC
cp tests/golden/qmgr/transport $P/conf/transport
cat tests/golden/qmgr/master.cf - > $P/conf/master.cf <<EOC
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
EOC
touch -d '1 hour ago' $P/conf/*
postfix -c $P/conf start
sleep 1
printf 'Subject: hello\n\nbody line\n' |
    sendmail -C $P/conf -f sender@test.example root@test.example nobody@discard.example nobody@retry.example
sleep 3
printf 'Subject: two\n\nsecond\n' |
    sendmail -C $P/conf -f sender@test.example root@test.example nobody@discard.example
sleep 3
postqueue -c $P/conf -f
sleep 3
postfix -c $P/conf stop
sleep 1
cp $P/maillog "$OUT/postfix.maillog"
cp $P/spool/root "$OUT/postfix.mailbox"
rm -rf $P
