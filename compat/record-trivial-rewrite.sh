#!/bin/bash
# Re-record compat/trivial-rewrite/golden/*.out from Postfix 3.7.11's trivial-rewrite.
#
# Each query of compat/trivial-rewrite/cases.txt runs in Postfix's trivial-rewrite in
# stand-alone mode (`trivial-rewrite -S -V`, one request on stdin in the attribute protocol,
# MAIL_CONFIG pointing at the case's configuration); the reply attributes and stderr messages
# are written to the golden file. Review the result with `git diff compat/trivial-rewrite/golden`.
#
# Usage: compat/record-trivial-rewrite.sh [SECTION-SUBSTRING]
set -euo pipefail
cd "$(dirname "$0")/.."
ROSTFIX_REFERENCE=$(compat/reference.sh)
export ROSTFIX_REFERENCE
ROSTFIX_RECORD=1 ROSTFIX_CASE="${1:-}" cargo test --test trivial_rewrite -- --nocapture
