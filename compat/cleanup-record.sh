#!/bin/bash
# Record what Postfix 3.7.11's sendmail/postdrop, pickup and cleanup do with the messages in
# compat/cases/cleanup/*.case, as golden files for tests/cleanup.rs:
#
#   compat/golden/cleanup/NAME.maildrop   the maildrop file Postfix's sendmail+postdrop wrote
#   compat/golden/cleanup/NAME.postcat    `postcat -v` of the queue file pickup+cleanup made
#                                         (incoming/ or hold/), or "no queue file"
#   compat/golden/cleanup/NAME.log        the pickup and cleanup log lines for the message
#
# It runs a private Postfix instance (needs root) with the settings of
# compat/cases/cleanup/main.cf.in and no qmgr, so mail stays in incoming/. The instance lives
# in a scratch folder and is stopped at the end. The reference binaries come from
# $ROSTFIX_REFERENCE, ~/.cache/rostfix/postfix-3.7.11 (compat/reference.sh) or /tmp/pfroot.
#
# Usage: compat/cleanup-record.sh [CASE...]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cases=$here/cases/cleanup
golden=$here/golden/cleanup
mkdir -p "$golden"

root=
for r in "${ROSTFIX_REFERENCE:-}" "${HOME:-/root}/.cache/rostfix/postfix-3.7.11" /tmp/pfroot; do
    if [ -n "$r" ] && [ -x "$r/usr/sbin/postcat" ]; then root=$r; break; fi
done
[ -n "$root" ] || { echo "cleanup-record.sh: no reference Postfix (run compat/reference.sh)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "cleanup-record.sh: must run as root (private Postfix instance)" >&2; exit 1; }
owner=postfix; group=postdrop
id "$owner" >/dev/null 2>&1 || { echo "cleanup-record.sh: needs user $owner and group $group" >&2; exit 1; }

lib="$root/usr/lib/postfix:$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu"
S=$(mktemp -d /tmp/rostfix-cleanup-record.XXXXXX)
trap 'LD_LIBRARY_PATH=$lib "$S/bin/postfix" -c "$S/conf" stop >/dev/null 2>&1 || true; rm -rf "$S"' EXIT
mkdir -p "$S/bin" "$S/conf" "$S/spool" "$S/cap/conf" "$S/cap/spool/maildrop" "$S/cap/spool/public" "$S/data"
chown "$owner" "$S/data"
chmod 755 "$S"
for p in "$root"/usr/sbin/*; do
    n=$(basename "$p")
    printf '#!/bin/bash\nexport LD_LIBRARY_PATH=%s NORANDOMIZE=1\nexec -a %s %s "$@"\n' "$lib" "$n" "$p" >"$S/bin/$n"
    chmod 755 "$S/bin/$n"
done
base() {
    cat <<EOF
compatibility_level = 3.6
queue_directory = $1
data_directory = $S/data
command_directory = $S/bin
daemon_directory = $root/usr/lib/postfix/sbin
meta_directory = $S/conf
shlib_directory = $root/usr/lib/postfix
mail_owner = $owner
setgid_group = $group
inet_interfaces = 127.0.0.1
maillog_file_prefixes = /var, /dev/stdout, /tmp
maillog_file = $S/maillog
import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C LD_LIBRARY_PATH=$lib NORANDOMIZE=1
EOF
    sed "s|@DIR@|$cases|g" "$cases/main.cf.in"
}
base "$S/spool" >"$S/conf/main.cf"
base "$S/cap/spool" >"$S/cap/conf/main.cf"
cat >"$S/conf/master.cf" <<EOF
pickup    unix  n       -       n       -       1       pickup
cleanup   unix  n       -       n       -       0       cleanup
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
cp "$S/conf/master.cf" "$S/cap/conf/master.cf"
cp "$root/etc/postfix/postfix-files" "$S/conf/"
cp -r "$root/etc/postfix/postfix-files.d" "$S/conf/" 2>/dev/null || true
touch -d '1 hour ago' "$S/conf/"* "$S/cap/conf/"*
export TZ=UTC
"$S/bin/postfix" -c "$S/conf" start >"$S/start.log" 2>&1 || { cat "$S/start.log" "$S/maillog" >&2; exit 1; }
sleep 1

if [ $# -gt 0 ]; then names=("$@"); else names=(); for f in "$cases"/*.case; do names+=("$(basename "$f" .case)"); done; fi
for name in "${names[@]}"; do
    c=$cases/$name.case
    args=$(head -1 "$c" | sed 's/^args: //')
    rm -f "$S/cap/spool/maildrop/"*
    tail -n +3 "$c" | eval "\"$S/bin/sendmail\" -C \"$S/cap/conf\" $args" 2>/dev/null || true
    md=$(ls "$S/cap/spool/maildrop" | head -1)
    if [ -z "$md" ]; then echo "$name: sendmail made no maildrop file" >&2; continue; fi
    cp "$S/cap/spool/maildrop/$md" "$golden/$name.maildrop"
    off=$(wc -c <"$S/maillog")
    cp -p "$S/cap/spool/maildrop/$md" "$S/spool/maildrop/$md"
    "$S/bin/postkick" -c "$S/conf" public pickup W
    for _ in $(seq 1 50); do [ -e "$S/spool/maildrop/$md" ] || break; sleep 0.1; done
    sleep 0.5
    kept=
    if [ -e "$S/spool/maildrop/$md" ]; then kept=" (maildrop file kept)"; rm -f "$S/spool/maildrop/$md"; sleep 0.3; fi
    tail -c +$((off + 1)) "$S/maillog" >"$golden/$name.log"
    qid=$(sed -n 's/.* postfix\/pickup\[[0-9]*\]: \([0-9A-Za-z]*\): uid=.*/\1/p' "$golden/$name.log" | head -1)
    out="no queue file$kept"
    for q in incoming hold; do
        if [ -n "$qid" ] && [ -f "$S/spool/$q/$qid" ]; then
            out=$(cd "$S/spool" && "$S/bin/postcat" -c "$S/conf" -v "$q/$qid" 2>/dev/null)
        fi
    done
    printf '%s\n' "$out" >"$golden/$name.postcat"
    find "$S/spool/incoming" "$S/spool/hold" "$S/spool/bounce" "$S/spool/defer" -type f -delete
    echo "$name: ${qid:-no id}" >&2
done
