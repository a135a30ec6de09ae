#!/bin/sh
# Re-record compat/pipe/golden from Postfix 3.7.11's pipe(8) (as root, with
# the Debian postfix package installed but not running).
#  1. A private instance in /var/tmp/t6-pipe/pf (main.cf: default_transport =
#     rec1, transport_maps = inline:{t2.test=rec2, ...}, defer_transports =
#     all the pipe services, recipient_delimiter = +, rec5_time_limit = 2s,
#     rec1/dovecot_destination_recipient_limit = 1; master.cf: the pipe
#     services of golden/master.cf, smtpd on 127.0.0.1:12625, postlog).
#  2. postfix -c DIR start; python3 send.py 12625 (messages wait in deferred).
#  3. cp queue/deferred/*/* golden/queue/ (the queue files, unchanged).
#  4. Remove defer_transports, postfix reload, postqueue -f: rec.sh records
#     argv, environment and stdin of each delivery in out/pf (golden/out).
#  5. grep 'postfix/pipe[' maillog | sed 's/^.*pipe\[[0-9]*\]: //' | sort
#     > golden/pipe.log
# The test (src/daemons/pipe/tests.rs) delivers golden/queue with our pipe
# and compares what rec.sh received and the log lines.
set -e
B=/var/tmp/t6-pipe
echo "see the steps above; scratch base $B" >&2
