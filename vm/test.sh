#!/usr/bin/env bash
# Runs the multi-VM suite (vmtest/) against the testbed vm/up.sh brought up.
#   vm/test.sh [go test flags, e.g. -run Echo]
set -euo pipefail
cd "$(dirname "$0")/.."
. vm/lib.sh
[ -s "$PROBE_VM_STATE/env" ] || die "no testbed is up ($PROBE_VM_STATE/env): make vm-up"
export PROBE_VM_ENV=$PROBE_VM_STATE/env
t0=$(date +%s)
rc=0
go test ./vmtest -count=1 -v -timeout "${PROBE_VM_TEST_TIMEOUT:-20m}" "$@" || rc=$?
say "suite: exit $rc in $(($(date +%s) - t0)) s"
exit $rc
