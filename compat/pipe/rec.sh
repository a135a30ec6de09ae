#!/bin/sh
# Records argv, environment and stdin; behaves per the Subject line.
umask 022
in=$(mktemp /var/tmp/t6-pipe/out/tmp.XXXXXX)
cat > "$in"
subj=$(sed -n 's/^Subject: //p' "$in" | head -1)
key=$(echo "$subj" | tr -c 'A-Za-z0-9=_-' '_')
d=$(cat /var/tmp/t6-pipe/outdir)
mkdir -p "$d"
mv "$in" "$d/$key.stdin"
for a in "$@"; do printf '[%s]\n' "$a"; done > "$d/$key.argv"
env | grep -v '^PWD=\|^SHLVL=\|^_=' | sort > "$d/$key.env"
id -u > "$d/$key.id"; pwd >> "$d/$key.id"
case "$subj" in
  *exit=dsn*) echo "4.7.1 go away now"; exit 1;;
  *exit=dsn5*) echo "5.1.2 bad box"; exit 1;;
  *exit=out*) echo "some text	here"; exit 3;;
  *exit=sig*) kill -9 $$;;
  *exit=sleep*) sleep 30;;
  *exit=ok-out*) echo "  saved 42 bytes  "; exit 0;;
  *exit=*) code=${subj##*exit=}; code=${code%% *}; exit "$code";;
esac
exit 0
