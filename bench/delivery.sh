#!/usr/bin/env bash
# Benchmark: the whole path, SMTP (or sendmail) in -> queue -> delivery, rostfix vs Postfix
# 3.7.11, side by side in the same run, with the same durability (both cleanups fsync the
# queue file, both local agents fsync each Maildir file before the rename).
#
# Each side is a running instance (`postfix -c DIR start`) with smtpd on its own loopback port,
# pickup, cleanup, qmgr, trivial-rewrite (Postfix), bounce, local, smtp and discard; nothing
# chrooted. Destinations:
#   discard  rcpt@discard.example, default_transport = discard
#   maildir  bench@bench.example, local delivery, mail_spool_directory = DIR/spool/ (Maildir)
#   relay    rcpt@relay.example, relayhost = [127.0.0.1]:SINK, smtp-sink on another port
# Sources: smtp-source (Debian's /usr/sbin/smtp-source) with S sessions (1, 10, 50) and
# message sizes 2 KB and 100 KB; and 8 parallel `sendmail` submitters (2 KB).
#
# A run starts at the first connection (or sendmail) and ends when the queue (maildrop,
# incoming, active, deferred) is empty and every message has arrived: N `status=sent` lines in
# the log, and for maildir N files in new/. Measured: messages per second end to end; CPU
# seconds per message (the instance's daemons: master's own + reaped children's + live
# children's user+sys, after minus before; plus the submitters for the sendmail runs);
# peak RSS (sum of VmHWM of master and its live children at the end of the run). Prints the
# median of R repeats per side and the ratios rostfix/postfix (msgs/s > 1: we are faster;
# CPU and RSS < 1: we use less).
#
# Usage: bench/delivery.sh [R] [N]   (root; ROSTFIX_REFERENCE or /tmp/pfroot = Postfix 3.7.11)
# Subsets: DESTS="discard maildir relay" SESSIONS="1 10 50" SIZES="2048 102400" SENDMAIL=1
# PORT_BASE=21700 (uses PORT_BASE+1..+4). SIDES="ours" or "postfix" runs one side only
# (profiling; ratios then print as 0). KEEP=1 keeps the scratch directory (logs).
# FLOOR=1 also runs bench/floor.c (see bench/floor.sh) in each repeat, right after the two
# MTAs, and prints its rate and "bar/floor" = 2 x Postfix's rate / the floor's rate: above 1,
# the goal of 2x Postfix is out of reach of any MTA with Postfix's durability on this machine
# at that moment. discard and relay use the bare floor (a relay floor would be lower still),
# maildir the floor with two Maildir delivery processes; the sendmail cases have no floor.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
R=${1:-3}
N=$(( (${2:-500} + 7) / 8 * 8 ))
DESTS=${DESTS:-discard maildir relay}
SESSIONS=${SESSIONS:-1 10 50}
SIZES=${SIZES:-2048 102400}
SENDMAIL=${SENDMAIL:-1}
PORT_BASE=${PORT_BASE:-21700}
src=$(command -v smtp-source || echo /usr/sbin/smtp-source)
sink=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
[ -x "$src" ] && [ -x "$sink" ] || { echo "needs smtp-source and smtp-sink (Debian's postfix)" >&2; exit 1; }
source "$here/bench/lib.sh"
bench_init delivery
user=demo; getent passwd "$user" >/dev/null || user=nobody
sinkpid=""
cleanup_all() {
  [ -n "$sinkpid" ] && kill "$sinkpid" 2>/dev/null || true
  [ -n "${floor_pid:-}" ] && kill -- "-$floor_pid" 2>/dev/null || true
  for side in ours postfix; do
    [ -f "$work/$side/q/pid/master.pid" ] && pfx "$side" "$work/$side" postfix -c "$work/$side/conf" stop >/dev/null 2>&1 || true
  done
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup_all EXIT
trap "exit 1" INT TERM

setup() { # side dir dest port sinkport
  local side=$1 d=$2 dest=$3 port=$4 sport=$5
  instance_dirs "$d"; mkdir -p "$d/spool"; chmod 1777 "$d/spool"
  { main_cf_common "$d"; cat <<EOF
mydomain = bench.example
mydestination = bench.example
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
mail_spool_directory = $d/spool/
biff = no
smtp_connection_cache_on_demand = no
smtpd_client_event_limit_exceptions = 127.0.0.0/8
EOF
  } > "$d/conf/main.cf"
  case $dest in
    discard) echo "default_transport = discard" >> "$d/conf/main.cf" ;;
    relay) echo "relayhost = [127.0.0.1]:$sport" >> "$d/conf/main.cf" ;;
  esac
  local services="127.0.0.1:$port inet n - n - - smtpd
postlog unix-dgram n - n - 1 postlogd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
smtp unix - - n - - smtp
relay unix - - n - - smtp
local unix - n n - - local
discard unix - - n - - discard
error unix - - n - - error
retry unix - - n - - error
"
  local both='anvil unix - - n - 1 anvil
proxymap unix - - n - - proxymap
'
  side_conf "$side" "$d" "$services" "$both" "rewrite unix - - n - - trivial-rewrite
$both" master pickup cleanup qmgr bounce smtp smtpd local discard error sendmail postfix \
    postqueue postlogd proxymap anvil postdrop
}

queue_empty() { # q
  [ -z "$(find "$1/maildrop" "$1/incoming" "$1/active" "$1/deferred" -type f -print -quit 2>/dev/null)" ]
}

arrived() { # side d dest (N is a multiple of 8, for the sendmail runs)
  local n; n=$(grep -c 'status=sent' "$2/maillog" 2>/dev/null || true)
  [ "${n:-0}" -ge "$N" ] || return 1
  if [ "$3" = maildir ]; then
    [ "$(find "$2/spool/$user/new" -type f 2>/dev/null | wc -l)" -ge "$N" ] || return 1
  fi
  return 0
}

run_one() { # side dest sessions size -> prints "msgs_per_s cpu_per_msg hwm_kB"
  local side=$1 dest=$2 S=$3 size=$4 d="$work/$1"
  local port=$((PORT_BASE + 1)) sport=$((PORT_BASE + 3))
  [ "$side" = postfix ] && port=$((PORT_BASE + 2))
  local rcpt
  case $dest in
    discard) rcpt=rcpt@discard.example ;;
    maildir) rcpt=$user@bench.example ;;
    relay) rcpt=rcpt@relay.example ;;
  esac
  setup "$side" "$d" "$dest" "$port" "$sport"
  pfx "$side" "$d" postfix -c "$d/conf" start >/dev/null 2>&1
  local pidf="$d/q/pid/master.pid" hz; hz=$(getconf CLK_TCK)
  for _ in $(seq 100); do [ -s "$pidf" ] && break; sleep 0.05; done
  # Wait for the listener, then let the daemons settle.
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
  sleep 1
  local t0; t0=$(instance_ticks "$pidf")
  local start end sub=0
  start=$(date +%s.%N)
  if [ "$S" = sendmail ]; then
    local msg="$work/msg" per=$(((N + 7) / 8))
    printf 'From: bench@bench.example\nTo: %s\nSubject: bench\n\n%s\n' "$rcpt" \
      "$(head -c "$size" /dev/zero | tr '\0' 'x' | fold -w 72)" > "$msg"
    export -f pfx; export side d per msg lib ref rcpt
    sub=$(children_cpu bash -c '
      for ((j = 0; j < 8; j++)); do
        ( for ((i = 0; i < per; i++)); do
            pfx "$side" "$d" sendmail -C "$d/conf" -f bench@bench.example "$rcpt" < "$msg" || exit 1
          done ) &
      done
      wait')
  else
    timeout "${LIMIT:-300}" "$src" -s "$S" -m "$N" -l "$size" -f bench@bench.example -t "$rcpt" "127.0.0.1:$port" || echo "smtp-source failed: $side $dest $S $size" >&2
  fi
  local limit=$((SECONDS + ${LIMIT:-300}))
  until queue_empty "$d/q" && arrived "$side" "$d" "$dest"; do
    if [ "$SECONDS" -gt "$limit" ]; then echo "timeout: $side $dest $S $size" >&2; break; fi
    sleep 0.01
  done
  end=$(date +%s.%N)
  local t1 hwm; t1=$(instance_ticks "$pidf"); hwm=$(instance_mem "$pidf" VmHWM)
  pfx "$side" "$d" postfix -c "$d/conf" stop >/dev/null 2>&1 || true
  for _ in $(seq 100); do [ -f "$pidf" ] || break; sleep 0.05; done
  sleep 0.3
  awk -v s="$start" -v e="$end" -v n="$N" -v sub_="$sub" -v t0="$t0" -v t1="$t1" -v hz="$hz" -v h="$hwm" \
    'BEGIN { printf "%.1f %.6f %d\n", n / (e - s), (sub_ + (t1 - t0) / hz) / n, h }'
}

floor_pid=""
if [ -n "${FLOOR:-}" ]; then
  cc -O2 -o "$work/floor" "$here/bench/floor.c"
fi

floor_one() { # dest sessions size -> prints "msgs_per_s" (0 where there is no floor)
  local dest=$1 S=$2 size=$3 q="$work/floor-q" port=$((PORT_BASE + 4)) agents=""
  [ "$S" = sendmail ] && { echo 0; return; }
  [ "$dest" = maildir ] && agents=2
  rm -rf "$q"; mkdir -p "$q/incoming" "$q/active" "$q/maildir/tmp" "$q/maildir/new"
  # shellcheck disable=SC2086 # $agents is empty or one number
  (cd "$q" && exec setsid "$work/floor" "$port" "$S" $agents) &
  floor_pid=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
  sleep 0.3
  local start end
  start=$(date +%s.%N)
  "$src" -s "$S" -m "$N" -l "$size" -f bench@floor.example -t rcpt@floor.example "127.0.0.1:$port"
  if [ -n "$agents" ]; then
    local limit=$((SECONDS + ${LIMIT:-300}))
    until [ "$(find "$q/maildir/new" -type f | wc -l)" -ge "$N" ] || [ "$SECONDS" -gt "$limit" ]; do sleep 0.01; done
  fi
  end=$(date +%s.%N)
  kill -- "-$floor_pid" 2>/dev/null || true
  wait "$floor_pid" 2>/dev/null || true
  floor_pid=""
  rm -rf "$q"
  awk -v s="$start" -v e="$end" -v n="$N" 'BEGIN { printf "%.1f\n", n / (e - s) }'
}

"$sink" -u nobody 127.0.0.1:$((PORT_BASE + 3)) 256 >/dev/null 2>&1 &
sinkpid=$!

bench() { # dest S size
  local dest=$1 S=$2 size=$3
  declare -A rate cpu mem
  local floor=""
  for side in ours postfix; do rate[$side]=""; cpu[$side]=""; mem[$side]=""; done
  for ((r = 0; r < R; r++)); do
    for side in ${SIDES:-ours postfix}; do
      read -r a b c < <(run_one "$side" "$dest" "$S" "$size")
      rate[$side]+="$a"$'\n'; cpu[$side]+="$b"$'\n'; mem[$side]+="$c"$'\n'
    done
    [ -n "${FLOOR:-}" ] && floor+="$(floor_one "$dest" "$S" "$size")"$'\n'
  done
  local ro rp co cp mo mp
  ro=$(printf '%s' "${rate[ours]}" | median); rp=$(printf '%s' "${rate[postfix]}" | median)
  co=$(printf '%s' "${cpu[ours]}" | median); cp=$(printf '%s' "${cpu[postfix]}" | median)
  mo=$(printf '%s' "${mem[ours]}" | median); mp=$(printf '%s' "${mem[postfix]}" | median)
  local fl=""; [ -n "${FLOOR:-}" ] && fl=$(printf '%s' "$floor" | median)
  : "${ro:=0}" "${rp:=0}" "${co:=0}" "${cp:=0}" "${mo:=0}" "${mp:=0}"
  awk -v d="$dest" -v s="$S" -v z="$size" -v ro="$ro" -v rp="$rp" -v co="$co" -v cp="$cp" -v mo="$mo" -v mp="$mp" -v fl="$fl" \
    'BEGIN { printf "%-8s %-9s %7s | %8.1f %8.1f %5.2f | %8.5f %8.5f %5.2f | %7d %7d %5.2f",
             d, s, z, ro, rp, rp ? ro / rp : 0, co, cp, cp ? co / cp : 0, mo, mp, mp ? mo / mp : 0
             if (fl != "") printf(" | %8.1f %5.2f", fl, (fl > 0 ? 2 * rp / fl : 0))
             printf "\n" }'
}

echo "delivery benchmark: $N messages per run, median of $R, $(nproc) CPUs"
echo "dest     sessions     size |  msgs/s: rostfix postfix ratio | cpu s/msg: rostfix postfix ratio | peak RSS kB: rostfix postfix ratio${FLOOR:+ | floor bar/floor}"
for dest in $DESTS; do
  for size in $SIZES; do
    for S in $SESSIONS; do bench "$dest" "$S" "$size"; done
  done
  [ "$SENDMAIL" = 1 ] && bench "$dest" sendmail 2048
done
