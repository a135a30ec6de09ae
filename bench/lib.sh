# Shared by the benchmarks that run rostfix and Postfix 3.7.11 side by side (smtpd.sh,
# submit.sh, delivery.sh): the checks, a scratch instance per side, running a side's
# programs, CPU and memory of a running instance, medians. Source it after setting `here`
# (the repository root); `bench_init NAME` then sets ref, lib, ours, work, owner, group.

bench_init() { # name: check the prerequisites, build, make the scratch directory
  ref=${ROSTFIX_REFERENCE:-/tmp/pfroot}
  [ -x "$ref/usr/sbin/postfix" ] || { echo "no Postfix 3.7.11 at $ref" >&2; exit 1; }
  [ "$(id -u)" = 0 ] || { echo "needs root (Postfix's master refuses otherwise)" >&2; exit 1; }
  cargo build --release --quiet --manifest-path "$here/Cargo.toml"
  ours="$here/target/release/rostfix"
  work=$(mktemp -d "/tmp/rostfix-bench-$1.XXXXXX")
  chmod 755 "$work"
  lib="$ref/usr/lib/postfix:$ref/usr/lib/x86_64-linux-gnu"
  owner=$(for u in postfix mail nobody; do getent passwd "$u" >/dev/null && { echo "$u"; break; }; done)
  local ogid; ogid=$(getent passwd "$owner" | cut -d: -f4)
  group=$(for g in postdrop staff users nogroup; do
    gid=$(getent group "$g" | cut -d: -f3) && [ -n "$gid" ] && [ "$gid" != "$ogid" ] && { echo "$g"; break; }; done)
  export TZ=UTC NORANDOMIZE=1
}

pfx() { # side d cmd args...: run a program of that side
  local side=$1 d=$2 p=$3; shift 3
  if [ "$side" = ours ]; then (exec -a "$p" "$d/bin/$p" "$@")
  else (LD_LIBRARY_PATH=$lib exec -a "$p" "$ref/usr/sbin/$p" "$@"); fi
}

instance_dirs() { # d: an empty instance directory (conf, q, data, bin)
  local d=$1
  rm -rf "$d"; mkdir -p "$d/conf" "$d/q" "$d/data" "$d/bin"; chmod 755 "$d"
  chown "$owner" "$d/data"
}

main_cf_common() { # d: the main.cf lines every benchmark instance starts with
  local d=$1
  cat <<EOF
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
EOF
}

# side d services ours_extra postfix_extra programs...: finish main.cf with the side's
# program directories and write master.cf (services, then the side's extra entries); for
# rostfix link the named programs (postdrop: the set-gid binary) into d/bin.
side_conf() {
  local side=$1 d=$2 services=$3 ours_extra=$4 postfix_extra=$5; shift 5
  if [ "$side" = ours ]; then
    local p
    for p in "$@"; do
      if [ "$p" = postdrop ]; then ln -s "$here/target/release/postdrop" "$d/bin/postdrop"
      else ln -s "$ours" "$d/bin/$p"; fi
    done
    printf 'daemon_directory = %s/bin\ncommand_directory = %s/bin\n' "$d" "$d" >> "$d/conf/main.cf"
    printf '%s%s' "$services" "$ours_extra" > "$d/conf/master.cf"
  else
    cat >> "$d/conf/main.cf" <<EOF
daemon_directory = $ref/usr/lib/postfix/sbin
command_directory = $ref/usr/sbin
shlib_directory = $ref/usr/lib/postfix
import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C NORANDOMIZE LD_LIBRARY_PATH=$lib
EOF
    cp "$ref/etc/postfix/postfix-files" "$d/conf/" 2>/dev/null || true
    : > "$d/conf/dynamicmaps.cf"
    printf '%s%s' "$services" "$postfix_extra" > "$d/conf/master.cf"
  fi
  touch -d '1 hour ago' "$d/conf/"*
}

# Clock ticks used by master and its children (master's own and reaped children's, plus
# every live child's).
instance_ticks() { # pidfile
  local m; m=$(tr -d ' ' < "$1")
  local t; t=$(awk '{print $14+$15+$16+$17}' "/proc/$m/stat")
  for c in $(pgrep -P "$m" || true); do
    t=$((t + $(awk '{print $14+$15}' "/proc/$c/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}

# Sum of a /proc status field (kB: VmRSS, VmHWM) over master and its live children.
instance_mem() { # pidfile field
  local m; m=$(tr -d ' ' < "$1")
  local t=0 p v
  for p in "$m" $(pgrep -P "$m" || true); do
    v=$(awk -v f="$2:" '$1 == f {print $2}' "/proc/$p/status" 2>/dev/null || true)
    t=$((t + ${v:-0}))
  done
  echo "$t"
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# Runs a command and prints the user+sys CPU seconds of everything it waited for.
children_cpu() { # cmd args...
  python3 -c 'import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print("%.3f" % (r.ru_utime + r.ru_stime))' "$@"
}
