#!/usr/bin/env bash
# Re-applies the path shaping to every running VM without re-provisioning:
#   vm/shape.sh [FILE]     FILE in vm/paths.conf's format (default: that file)
# Each VM takes its line (or the default line), keeps the file for its next
# boot and prints what it applied. One ssh session per VM, all at once.
set -euo pipefail
cd "$(dirname "$0")/.."
. vm/lib.sh

conf=${1:-${PROBE_VM_PATHS:-vm/paths.conf}}
[ -r "$conf" ] || die "cannot read $conf"
[ -s "$PROBE_VM_STATE/ssh-config" ] || die "no testbed is up ($PROBE_VM_STATE/ssh-config): make vm-up"
names=$(awk '$1 == "Host" { print $2 }' "$PROBE_VM_STATE/ssh-config")
pids=()
for n in $names; do
	PROBE_VM_SSH_TIMEOUT=60 vssh "$n" "sudo sh -c 'cat >/etc/probe/paths.conf && /usr/local/sbin/probe-shape'" <"$conf" &
	pids+=($!)
done
rc=0
for p in "${pids[@]}"; do
	wait "$p" || rc=1
done
exit $rc
