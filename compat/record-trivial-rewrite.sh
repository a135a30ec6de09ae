#!/bin/bash
# Re-record compat/golden/trivial-rewrite/*.out from Postfix 3.7.11's trivial-rewrite.
#
# Each query of compat/cases/trivial-rewrite.txt runs in Postfix's trivial-rewrite in
# stand-alone mode (`trivial-rewrite -S -V`, one request on stdin in the attribute protocol,
# MAIL_CONFIG pointing at the case's configuration); the reply attributes and stderr messages
# are written to the golden file. Review the result with `git diff compat/golden/trivial-rewrite`.
#
# Usage: compat/record-trivial-rewrite.sh [SECTION-SUBSTRING]
set -euo pipefail
cd "$(dirname "$0")/.."
ROSTFIX_REFERENCE=$(compat/reference.sh)
export ROSTFIX_REFERENCE
ROSTFIX_RECORD=1 ROSTFIX_CASE="${1:-}" cargo test --test trivial_rewrite -- --nocapture
