#!/bin/bash
# Record compat/golden/smtpd/NAME.txt for every dialogue in compat/smtpd/dialogues/ from
# Postfix 3.7.11 (needs root and the reference: compat/reference.sh). The golden transcripts are
# what tests/smtpd_differential.rs compares rostfix with when the reference is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
ROSTFIX_REFERENCE=${ROSTFIX_REFERENCE:-$(compat/reference.sh)}
export ROSTFIX_REFERENCE
rm -rf compat/golden/smtpd
ROSTFIX_RECORD=1 cargo test --release --test smtpd_differential -- --nocapture || true
ls compat/golden/smtpd | wc -l
