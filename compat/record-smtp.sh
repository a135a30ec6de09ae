#!/bin/bash
# Record golden outputs of Postfix 3.7.11's smtp(8)/lmtp(8) client for
# tests/smtp.rs. Needs root, the unpacked Postfix binaries (PFROOT, default
# /tmp/pfroot) and the postfix user.
#
# How: compat/smtp-script-server.py listens on one 127.0.0.1 port per case of
# tests/golden/smtp/cases.txt. A private instance without qmgr accepts one
# message per case through its sendmail; each queue file is copied from
# incoming/ before anything reads it; then qmgr is enabled and the real
# smtp/lmtp client delivers every case to its port (transport_maps), with
# 2-second timeouts. Saved per case: the queue file, the bytes the server
# received (NAME.in) and the client's log lines (NAME.log).
#
# Usage: compat/record-smtp.sh [OUTDIR]   (default tests/golden/smtp)
set -eu
PFROOT=${PFROOT:-/tmp/pfroot}
INST=/var/tmp/t6-smtp           # maillog_file must be under /var
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-$HERE/../tests/golden/smtp}
CASES=$OUT/cases.txt
LIB=$PFROOT/usr/lib/postfix:$PFROOT/usr/lib/x86_64-linux-gnu
export LD_LIBRARY_PATH=$LIB
SBIN=/var/tmp/t6-smtp-bin
pf() { MAIL_CONFIG=$INST/conf "$SBIN/$1" "${@:2}"; }

if [ -f "$INST/conf/main.cf" ]; then pf postfix stop 2>/dev/null || true; sleep 1; fi
rm -rf "$INST"; mkdir -p "$INST/conf" "$INST/spool" "$INST/data" "$INST/in"
chown postfix "$INST/data"
rm -rf "$SBIN"; mkdir -p "$SBIN"
for p in "$PFROOT"/usr/sbin/*; do
  n=$(basename "$p")
  printf '#!/bin/bash\nexport LD_LIBRARY_PATH=%s\nexec -a %s %s "$@"\n' "$LIB" "$n" "$p" > "$SBIN/$n"
  chmod 755 "$SBIN/$n"
done

SERVER_LIFETIME=90 python3 "$HERE/smtp-script-server.py" "$CASES" "$INST/ports" "$INST/in" &
SERVER=$!
for _ in $(seq 50); do [ -f "$INST/ports" ] && break; sleep 0.1; done
: > "$INST/conf/transport"
while read -r name port; do
  proto=$(awk -v n="$name" '$1=="case" && $2==n {t=$3; for (i=4;i<=NF;i++) { if ($i=="tls=encrypt") t="smtpenc"; if ($i=="tls=may") t="smtpmay" }; print t}' "$CASES")
  echo "$name.test $proto:[127.0.0.1]:$port" >> "$INST/conf/transport"
done < "$INST/ports"

cat > "$INST/conf/main.cf" <<EOS
compatibility_level = 3.6
queue_directory = $INST/spool
data_directory = $INST/data
command_directory = $SBIN
daemon_directory = $PFROOT/usr/lib/postfix/sbin
meta_directory = $INST/conf
shlib_directory = $PFROOT/usr/lib/postfix
maillog_file = $INST/maillog
import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C LD_LIBRARY_PATH=$LIB
inet_interfaces = 127.0.0.1
myhostname = mx.example.test
mydomain = example.test
mydestination = \$myhostname, localhost
transport_maps = texthash:$INST/conf/transport
default_transport = error:no default in this test
delay_warning_time = 0
smtp_connect_timeout = 2s
smtp_helo_timeout = 2s
smtp_mail_timeout = 2s
smtp_rcpt_timeout = 2s
smtp_data_init_timeout = 2s
smtp_data_xfer_timeout = 2s
smtp_data_done_timeout = 2s
smtp_quit_timeout = 2s
lmtp_lhlo_timeout = 2s
lmtp_data_done_timeout = 2s
EOS
cat > "$INST/conf/master.cf" <<EOS
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
#qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
smtp      unix  -       -       n       -       -       smtp
lmtp      unix  -       -       n       -       -       lmtp
smtpenc   unix  -       -       n       -       -       smtp -o smtp_tls_security_level=encrypt
smtpmay   unix  -       -       n       -       -       smtp -o smtp_tls_security_level=may
postlog   unix-dgram n  -       n       -       1       postlogd
EOS
touch -d '1 hour ago' "$INST/conf/main.cf" "$INST/conf/master.cf"
cp "$PFROOT/etc/postfix/postfix-files" "$INST/conf/"
: > "$INST/conf/dynamicmaps.cf"
pf postfix start
sleep 1

rm -rf "$OUT/queue" "$OUT/out"; mkdir -p "$OUT/queue" "$OUT/out"
: > "$OUT/ids"
awk '$1=="case"{n=$2} $1=="rcpt" && $2 ~ /@/ && $2 !~ /^[0-9]/ {$1=""; print n $0}' "$CASES" |
while read -r name rcpts; do
  opt=$(awk -v n="$name" '$1=="case"{c=$2} c==n && $1=="opt"{$1=""; print}' "$CASES")
  body=$(awk -v n="$name" '$1=="case"{c=$2} c==n && $1=="body"{print $2}' "$CASES")
  before=$(find "$INST/spool/incoming" -type f | sort)
  if [ -n "$body" ]; then cat "$OUT/$body"; else printf 'Subject: %s\nFrom: Sender <sender@example.org>\n\nHello %s.\n.dot line\n' "$name" "$name"; fi |
    pf sendmail -i -f sender@example.org $opt $rcpts
  f=""
  for _ in $(seq 100); do
    f=$(comm -13 <(echo "$before") <(find "$INST/spool/incoming" -type f | sort) | head -1)
    [ -n "$f" ] && [ "$(stat -c %a "$f")" = 700 ] && break
    f=""; sleep 0.1
  done
  [ -n "$f" ] || { echo "no queue file for $name" >&2; exit 1; }
  cp "$f" "$OUT/queue/$name"
  echo "$name $(basename "$f")" >> "$OUT/ids"
done

sed -i 's/^#qmgr/qmgr/' "$INST/conf/master.cf"
touch -d '1 hour ago' "$INST/conf/master.cf"
pf postfix reload
# Wait for every recipient's status line (timeouts take 2s each).
total=$(awk '$1=="rcpt" && $2 ~ /@/ && $2 !~ /^[0-9]/ {n+=NF-1} END{print n}' "$CASES")
for _ in $(seq 150); do
  got=$(grep -c -E 'postfix/(smtp|lmtp)\[[0-9]+\]: [0-9A-F]+: to=<' "$INST/maillog" || true)
  [ "$got" -ge "$total" ] && break
  sleep 0.2
done
sleep 1
pf postfix stop || true
kill "$SERVER" 2>/dev/null || true
while read -r name id; do
  grep -E "postfix/(smtp|lmtp)\[[0-9]+\]: ($id: |connect to|host )" "$INST/maillog" |
    grep -E "$id|$name" | sed -E 's/^.*postfix\/(smtp|lmtp)\[[0-9]+\]: //' > "$OUT/out/$name.log" || true
  cp "$INST/in/$name.in" "$OUT/out/$name.in" 2>/dev/null || : > "$OUT/out/$name.in"
done < "$OUT/ids"
grep -c . "$OUT"/out/*.log | head -50
