#!/bin/bash
# Record golden outputs of Postfix 3.7.11's local(8) and virtual(8) for
# tests/local.rs and tests/virtual.rs. Needs root, the unpacked Postfix
# binaries (PFROOT, default /tmp/pfroot) and the postfix user. Creates the
# users t6user and t6fwd (homes under $SCRATCH/home).
#
# How: a private instance without qmgr accepts one message per case through
# its sendmail; the queue file is copied from incoming/ before anything reads
# it, all of them are put on hold, qmgr is enabled, and each case is released
# on its own; its mailboxes, files and log lines are then saved.
#
# Usage: compat/record-local-delivery.sh [OUTDIR]   (default tests/golden/local)
set -eu
PFROOT=${PFROOT:-/tmp/pfroot}
INST=/var/tmp/t6-local          # maillog_file must be under /var
SCRATCH=/tmp/t6-local           # mailboxes, maildirs, homes, files
OUT=${1:-$(dirname "$0")/../tests/golden/local}
LIB=$PFROOT/usr/lib/postfix:$PFROOT/usr/lib/x86_64-linux-gnu
export LD_LIBRARY_PATH=$LIB
SBIN=/var/tmp/t6-local-bin      # wrappers: sendmail clears the environment of postdrop
pf() { MAIL_CONFIG=$INST/conf "$SBIN/$1" "${@:2}"; }

if [ -f "$INST/conf/main.cf" ]; then pf postfix stop 2>/dev/null || true; sleep 1; fi
rm -rf "$INST" "$SCRATCH"
mkdir -p "$INST/conf" "$INST/spool" "$INST/data" "$SCRATCH"/{mail,home,files,bin,virtual}
chmod 1777 "$SCRATCH/mail" "$SCRATCH/files"
chown postfix "$INST/data"
rm -rf "$SBIN"; mkdir -p "$SBIN"
for p in "$PFROOT"/usr/sbin/*; do
  n=$(basename "$p")
  printf '#!/bin/bash\nexport LD_LIBRARY_PATH=%s\nexec -a %s %s "$@"\n' "$LIB" "$n" "$p" > "$SBIN/$n"
  chmod 755 "$SBIN/$n"
done

for u in t6user t6fwd; do
  id "$u" >/dev/null 2>&1 || useradd -M -d "$SCRATCH/home/$u" -s /bin/sh "$u"
  usermod -d "$SCRATCH/home/$u" "$u"
  mkdir -p "$SCRATCH/home/$u"; chown "$u:" "$SCRATCH/home/$u"
done
UID6=$(id -u t6user); GID6=$(id -g t6user)

# A command that records its environment, arguments and input.
cat > "$SCRATCH/bin/envdump" <<'EOS'
#!/bin/sh
out=/tmp/t6-local/files/envdump.$(id -un)
{ echo "argv: $*"; echo "uid: $(id -u) gid: $(id -g) cwd: $(pwd)";
  env | LC_ALL=C sort; echo "--- stdin"; cat; } > "$out"
EOS
printf '#!/bin/sh\necho "oops: it failed"\nexit 1\n' > "$SCRATCH/bin/fail1"
printf '#!/bin/sh\necho "try later"\nexit 75\n' > "$SCRATCH/bin/fail75"
printf '#!/bin/sh\necho "no such user here"\nexit 67\n' > "$SCRATCH/bin/fail67"
chmod 755 "$SCRATCH"/bin/*
echo "t6fwd" > "$SCRATCH/files/inc.list"
printf '\\t6fwd, /tmp/t6-local/files/fwd.out, "|/tmp/t6-local/bin/envdump fwdcmd"\n' > "$SCRATCH/home/t6fwd/.forward"
chown t6fwd: "$SCRATCH/home/t6fwd/.forward"

cat > "$INST/conf/aliases" <<EOS
postmaster: root
root: /tmp/t6-local/files/root.out
afile: /tmp/t6-local/files/afile.out
acmd: "|/tmp/t6-local/bin/envdump alias arg"
afail1: |/tmp/t6-local/bin/fail1
afail75: |/tmp/t6-local/bin/fail75
afail67: |/tmp/t6-local/bin/fail67
alist: t6user, afile, :include:/tmp/t6-local/files/inc.list
owner-alist: t6user
aloop: aloop2
aremote: someone@elsewhere.example
aloop2: aloop
EOS
cat > "$INST/conf/vmailbox" <<EOS
a@virt.test  virt.test/a
b@virt.test  virt.test/b/
d@vbig.test  vbig.test/d
e@virt.test  nodir/e
EOS
cat > "$INST/conf/transport" <<EOS
maildir.test  local2:
big.test      local3:
cmd.test      local4:
vbig.test     virtual2:
EOS
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
mail_spool_directory = $SCRATCH/mail
alias_maps = hash:$INST/conf/aliases
alias_database = hash:$INST/conf/aliases
recipient_delimiter = +
transport_maps = texthash:$INST/conf/transport
default_transport = error:no remote delivery in this test
virtual_mailbox_domains = virt.test, vbig.test
virtual_mailbox_base = $SCRATCH/virtual
virtual_mailbox_maps = texthash:$INST/conf/vmailbox
virtual_uid_maps = static:$UID6
virtual_gid_maps = static:$GID6
virtual_minimum_uid = 100
biff = no
delay_warning_time = 0
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
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
local2    unix  -       n       n       -       -       local -o home_mailbox=Maildir/
local3    unix  -       n       n       -       -       local -o message_size_limit=2000 -o mailbox_size_limit=2500
local4    unix  -       n       n       -       -       local -o { mailbox_command = /tmp/t6-local/bin/envdump mbcmd \${extension} }
virtual   unix  -       n       n       -       -       virtual
virtual2  unix  -       n       n       -       -       virtual -o virtual_mailbox_limit=2500 -o message_size_limit=2000
postlog   unix-dgram n  -       n       -       1       postlogd
EOS
touch -d '1 hour ago' "$INST/conf/main.cf" "$INST/conf/master.cf"
cp "$PFROOT/etc/postfix/postfix-files" "$INST/conf/"
cat > "$INST/conf/dynamicmaps.cf" <<EOS
EOS
pf postalias "$INST/conf/aliases"
mkdir -p "$SCRATCH/virtual/virt.test"; chown t6user: "$SCRATCH/virtual/virt.test"
pf postfix start
sleep 1

# case NAME RECIPIENT... ; message on stdin
declare -a CASES
rm -rf "$OUT/out" "$OUT/queue"; mkdir -p "$OUT/queue"
rm -f "$OUT"/queue/* "$OUT"/cases
case_send() {
  local name=$1; shift
  local before; before=$(find "$INST/spool/incoming" -type f | sort)
  pf sendmail -i -f "${SENDER-sender@example.org}" "$@"
  local f=""
  for _ in $(seq 100); do
    f=$(comm -13 <(echo "$before") <(find "$INST/spool/incoming" -type f | sort) | head -1)
    [ -n "$f" ] && [ "$(stat -c %a "$f")" = 700 ] && break
    f=""; sleep 0.1
  done
  [ -n "$f" ] || { echo "no queue file for $name" >&2; exit 1; }
  cp "$f" "$OUT/queue/$name"
  echo "$name $(basename "$f") $*" >> "$OUT/cases"
}
body() { printf 'Subject: %s\nFrom: Sender <sender@example.org>\n\n' "$1"; cat; }

body mbox <<'EOB' | case_send mbox t6user@mx.example.test
line one
From the start of a line
>From already quoted
 From indented
From
.
last line
EOB
body ext <<'EOB' | case_send ext t6user+foo-bar@mx.example.test
extension
EOB
body maildir <<'EOB' | case_send maildir t6user@maildir.test
to a maildir
From quoted? not in maildir
EOB
body unknown <<'EOB' | case_send unknown nosuchuser@mx.example.test
nobody
EOB
body afile <<'EOB' | case_send afile afile@mx.example.test
From to a file
EOB
body acmd <<'EOB' | case_send acmd acmd+x@mx.example.test
to a command
EOB
body afail1 <<'EOB' | case_send afail1 afail1@mx.example.test
fails
EOB
body afail75 <<'EOB' | case_send afail75 afail75@mx.example.test
temp
EOB
body afail67 <<'EOB' | case_send afail67 afail67@mx.example.test
nouser
EOB
body alist <<'EOB' | case_send alist alist@mx.example.test
list
EOB
body forward <<'EOB' | case_send forward t6fwd@mx.example.test
forwarded
EOB
{ printf 'Delivered-To: t6user@mx.example.test\n'; body loop <<<'loop'; } | case_send loop t6user@mx.example.test
body aloop <<'EOB' | case_send aloop aloop@mx.example.test
alias loop
EOB
body big <<'EOB' | case_send big t6user@big.test
over the mailbox limit
EOB
body cmd <<'EOB' | case_send cmd t6user+ext@cmd.test
mailbox_command
EOB
body multi <<'EOB' | case_send multi t6user@mx.example.test afile@mx.example.test nosuchuser@mx.example.test
multi
EOB
SENDER="" body nullsender <<'EOB' | SENDER="" case_send nullsender t6user@mx.example.test
null sender
EOB
body va <<'EOB' | case_send va a@virt.test
virtual mbox
From quoted
EOB
body vb <<'EOB' | case_send vb b@virt.test
virtual maildir
EOB
body vc <<'EOB' | case_send vc c@virt.test
virtual unknown
EOB
body ve <<'EOB' | case_send ve e@virt.test
virtual missing directory
EOB
body aremote <<'EOB' | case_send aremote aremote@mx.example.test
remote
EOB
body vbig <<'EOB' | case_send vbig d@vbig.test
virtual over limit
EOB

pf postsuper -h ALL
sed -i 's/^#qmgr/qmgr/' "$INST/conf/master.cf"
pf postfix reload
sleep 2

snapshot() {
  local d=$1
  mkdir -p "$d"
  (cd "$SCRATCH" && find mail files virtual home -type f ! -name .forward ! -name inc.list | sort) |
  while read -r p; do
    local dest="$d/$(echo "$p" | sed -E 's#/(new|cur|tmp)/[^/]+$#/\1/MSG#; s#/#__#g')"
    cp "$SCRATCH/$p" "$dest"
    rm -f "$SCRATCH/$p"
  done
}
: > "$INST/maillog"
while read -r name id rcpts; do
  case $name in
    big) head -c 2400 /dev/zero | tr '\0' 'x' > "$SCRATCH/mail/t6user"; chown t6user: "$SCRATCH/mail/t6user";;
    vbig) mkdir -p "$SCRATCH/virtual/vbig.test"; head -c 2400 /dev/zero | tr '\0' 'x' > "$SCRATCH/virtual/vbig.test/d"; chown -R t6user: "$SCRATCH/virtual/vbig.test";;
  esac
  lines=$(wc -l < "$INST/maillog")
  pf postsuper -H "$id" >/dev/null 2>&1
  pf postqueue -i "$id" >/dev/null 2>&1 || true
  for _ in $(seq 100); do
    sleep 0.2
    grep -q "$id: removed" "$INST/maillog" && break
    [ -n "$(find "$INST/spool/deferred" -name "$id")" ] && grep -q "$id: to=.*status=deferred" "$INST/maillog" && break
  done
  sleep 0.3
  tail -n +$((lines + 1)) "$INST/maillog" | grep " postfix/\(local\|local[234]\|virtual\|virtual2\)\[[0-9]*\]: \($id\|warning\)" \
    | sed -E 's/^.{15} [^ ]+ //' > "$OUT/queue/$name.log" || true
  snapshot "$OUT/out/$name"
done < "$OUT/cases"
cp "$INST/maillog" "$OUT/maillog.all"
pf postfix stop
echo "recorded into $OUT"
