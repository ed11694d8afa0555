#!/usr/bin/env bash
# The test command (make test): every package's result, and each skipped or
# failed test with what it said, so that no skip goes unseen.
set -o pipefail
cd "$(dirname "$0")/.."
${GO:-go} test -count=1 -v "$@" ./... 2>&1 | awk '
	/^=== (RUN|PAUSE|CONT|NAME)/ { buf = ""; next }
	/^ *--- (SKIP|FAIL)/ { printf "%s%s\n", buf, $0; buf = ""; next }
	/^ *--- PASS/ { buf = ""; next }
	/^(ok|FAIL|panic:|\?)[ \t]/ || /^(PASS|FAIL)$/ { if ($0 !~ /^(PASS|FAIL)$/) print; buf = ""; next }
	{ buf = buf $0 "\n" }
'
