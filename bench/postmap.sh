#!/usr/bin/env bash
# Benchmark: rostfix postmap vs Postfix 3.7.11 postmap on the same machine, same run.
#
#   1. build a 1,000,000-entry hash: table (`postmap hash:FILE`)
#   2. 100,000 lookups through `postmap -q - hash:FILE` (half hits, half misses)
#
# R samples per side, interleaved; prints the median wall time of each side and the ratio
# rostfix/postfix (below 1.0 means rostfix is faster). Until our hash: table type is
# registered, only Postfix's numbers are printed, with a notice.
#
# Usage: bench/postmap.sh [R] [ENTRIES] [LOOKUPS]   (needs compat/reference.sh, or
#        ROSTFIX_REFERENCE pointing at an unpacked Postfix 3.7.11 such as /tmp/pfroot)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
R=${1:-5}
N=${2:-1000000}
Q=${3:-100000}
TYPE=${BENCH_TYPE:-hash}
if [ -z "${ROSTFIX_REFERENCE:-}" ] && [ -x /tmp/pfroot/usr/sbin/postmap ]; then
  export ROSTFIX_REFERENCE=/tmp/pfroot
fi
ref=$("$here/compat/reference.sh")
cargo build --release --quiet --manifest-path "$here/Cargo.toml"
ours="$here/target/release/rostfix"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)

mkdir -p "$work/conf" "$work/bin-pf" "$work/bin-our" "$work/pf" "$work/our"
owner=$(for u in postfix mail daemon; do getent passwd "$u" >/dev/null && { echo "$u"; break; }; done)
group=$(for g in postdrop adm staff; do getent group "$g" >/dev/null && { echo "$g"; break; }; done)
cat > "$work/conf/main.cf" <<EOF
compatibility_level = 3.6
meta_directory = $work/conf
mail_owner = $owner
setgid_group = $group
EOF
: > "$work/conf/dynamicmaps.cf"
for t in cdb lmdb; do
  so="$ref/usr/lib/postfix/postfix-$t.so"
  [ -f "$so" ] && echo "$t $so dict_${t}_open mkmap_${t}_open" >> "$work/conf/dynamicmaps.cf"
done
touch -d '1 hour ago' "$work/conf/main.cf" "$work/conf/dynamicmaps.cf"
cat > "$work/bin-pf/postmap" <<W
#!/bin/bash
export LD_LIBRARY_PATH=$ref/usr/lib/postfix:$ref/usr/lib/$multiarch:$ref/lib/$multiarch
exec -a postmap $ref/usr/sbin/postmap "\$@"
W
chmod +x "$work/bin-pf/postmap"
ln -s "$ours" "$work/bin-our/postmap"

# The source: N entries, mixed-case keys, some continuation lines and comments.
awk -v n="$N" 'BEGIN {
  for (i = 0; i < n; i++) {
    if (i % 1000 == 0) print "# block " i
    if (i % 7 == 0) printf "User%d@Example%d.COM relay:[mx%d.example.net]:25\n", i, i % 97, i % 13
    else if (i % 11 == 0) printf "key%d value %d\n  continued %d\n", i, i, i
    else printf "key%d value-%d\n", i, i
  }
}' > "$work/src"
awk -v n="$N" -v q="$Q" 'BEGIN { srand(1);
  for (i = 0; i < q; i++) {
    k = int(rand() * n)
    if (i % 2) printf "miss%d\n", k
    else if (k % 7 == 0) printf "user%d@example%d.com\n", k, k % 97
    else printf "key%d\n", k
  }
}' > "$work/keys"
cp "$work/src" "$work/pf/src"
cp "$work/src" "$work/our/src"

# Can we build this type at all?
our_ok=1
if ! (cd "$work/our" && printf 'a b\n' > probe && "$work/bin-our/postmap" -c "$work/conf" "$TYPE:probe") 2> "$work/probe.err"; then
  our_ok=0
  echo "NOTICE: rostfix cannot build $TYPE: tables yet ($(cat "$work/probe.err")); printing Postfix's numbers only." >&2
fi

now() { date +%s.%N; }
time_build() { # side
  local t0 t1
  t0=$(now)
  (cd "$work/$1" && "$work/bin-$1/postmap" -c "$work/conf" "$TYPE:src") 2>/dev/null
  t1=$(now)
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.6f\n", b - a}'
}
time_query() { # side
  local t0 t1
  t0=$(now)
  (cd "$work/$1" && "$work/bin-$1/postmap" -c "$work/conf" -q - "$TYPE:src" < "$work/keys" > "$work/$1.qout") 2>/dev/null || true
  t1=$(now)
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.6f\n", b - a}'
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

: > "$work/pf.build"; : > "$work/our.build"; : > "$work/pf.query"; : > "$work/our.query"
for _ in $(seq 1 "$R"); do
  time_build pf >> "$work/pf.build"
  [ "$our_ok" = 1 ] && time_build our >> "$work/our.build"
  time_query pf >> "$work/pf.query"
  [ "$our_ok" = 1 ] && time_query our >> "$work/our.query"
done
if [ "$our_ok" = 1 ] && ! cmp -s "$work/pf.qout" "$work/our.qout"; then
  # Known for lmdb: when Postfix's lmdb build outgrows lmdb_map_size it restarts the bulk
  # transaction and, with SMTPUTF8 on, loses key folding for the whole table (see
  # compat/DIVERGENCES.md); mixed-case keys are then not found by lower-case queries.
  echo "WARNING: the -q - outputs differ between Postfix and rostfix" >&2
fi
report() { # label pf-file our-file
  local pf our
  pf=$(median < "$2")
  if [ "$our_ok" = 1 ]; then
    our=$(median < "$3")
    awk -v l="$1" -v p="$pf" -v o="$our" 'BEGIN {
      printf "%-34s postfix %8.3f s  rostfix %8.3f s  ratio rostfix/postfix %.2f\n", l, p, o, o / p }'
  else
    awk -v l="$1" -v p="$pf" 'BEGIN {
      printf "%-34s postfix %8.3f s  rostfix    n/a (no %s: yet)\n", l, p, "'"$TYPE"'" }'
  fi
}
echo "postmap $TYPE: medians of $R runs, $N entries, $Q lookups"
report "build $N entries" "$work/pf.build" "$work/our.build"
report "-q - $Q lookups" "$work/pf.query" "$work/our.query"
