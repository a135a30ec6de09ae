#!/usr/bin/env bash
# Benchmark: local submission into the queue, rostfix vs Postfix 3.7.11, same run.
#
# Two running instances (each `postfix -c DIR start`: master + pickup + cleanup; Postfix's
# also trivial-rewrite; no qmgr) with `header_checks = /^Subject:/ HOLD`, so every message
# ends in hold/ and nothing is delivered. N messages (default 2000) go through each side's
# own `sendmail` with P parallel submitters (1 and 8); a run ends when hold/ holds N
# complete files and maildrop/ is empty.
#
# Measured per run: wall time; CPU = user+sys of the submitters (bash `times` of the
# submitting subshell: sendmail + postdrop) + the instance's daemons (from /proc/PID/stat:
# master's own and reaped children's time plus every live child's, after minus before).
# Prints the median of R repeats per side and the ratios rostfix/postfix (< 1.0: faster).
#
# Usage: bench/submit.sh [R] [N]   (root; ROSTFIX_REFERENCE or /tmp/pfroot = Postfix 3.7.11)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
R=${1:-3}
N=${2:-2000}
source "$here/bench/lib.sh"
bench_init submit

setup() { # side dir
  local side=$1 d=$2
  instance_dirs "$d"
  { main_cf_common "$d"; echo "header_checks = regexp:$d/conf/header_checks"; } > "$d/conf/main.cf"
  echo '/^Subject:/ HOLD' > "$d/conf/header_checks"
  side_conf "$side" "$d" "postlog unix-dgram n - n - 1 postlogd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
" "" "rewrite unix - - n - - trivial-rewrite
" master pickup cleanup postdrop sendmail postfix postlogd
}

count() { find "$1" -type f -perm -0700 | wc -l; }

run_one() { # side P -> prints "wall cpu"
  local side=$1 P=$2 d="$work/$1"
  setup "$side" "$d"
  pfx "$side" "$d" postfix -c "$d/conf" start >/dev/null 2>&1
  sleep 1.5
  local pidf="$d/q/pid/master.pid" hz; hz=$(getconf CLK_TCK)
  local t0; t0=$(instance_ticks "$pidf")
  local msg="$work/msg"
  printf 'From: bench@bench.example\nTo: rcpt@example.com\nSubject: bench\n\n%s\n' \
    "$(head -c 3000 /dev/zero | tr '\0' 'x' | fold -w 72)" > "$msg"
  local start; start=$(date +%s.%N)
  local per=$((N / P))
  export -f pfx; export side d per msg lib ref
  # CPU of every submitter process (sendmail, postdrop, the loops), from
  # getrusage(RUSAGE_CHILDREN) of a parent that waits for them all.
  local sub
  sub=$(children_cpu bash -c '
    for ((j = 0; j < '"$P"'; j++)); do
      ( for ((i = 0; i < per; i++)); do
          pfx "$side" "$d" sendmail -C "$d/conf" -f bench rcpt@example.com < "$msg" || exit 1
        done ) &
    done
    wait')
  while [ "$(count "$d/q/hold")" -lt "$((per * P))" ] || [ -n "$(ls -A "$d/q/maildrop")" ]; do
    sleep 0.01
  done
  local end; end=$(date +%s.%N)
  local t1; t1=$(instance_ticks "$pidf")
  pfx "$side" "$d" postfix -c "$d/conf" stop >/dev/null 2>&1 || true
  sleep 0.5
  awk -v s="$start" -v e="$end" -v sub_="$sub" -v t0="$t0" -v t1="$t1" -v hz="$hz" \
    'BEGIN { printf "%.3f %.3f %.3f\n", e - s, sub_ + (t1 - t0) / hz, (t1 - t0) / hz }'
}

echo "submit benchmark: $N messages per run, $R repeats, $(nproc) CPUs"
for P in 1 8; do
  declare -A wall cpu dcpu mw mc md
  for side in ours postfix; do wall[$side]=""; cpu[$side]=""; dcpu[$side]=""; done
  for ((r = 0; r < R; r++)); do
    for side in ours postfix; do
      read -r w c dc < <(run_one "$side" "$P")
      wall[$side]+="$w"$'\n'; cpu[$side]+="$c"$'\n'; dcpu[$side]+="$dc"$'\n'
      echo "  P=$P run $r $side: wall ${w}s cpu ${c}s (daemons ${dc}s)"
    done
  done
  for side in ours postfix; do
    mw[$side]=$(printf '%s' "${wall[$side]}" | median)
    mc[$side]=$(printf '%s' "${cpu[$side]}" | median)
    md[$side]=$(printf '%s' "${dcpu[$side]}" | median)
  done
  printf 'P=%d median  rostfix: wall %ss cpu %ss (daemons %ss)   postfix: wall %ss cpu %ss (daemons %ss)\n' \
    "$P" "${mw[ours]}" "${mc[ours]}" "${md[ours]}" "${mw[postfix]}" "${mc[postfix]}" "${md[postfix]}"
  awk -v a="${mw[ours]}" -v b="${mw[postfix]}" -v c="${mc[ours]}" -v d="${mc[postfix]}" -v p="$P" \
    'BEGIN { printf "P=%d ratio rostfix/postfix: wall %.2f cpu %.2f\n", p, a / b, c / d }'
done
rm -rf "$work"
