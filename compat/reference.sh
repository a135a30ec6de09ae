#!/bin/bash
# Fetch Debian 12's Postfix 3.7.11, the reference that rostfix is compared with.
#
# Downloads the .deb files with `apt-get download` (never installs them, never touches an
# installed MTA) and unpacks them with `dpkg -x` into a cache folder:
#
#     ${ROSTFIX_REFERENCE:-$HOME/.cache/rostfix/postfix-3.7.11}
#
# Then writes $ROOT/bin/<program>: one wrapper per Postfix command that sets LD_LIBRARY_PATH
# and starts the real binary with argv[0] set to the bare program name, so that messages read
# "postconf: warning: ..." exactly as rostfix prints them. Idempotent: a complete tree is left
# alone. Prints the root folder on stdout (everything else goes to stderr).
#
# Usage: compat/reference.sh            (env ROSTFIX_REFERENCE=DIR to choose the folder)
set -euo pipefail

want_version=3.7.11
root=${ROSTFIX_REFERENCE:-${HOME:-/root}/.cache/rostfix/postfix-$want_version}
packages=(postfix postfix-lmdb postfix-cdb postfix-pcre liblmdb0 libcdb1)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
libpath="$root/usr/lib/postfix:$root/usr/lib/$multiarch:$root/lib/$multiarch"

say() { printf 'reference.sh: %s\n' "$*" >&2; }

check_version() {
    local scratch out
    scratch=$(mktemp -d)
    : >"$scratch/main.cf"
    : >"$scratch/master.cf"
    out=$(LD_LIBRARY_PATH="$libpath" "$root/usr/sbin/postconf" -c "$scratch" -d mail_version 2>&1 || true)
    rm -rf "$scratch"
    if [ "$out" != "mail_version = $want_version" ]; then
        say "$root/usr/sbin/postconf -d mail_version said: $out"
        return 1
    fi
}

# Shared libraries that Postfix needs and the machine lacks: fetch them too, unpacked beside
# Postfix (still nothing is installed). Maps a soname to the Debian 12 package that ships it.
missing_libs() {
    local f
    for f in "$root"/usr/sbin/* "$root"/usr/lib/postfix/sbin/* "$root"/usr/lib/postfix/*.so; do
        [ -f "$f" ] && [ ! -L "$f" ] || continue
        head -c 4 "$f" | grep -q ELF || continue
        LD_LIBRARY_PATH="$libpath" ldd "$f" 2>/dev/null | awk '/not found/ {print $1}'
    done | sort -u
}

lib_package() {
    case "$1" in
    libicuuc.so.72 | libicudata.so.72 | libicui18n.so.72) echo libicu72 ;;
    libsasl2.so.2) echo libsasl2-2 ;;
    libdb-5.3.so) echo libdb5.3 ;;
    libnsl.so.2) echo libnsl2 ;;
    libtirpc.so.3) echo libtirpc3 ;;
    libssl.so.3 | libcrypto.so.3) echo libssl3 ;;
    libpcre2-8.so.0) echo libpcre2-8-0 ;;
    libgssapi_krb5.so.2 | libkrb5.so.3 | libk5crypto.so.3 | libkrb5support.so.0) echo libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 ;;
    libkeyutils.so.1) echo libkeyutils1 ;;
    libcom_err.so.2) echo libcom-err2 ;;
    libstdc++.so.6) echo libstdc++6 ;;
    libgcc_s.so.1) echo libgcc-s1 ;;
    *) say "no package known for missing library $1" ;;
    esac
}

download() { # download PACKAGE... into the current folder, refreshing apt's lists once if needed
    if ! apt-get download "$@" >&2; then
        say "apt-get download failed; running apt-get update and trying again"
        apt-get update >&2
        apt-get download "$@" >&2
    fi
}

write_wrappers() {
    local bin="$root/bin" prog target q_root
    mkdir -p "$bin"
    q_root=$(printf '%q' "$root")
    for target in "$root"/usr/sbin/* "$root"/usr/bin/*; do
        prog=${target##*/}
        [ -e "$target" ] || continue
        {
            echo '#!/bin/bash'
            echo "# Postfix $want_version reference: runs $prog from the unpacked Debian package"
            echo "# with argv[0] = \"$prog\". Written by compat/reference.sh."
            echo "root=$q_root"
            echo "export LD_LIBRARY_PATH=\"\$root/usr/lib/postfix:\$root/usr/lib/$multiarch:\$root/lib/$multiarch\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
            echo "exec -a $prog \"\$root/${target#"$root"/}\" \"\$@\""
        } >"$bin/$prog.tmp"
        chmod 755 "$bin/$prog.tmp"
        mv "$bin/$prog.tmp" "$bin/$prog"
    done
}

if [ -x "$root/usr/sbin/postconf" ] && check_version 2>/dev/null; then
    [ -x "$root/bin/postconf" ] || write_wrappers
    printf '%s\n' "$root"
    exit 0
fi
if [ -e "$root" ] && [ ! -e "$root/usr/sbin/postconf" ] && [ -n "$(ls -A "$root")" ]; then
    say "$root exists and is not a Postfix tree: not touching it"
    exit 1
fi

command -v apt-get >/dev/null && command -v dpkg >/dev/null || {
    say "needs apt-get and dpkg (Debian 12)"
    exit 1
}

say "fetching Postfix $want_version into $root"
mkdir -p "$(dirname "$root")"
work=$(mktemp -d "$(dirname "$root")/.reference.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/debs" "$work/root"
chmod 755 "$work/debs" # apt's sandbox user _apt must be able to write here
(
    cd "$work/debs"
    # Prefer the exact version; fall back to whatever the archive has (checked below).
    pinned=()
    for p in "${packages[@]}"; do
        case $p in postfix*) pinned+=("$p=$want_version-0+deb12u1") ;; *) pinned+=("$p") ;; esac
    done
    download "${pinned[@]}" 2>/dev/null || download "${packages[@]}"
)
for deb in "$work"/debs/*.deb; do
    dpkg -x "$deb" "$work/root"
done

# Swap the new tree in (keeps an interrupted run from leaving half a tree behind).
rm -rf "$root"
mv "$work/root" "$root"

missing=$(missing_libs)
if [ -n "$missing" ]; then
    extra=$(for l in $missing; do lib_package "$l"; done | tr ' ' '\n' | sort -u)
    say "the machine lacks $(echo $missing); unpacking $(echo $extra) beside Postfix"
    mkdir -p "$work/extra"
    chmod 755 "$work/extra"
    (cd "$work/extra" && download $extra)
    for deb in "$work"/extra/*.deb; do
        dpkg -x "$deb" "$root"
    done
fi

check_version || {
    say "the unpacked postconf is not Postfix $want_version"
    exit 1
}
write_wrappers
say "ready: $root (wrappers in $root/bin)"
printf '%s\n' "$root"
