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
ref=${ROSTFIX_REFERENCE:-/tmp/pfroot}
[ -x "$ref/usr/sbin/sendmail" ] || { echo "no Postfix 3.7.11 at $ref" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root (Postfix's master refuses otherwise)" >&2; exit 1; }
cargo build --release --quiet --manifest-path "$here/Cargo.toml"
ours="$here/target/release/rostfix"
work=$(mktemp -d /tmp/rostfix-bench-submit.XXXXXX)
chmod 755 "$work"
lib="$ref/usr/lib/postfix:$ref/usr/lib/x86_64-linux-gnu"
owner=$(for u in postfix mail nobody; do getent passwd "$u" >/dev/null && { echo "$u"; break; }; done)
ogid=$(getent passwd "$owner" | cut -d: -f4)
group=$(for g in postdrop staff users nogroup; do
  gid=$(getent group "$g" | cut -d: -f3) && [ -n "$gid" ] && [ "$gid" != "$ogid" ] && { echo "$g"; break; }; done)
export TZ=UTC NORANDOMIZE=1

setup() { # side dir
  local side=$1 d=$2
  rm -rf "$d"; mkdir -p "$d/conf" "$d/q" "$d/data" "$d/bin"; chmod 755 "$d"
  chown "$owner" "$d/data"
  cat > "$d/conf/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $d/q
data_directory = $d/data
maillog_file = $d/maillog
maillog_file_prefixes = $d
meta_directory = $d/conf
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = bench.example
mail_owner = $owner
setgid_group = $group
default_privs = daemon
header_checks = regexp:$d/conf/header_checks
EOF
  echo '/^Subject:/ HOLD' > "$d/conf/header_checks"
  if [ "$side" = ours ]; then
    for p in master pickup cleanup; do ln -s "$ours" "$d/bin/$p"; done
    ln -s "$here/target/release/postdrop" "$d/bin/postdrop"
    ln -s "$ours" "$d/bin/sendmail"; ln -s "$ours" "$d/bin/postfix"
    printf 'daemon_directory = %s/bin\ncommand_directory = %s/bin\n' "$d" "$d" >> "$d/conf/main.cf"
    printf 'postlog unix-dgram n - n - 1 postlogd\npickup unix n - y 60 1 pickup\ncleanup unix n - y - 0 cleanup\n' > "$d/conf/master.cf"
  else
    cat >> "$d/conf/main.cf" <<EOF
daemon_directory = $ref/usr/lib/postfix/sbin
command_directory = $ref/usr/sbin
shlib_directory = $ref/usr/lib/postfix
import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C NORANDOMIZE LD_LIBRARY_PATH=$lib
EOF
    cp "$ref/etc/postfix/postfix-files" "$d/conf/" 2>/dev/null || true
    : > "$d/conf/dynamicmaps.cf"
    printf 'postlog unix-dgram n - n - 1 postlogd\npickup unix n - n 60 1 pickup\ncleanup unix n - n - 0 cleanup\nrewrite unix - - n - - trivial-rewrite\n' > "$d/conf/master.cf"
  fi
  touch -d '1 hour ago' "$d/conf/"*
}

pfx() { # side d cmd args...: run a program of that side
  local side=$1 d=$2 p=$3; shift 3
  if [ "$side" = ours ]; then (exec -a "$p" "$d/bin/$p" "$@")
  else (LD_LIBRARY_PATH=$lib exec -a "$p" "$ref/usr/sbin/$p" "$@"); fi
}

# Clock ticks used by master and its children (reaped + live).
instance_ticks() { # pidfile
  local m; m=$(tr -d ' ' < "$1")
  local t; t=$(awk '{print $14+$15+$16+$17}' "/proc/$m/stat")
  for c in $(pgrep -P "$m" || true); do
    t=$((t + $(awk '{print $14+$15}' "/proc/$c/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
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
  sub=$(python3 -c 'import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print("%.3f" % (r.ru_utime + r.ru_stime))' bash -c '
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

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

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
