#!/bin/bash
# Writes Berkeley DB seed files made by libdb 5.3 itself (db5.3_load from
# db5.3-util, and Postfix 3.7.11's postmap when $ROSTFIX_REFERENCE or /tmp/pfroot
# holds it) into fuzz/corpus/db_reader/: layouts our writer does not produce
# (512-byte pages, checksums, duplicate sets, off-page duplicates, big-endian,
# libdb's own bucket and btree splits). Small tables only.
set -euo pipefail
cd "$(dirname "$0")/.."
out=fuzz/corpus/db_reader
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
load=$(command -v db5.3_load || command -v db_load || true)
if [ -n "$load" ]; then
    {
        printf 'VERSION=3\nformat=print\ntype=hash\nHEADER=END\n'
        for i in $(seq 0 59); do
            printf ' key%03d\\00\n value%d%s\\00\n' "$i" "$i" "$(head -c $((i * 23 % 700)) /dev/zero | tr '\0' z)"
        done
        printf 'DATA=END\n'
    } > "$tmp/plain.txt"
    {
        printf 'VERSION=3\nformat=print\ntype=hash\nHEADER=END\n'
        for i in $(seq 0 19); do
            n=1; [ $((i % 5)) -eq 0 ] && n=40
            for j in $(seq 1 $n); do printf ' k%02d\n dup%d-%d\n' "$i" "$i" "$j"; done
        done
        printf 'DATA=END\n'
    } > "$tmp/dups.txt"
    for ty in hash btree; do
        "$load" -t $ty -c db_pagesize=512 -f "$tmp/plain.txt" "$out/libdb-$ty-512.db"
        "$load" -t $ty -c db_pagesize=512 -c chksum=1 -f "$tmp/plain.txt" "$out/libdb-$ty-512-chksum.db"
        "$load" -t $ty -c db_pagesize=512 -c db_lorder=4321 -f "$tmp/plain.txt" "$out/libdb-$ty-512-bigendian.db"
        "$load" -t $ty -c db_pagesize=512 -c duplicates=1 -f "$tmp/dups.txt" "$out/libdb-$ty-512-dups.db"
    done
else
    echo "note: no db5.3_load (apt-get install db5.3-util): libdb layouts skipped" >&2
fi
ref=${ROSTFIX_REFERENCE:-/tmp/pfroot}
if [ -x "$ref/usr/sbin/postmap" ]; then
    conf="$tmp/conf"; mkdir -p "$conf"
    printf 'mail_owner = nobody\ndefault_privs = daemon\nsetgid_group = mail\n' > "$conf/main.cf"
    touch -d '1 hour ago' "$conf/main.cf"
    printf 'user@example.com OK\npostmaster root\nexample.com relay:[mx.example.net]\n10.1.2.3 REJECT\n' > "$tmp/small"
    for ty in hash btree; do
        LD_LIBRARY_PATH="$ref/usr/lib/postfix:$ref/usr/lib/x86_64-linux-gnu" \
            "$ref/usr/sbin/postmap" -c "$conf" "$ty:$tmp/small"
        cp "$tmp/small.db" "$out/postfix-$ty-small.db"
    done
else
    echo "note: no Postfix reference at $ref: postmap-built files skipped" >&2
fi
ls -l "$out"
