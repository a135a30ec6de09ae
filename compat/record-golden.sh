#!/bin/bash
# Re-record every golden file (compat/golden/**/*.out) from Postfix 3.7.11.
#
# Fetches the reference with compat/reference.sh when needed, then runs the differential test in
# record mode: each case runs under Postfix only and its normalised outcome is written to
# compat/golden/<case>.out. Golden files of cases that no longer exist are removed (on a full
# run with the corpus present). Review the result with `git diff --stat compat/golden`.
#
# Usage: compat/record-golden.sh [CASE-SUBSTRING[,...]]
set -euo pipefail
cd "$(dirname "$0")/.."
ROSTFIX_REFERENCE=$(compat/reference.sh)
export ROSTFIX_REFERENCE
if [ ! -d "${ROSTFIX_CORPUS:-../shared/corpus/configs}" ]; then
    echo "record-golden.sh: no config corpus at ${ROSTFIX_CORPUS:-../shared/corpus/configs}:" \
        "only the fixture cases will be recorded" >&2
fi
ROSTFIX_RECORD=1 ROSTFIX_CASE="${1:-${ROSTFIX_CASE:-}}" \
    cargo test --release --test differential -- --nocapture
