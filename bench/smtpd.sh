#!/usr/bin/env bash
# Benchmark: mail received over SMTP, rostfix vs Postfix 3.7.11, same run.
#
# Two running instances (each `postfix -c DIR start`: master + smtpd (+ cleanup and
# trivial-rewrite processes on Postfix's side; cleanup is a library call inside rostfix's
# smtpd) + postlogd, with `smtpd_client_restrictions = check_client_access cidr:...`
# answering HOLD for 127.0.0.0/8, so every message ends in hold/ and nothing is delivered
# (no qmgr runs). Postfix's smtp-source sends N messages (one connection each, as
# smtp-source does without -d) over S parallel sessions (1, 10, 50), of L bytes (2 KB and
# 100 KB); a run ends when smtp-source exits (it exits non-zero on any non-2xx reply) and
# hold/ holds N complete files.
#
# Measured per run: accept rate (messages per wall second), CPU seconds per message of the
# instance (from /proc/PID/stat: master's own time and its reaped children's, plus every
# live child's, after minus before) and the peak total RSS of master and its children
# (sampled every 0.1 s). Prints the median of R repeats per side and the ratios
# rostfix/postfix (rate > 1.0, cpu < 1.0, rss < 1.0: rostfix better).
#
# Usage: bench/smtpd.sh [R] [N]   (root; ROSTFIX_REFERENCE or /tmp/pfroot = Postfix 3.7.11;
#        smtp-source from Debian's postfix package, or SMTP_SOURCE=path; VERBOSE=1 per run)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
R=${1:-3}
N=${2:-1000}
source_bin=${SMTP_SOURCE:-$(command -v smtp-source || echo /usr/sbin/smtp-source)}
[ -x "$source_bin" ] || { echo "no smtp-source (apt-get install postfix)" >&2; exit 1; }
source "$here/bench/lib.sh"
bench_init smtpd

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

setup() { # side dir port
  local side=$1 d=$2 port=$3
  instance_dirs "$d"
  { main_cf_common "$d"; cat <<EOF
mydestination = \$myhostname, localhost
alias_maps =
local_recipient_maps =
smtpd_client_restrictions = check_client_access cidr:$d/conf/access
EOF
  } > "$d/conf/main.cf"
  echo '127.0.0.0/8 HOLD' > "$d/conf/access"
  side_conf "$side" "$d" "127.0.0.1:$port inet n - n - - smtpd
postlog unix-dgram n - n - 1 postlogd
cleanup unix n - n - 0 cleanup
anvil unix - - n - 1 anvil
" "" "rewrite unix - - n - - trivial-rewrite
" master smtpd cleanup postlogd postfix anvil
}

count() { find "$1" -type f -perm -0700 2>/dev/null | wc -l; }

run_one() { # side S L -> prints "rate cpu_per_msg rss_kb"
  local side=$1 S=$2 L=$3 d="$work/$1" port; port=$(free_port)
  setup "$side" "$d" "$port"
  pfx "$side" "$d" postfix -c "$d/conf" start >/dev/null 2>&1
  sleep 1
  local pidf="$d/q/pid/master.pid" hz; hz=$(getconf CLK_TCK)
  local t0; t0=$(instance_ticks "$pidf")
  local peak=0 rss start end
  start=$(date +%s.%N)
  "$source_bin" -s "$S" -m "$N" -l "$L" -f bench@bench.example -t rcpt@bench.example \
    "127.0.0.1:$port" 2>"$d/source.err" &
  local src=$!
  while kill -0 "$src" 2>/dev/null; do
    rss=$(instance_mem "$pidf" VmRSS); [ "$rss" -gt "$peak" ] && peak=$rss
    sleep 0.1
  done
  wait "$src" || { echo "smtp-source failed on $side: $(cat "$d/source.err")" >&2; exit 1; }
  while [ "$(count "$d/q/hold")" -lt "$N" ]; do sleep 0.01; done
  end=$(date +%s.%N)
  local t1; t1=$(instance_ticks "$pidf")
  pfx "$side" "$d" postfix -c "$d/conf" stop >/dev/null 2>&1 || true
  sleep 0.5
  awk -v s="$start" -v e="$end" -v n="$N" -v t0="$t0" -v t1="$t1" -v hz="$hz" -v rss="$peak" \
    'BEGIN { printf "%.1f %.6f %d\n", n / (e - s), (t1 - t0) / hz / n, rss }'
}

echo "smtpd benchmark: $N messages per run, $R repeats, $(nproc) CPUs"
printf '%-12s %10s %10s %13s %13s %9s %9s   %s\n' case "rate ours" "rate pf" "cpu/msg ours" \
  "cpu/msg pf" "rss ours" "rss pf" "ours/pf: rate cpu rss"
for L in ${SIZES:-2048 102400}; do
  for S in ${SESSIONS:-1 10 50}; do
    declare -A rate cpu rss mr mc mm
    for side in ours postfix; do rate[$side]=""; cpu[$side]=""; rss[$side]=""; done
    for ((r = 0; r < R; r++)); do
      for side in ours postfix; do
        read -r a c k < <(run_one "$side" "$S" "$L")
        rate[$side]+="$a"$'\n'; cpu[$side]+="$c"$'\n'; rss[$side]+="$k"$'\n'
        if [ -n "${VERBOSE:-}" ]; then
          echo "  S=$S L=$L run $r $side: $a msg/s, $c cpu s/msg, rss $k kB" >&2
        fi
      done
    done
    for side in ours postfix; do
      mr[$side]=$(printf '%s' "${rate[$side]}" | median)
      mc[$side]=$(printf '%s' "${cpu[$side]}" | median)
      mm[$side]=$(printf '%s' "${rss[$side]}" | median)
    done
    awk -v c="S=$S L=$((L / 1024))K" -v a="${mr[ours]}" -v b="${mr[postfix]}" -v x="${mc[ours]}" \
      -v y="${mc[postfix]}" -v p="${mm[ours]}" -v q="${mm[postfix]}" \
      'BEGIN { printf "%-12s %10.1f %10.1f %13.6f %13.6f %9d %9d   %.2f %.2f %.2f\n",
               c, a, b, x, y, p, q, a / b, (y > 0 ? x / y : 0), (q > 0 ? p / q : 0) }'
  done
done
if [ -n "${KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
