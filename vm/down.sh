#!/usr/bin/env bash
# Tears the multi-VM testbed down and leaves nothing behind: the VMs and their
# volumes, the box's volume in libvirt's pool (and the pool, when the testbed
# made it), the two networks, libvirt's daemons, anything else still running
# in the namespace, the namespace, and the /dev/kvm change. Safe to run twice,
# or after a failed vm/up.sh.
#   vm/down.sh           keep the built box and Vagrant's home ($PROBE_VM_CACHE)
#   vm/down.sh --purge   remove those too
set -uo pipefail
cd "$(dirname "$0")/.."
. vm/lib.sh

t0=$(date +%s)
run=$PROBE_VM_STATE/run
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if alive "$run/libvirtd.pid"; then
	export PROBE_VM_TIMEOUT=180
	# vagrant needs the Vagrantfile's variables only to name the machines.
	PROBE_VM_BOX=${PROBE_VM_BOX:-$PROBE_VM_LOCAL_BOX} vg destroy -f >/dev/null 2>&1 || say "vagrant destroy failed; removing by hand"
	v() { timeout 60 virsh -q -c qemu:///system "$@"; }
	for d in $(v list --all --name | grep '^probe-vm-'); do
		v destroy "$d" >/dev/null 2>&1
		v undefine "$d" --remove-all-storage >/dev/null 2>&1 || v undefine "$d" >/dev/null
	done
	for n in $(v net-list --all --name | grep '^probe-vm-'); do
		v net-destroy "$n" >/dev/null 2>&1
		v net-undefine "$n" >/dev/null
	done
	if v pool-info default >/dev/null 2>&1; then
		v pool-refresh default >/dev/null 2>&1
		# The VMs' disks (probe-vm-*) and uploaded boxes (*_vagrant_box_image_*).
		for vol in $(v vol-list default | awk '$1 ~ /^probe-vm-/ || $1 ~ /_vagrant_box_image_/ { print $1 }'); do
			v vol-delete --pool default "$vol" >/dev/null
		done
		if [ ! -e "$run/pool-existed" ] && [ -z "$(v vol-list default | awk NF)" ]; then
			v pool-destroy default >/dev/null 2>&1
			v pool-undefine default >/dev/null
		fi
	fi
fi

# The daemons, by the pids they wrote, then anything left in the namespace
# (qemu, dnsmasq): all of it was started there by this testbed.
for d in libvirtd virtlockd virtlogd; do
	pid=$run/$d.pid
	if alive "$pid"; then
		p=$(cat "$pid")
		kill "$p"
		for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$p" 2>/dev/null && kill -9 "$p"
	fi
	rm -f "$pid"
done
if ip netns list 2>/dev/null | grep -qx "$PROBE_VM_NETNS\( .*\)\?"; then
	left=$(ip netns pids "$PROBE_VM_NETNS")
	if [ -n "$left" ]; then
		say "stopping what is left in the namespace: $(echo $left)"
		kill $left 2>/dev/null
		sleep 1
		left=$(ip netns pids "$PROBE_VM_NETNS")
		[ -n "$left" ] && kill -9 $left 2>/dev/null
	fi
	ip netns del "$PROBE_VM_NETNS"
fi
rm -rf /run/libvirt/network/probe-vm-* /var/lib/libvirt/dnsmasq/probe-vm-* /var/log/libvirt/qemu/probe-vm-*.log
# libvirtd's runtime directory, when no libvirtd is left to use it.
pgrep -x libvirtd >/dev/null || rm -rf /run/libvirt

if [ -s "$PROBE_VM_STATE/kvm-perms" ] && [ -c /dev/kvm ]; then
	read -r owner mode <"$PROBE_VM_STATE/kvm-perms"
	chown "$owner" /dev/kvm && chmod "$mode" /dev/kvm
	say "/dev/kvm back to $owner $mode"
fi
rm -rf .vagrant
if [ "${1:-}" = --purge ]; then
	rm -rf "$PROBE_VM_CACHE"
	say "removed $PROBE_VM_CACHE"
fi
say "down in $(($(date +%s) - t0)) s"
