#!/usr/bin/env bash
# Benchmark: rostfix postconf vs Postfix 3.7.11 postconf on the same machine, same run.
#
# Runs `postconf -n` and `postconf -x` (the heaviest: every parameter expanded)
# on the largest corpus main.cf, N invocations per sample, R samples per side,
# interleaved, and prints the median wall time per invocation and the ratio
# rostfix/postfix (below 1.0 means rostfix is faster).
#
# Usage: bench/postconf.sh [N] [R]     (needs compat/reference.sh to have run)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-50}
R=${2:-7}
ref=$("$here/compat/reference.sh")
cargo build --release --quiet --manifest-path "$here/Cargo.toml"
ours="$here/target/release/rostfix"
corpus="$here/../shared/corpus/configs/09-grapheneos-2022-stock-comments"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -f "$corpus/main.cf" ]; then cp "$corpus/main.cf" "$work/"; else
  echo "corpus not found; using a generated main.cf" >&2
  for i in $(seq 1 300); do echo "param_$i = \$myhostname value $i"; done > "$work/main.cf"
fi
cp "$ref/usr/share/postfix/master.cf.dist" "$work/master.cf"
touch -d '1 hour ago' "$work/main.cf" "$work/master.cf"
mkdir -p "$work/bin-pf" "$work/bin-our"
cat > "$work/bin-pf/postconf" <<W
#!/bin/bash
export LD_LIBRARY_PATH=$ref/usr/lib/postfix:$ref/usr/lib/x86_64-linux-gnu
exec -a postconf $ref/usr/sbin/postconf "\$@"
W
chmod +x "$work/bin-pf/postconf"
ln -s "$ours" "$work/bin-our/postconf"

sample() { # bin flags -> seconds per invocation
  local bin=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  for _ in $(seq 1 "$N"); do "$bin/postconf" -c "$work" "$@" >/dev/null 2>&1 || true; done
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" -v n="$N" 'BEGIN {printf "%.9f\n", (b - a) / n}'
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for flags in "-n" "-x"; do
  : > "$work/pf.t"; : > "$work/our.t"
  for _ in $(seq 1 "$R"); do
    sample "$work/bin-pf" $flags >> "$work/pf.t"
    sample "$work/bin-our" $flags >> "$work/our.t"
  done
  pf=$(median < "$work/pf.t"); our=$(median < "$work/our.t")
  awk -v f="$flags" -v p="$pf" -v o="$our" 'BEGIN {
    printf "postconf %-3s postfix %.2f ms  rostfix %.2f ms  ratio rostfix/postfix %.2f\n", f, p * 1000, o * 1000, o / p }'
done
