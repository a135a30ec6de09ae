#!/usr/bin/env bash
# Benchmark: hash: tables, rostfix vs Postfix 3.7.11 (libdb 5.3), same machine, same run.
#
#   1. build a 1,000,000-entry hash: table from a postmap source file
#      (Postfix: `postmap hash:FILE`; rostfix: see the limitation below);
#   2. 100,000 lookups in one process, keys on stdin, 80% hits
#      (Postfix: `postmap -q - hash:FILE`).
#
# R samples per side, interleaved; prints the median wall time of each side and the
# ratio rostfix/postfix (below 1.0 means rostfix is faster). Both sides fsync the table.
# Each side's lookup output is checked to be identical, and each side's table is read by
# the other side's lookup code once (interop sanity check).
#
# LIMITATION: rostfix's postmap command does not exist yet on this branch. The rostfix
# side runs examples/dict_db.rs, which reads "key value" lines and calls the same Dict API
# (registry::dict_open, update/close, lookup) that postmap will use; its source parser is
# minimal (no continuation lines). Replace it with `postmap` once that lands.
#
# Usage: bench/dict_db.sh [R] [ENTRIES] [LOOKUPS]
#        (reference binaries: $ROSTFIX_REFERENCE, else /tmp/pfroot, else compat/reference.sh)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
R=${1:-5}
N=${2:-1000000}
Q=${3:-100000}

if [ -n "${ROSTFIX_REFERENCE:-}" ]; then ref=$ROSTFIX_REFERENCE
elif [ -x /tmp/pfroot/usr/sbin/postmap ]; then ref=/tmp/pfroot
else ref=$("$here/compat/reference.sh"); fi
cargo build --release --quiet --example dict_db --manifest-path "$here/Cargo.toml"
ours="$here/target/release/examples/dict_db"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/conf"
if [ "$(id -u)" = 0 ]; then
  printf 'mail_owner = nobody\ndefault_privs = daemon\nsetgid_group = mail\n' > "$work/conf/main.cf"
else
  printf 'mail_owner = %s\ndefault_privs = nobody\n' "$(id -un)" > "$work/conf/main.cf"
fi
echo "compatibility_level = 3.6" >> "$work/conf/main.cf"
touch -d '1 hour ago' "$work/conf/main.cf"
pm() { LD_LIBRARY_PATH="$ref/usr/lib/postfix:$ref/usr/lib/x86_64-linux-gnu" \
       bash -c 'exec -a postmap "$0" "$@"' "$ref/usr/sbin/postmap" -c "$work/conf" "$@"; }

echo "generating $N entries and $Q query keys..." >&2
awk -v n="$N" 'BEGIN { for (i = 0; i < n; i++)
  printf "User%07d@Dom%d.Example.COM relay:[mx%d.example.net]:25\n", i, i % 5000, i % 97 }' > "$work/src"
awk -v n="$N" -v q="$Q" 'BEGIN { srand(42); for (i = 0; i < q; i++) {
  j = int(rand() * n * 1.25); printf "user%07d@dom%d.example.com\n", j, j % 5000 } }' > "$work/keys"
cp "$work/src" "$work/pf"; cp "$work/src" "$work/our"

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
: > "$work/b.pf"; : > "$work/b.our"; : > "$work/q.pf"; : > "$work/q.our"
for r in $(seq 1 "$R"); do
  echo "round $r/$R" >&2
  rm -f "$work/pf.db" "$work/our.db"
  t0=$(now); pm "hash:$work/pf"; t1=$(now); echo "$t1 - $t0" | bc >> "$work/b.pf"
  t0=$(now); "$ours" build "hash:$work/our"; t1=$(now); echo "$t1 - $t0" | bc >> "$work/b.our"
  t0=$(now); pm -q - "hash:$work/pf" < "$work/keys" > "$work/out.pf"; t1=$(now); echo "$t1 - $t0" | bc >> "$work/q.pf"
  t0=$(now); "$ours" query "hash:$work/our" < "$work/keys" > "$work/out.our"; t1=$(now); echo "$t1 - $t0" | bc >> "$work/q.our"
  cmp -s "$work/out.pf" "$work/out.our" || { echo "lookup outputs differ" >&2; exit 1; }
done
# Cross-check: each side reads the other's table.
"$ours" query "hash:$work/pf" < "$work/keys" | cmp -s - "$work/out.pf" || { echo "rostfix cannot read postfix's table" >&2; exit 1; }
pm -q - "hash:$work/our" < "$work/keys" | cmp -s - "$work/out.pf" || { echo "postfix cannot read rostfix's table" >&2; exit 1; }
hits=$(wc -l < "$work/out.pf")
size_pf=$(stat -c %s "$work/pf.db"); size_our=$(stat -c %s "$work/our.db")

report() { # label pf-file our-file
  local p o
  p=$(median < "$2"); o=$(median < "$3")
  awk -v l="$1" -v p="$p" -v o="$o" 'BEGIN {
    printf "%-28s postfix %8.3f s  rostfix %8.3f s  ratio rostfix/postfix %.2f\n", l, p, o, o / p }'
}
report "build $N entries (hash)" "$work/b.pf" "$work/b.our"
report "$Q lookups ($hits hits)" "$work/q.pf" "$work/q.our"
echo "table size: postfix $size_pf bytes, rostfix $size_our bytes; medians of $R rounds"
