#!/usr/bin/env bash
# The floor: what any MTA could do at most on this machine under the delivery benchmark's
# load (bench/delivery.sh), measured with bench/floor.c: accept, a bare SMTP dialogue, and
# per message a queue file created, written, fsynced and renamed before the 250 reply, then
# renamed and unlinked (a stand-in for delivery). No logging, no queue manager, no agents.
# Run it beside bench/delivery.sh to see how far from the floor both MTAs are, and whether
# a ratio to Postfix is reachable at all: if 2x Postfix's rate is above the floor's rate for a
# case, no design that keeps Postfix's durability can reach it on this machine.
#
# DEST=maildir adds the delivery a Maildir needs at least (bench/floor.c with D = 2 delivery
# processes, local_destination_concurrency_limit's default): a run then ends when every
# message is in maildir/new/. Compare with bench/delivery.sh's maildir cases.
#
# Prints, per case (sessions x size): msgs/s and CPU seconds per message of the floor server
# (its workers' user+sys) and of smtp-source, median of R runs.
#
# Usage: bench/floor.sh [R] [N]   (needs cc and Debian's smtp-source; no root needed)
# SESSIONS="1 10 50" SIZES="2048 102400" PORT=21790 DEST=discard|maildir
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
R=${1:-3}
N=${2:-2000}
SESSIONS=${SESSIONS:-1 10 50}
SIZES=${SIZES:-2048 102400}
PORT=${PORT:-21790}
DEST=${DEST:-discard}
agents=""; [ "$DEST" = maildir ] && agents=2
src=$(command -v smtp-source || echo /usr/sbin/smtp-source)
[ -x "$src" ] || { echo "needs smtp-source (Debian's postfix)" >&2; exit 1; }
work=$(mktemp -d /tmp/rostfix-bench-floor.XXXXXX)
server=""
trap '[ -n "$server" ] && kill -- "-$server" 2>/dev/null; rm -rf "$work"' EXIT
cc -O2 -o "$work/floor" "$here/bench/floor.c"
hz=$(getconf CLK_TCK)

# Clock ticks of the live children of PID (the floor's workers).
worker_ticks() {
  local t=0 c
  for c in $(pgrep -P "$1"); do t=$((t + $(awk '{print $14+$15}' "/proc/$c/stat"))); done
  echo "$t"
}

median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

run_one() { # sessions size -> "msgs_per_s server_cpu_per_msg source_cpu_per_msg"
  local S=$1 size=$2
  rm -rf "$work/q"; mkdir -p "$work/q/incoming" "$work/q/active" "$work/q/maildir/tmp" "$work/q/maildir/new"
  # shellcheck disable=SC2086 # $agents is empty or one number
  (cd "$work/q" && exec setsid "$work/floor" "$PORT" "$S" $agents) &
  server=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.05; done
  sleep 0.3
  local t0 start end t1 srccpu
  t0=$(worker_ticks "$server")
  start=$(date +%s.%N)
  srccpu=$(python3 -c 'import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print("%.3f" % (r.ru_utime + r.ru_stime))' "$src" -s "$S" -m "$N" -l "$size" -f bench@floor.example \
    -t rcpt@floor.example "127.0.0.1:$PORT")
  if [ -n "$agents" ]; then
    local limit=$((SECONDS + 300))
    until [ "$(find "$work/q/maildir/new" -type f | wc -l)" -ge "$N" ] || [ "$SECONDS" -gt "$limit" ]; do
      sleep 0.01
    done
  fi
  end=$(date +%s.%N)
  t1=$(worker_ticks "$server")
  kill -- "-$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=""
  awk -v n="$N" -v s="$start" -v e="$end" -v t="$((t1 - t0))" -v hz="$hz" -v c="$srccpu" \
    'BEGIN {printf "%.1f %.5f %.5f\n", n / (e - s), t / hz / n, c / n}'
}

echo "floor benchmark ($DEST): $N messages per run, median of $R, $(nproc) CPUs"
printf '%-8s %8s | %9s | %12s %12s\n' sessions size msgs/s "cpu s/msg" "source s/msg"
for size in $SIZES; do
  for S in $SESSIONS; do
    rates=() cpus=() srcs=()
    for _ in $(seq "$R"); do
      read -r rate cpu scpu < <(run_one "$S" "$size")
      rates+=("$rate"); cpus+=("$cpu"); srcs+=("$scpu")
    done
    printf '%-8s %8s | %9s | %12s %12s\n' "$S" "$size" \
      "$(printf '%s\n' "${rates[@]}" | median)" "$(printf '%s\n' "${cpus[@]}" | median)" \
      "$(printf '%s\n' "${srcs[@]}" | median)"
  done
done
