#!/bin/bash
# A bounded fuzzing run of every target: fuzz/smoke.sh [SECONDS_PER_TARGET] [TARGET...]
# Needs cargo-fuzz (cargo install cargo-fuzz). Stable toolchain: no sanitizer (-s none),
# debug assertions on (-a). New inputs go to a scratch corpus, never to fuzz/corpus.
# Exits non-zero on the first target that fails; its input is in fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/rostfix-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
cargo fuzz build -s none -a
for t in "${targets[@]}"; do
    echo "=== fuzz $t for ${secs}s"
    mkdir -p "$work/$t"
    if ! cargo fuzz run -s none -a "$t" "$work/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$work/$t.log" 2>&1; then
        tail -n 60 "$work/$t.log"
        echo "FAILED: $t (input in fuzz/artifacts/$t/)"
        exit 1
    fi
    grep -E '^(Done|stat::number_of_executed_units)' "$work/$t.log" || true
done
echo "fuzz smoke: ${#targets[@]} targets, ${secs}s each, no failure"
