#!/usr/bin/env bash
# Brings the multi-VM testbed up: builds bin/probe and the shared key, builds
# and adds the box when PROBE_VM_BOX is not given, starts libvirt's daemons in
# a network namespace of their own, runs `vagrant up`, and writes the env file
# that vm/test.sh and the suite (PROBE_VM_ENV) read. Root; see docs/vm.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. vm/lib.sh

[ "$(id -u)" = 0 ] || die "run as root: libvirt's daemons and the network namespace need it"
for c in vagrant virsh libvirtd virtlogd virtlockd qemu-system-x86_64 ip go timeout; do
	command -v "$c" >/dev/null || die "$c not found (apt-get install --no-install-recommends vagrant vagrant-libvirt libvirt-daemon-system qemu-system-x86 qemu-utils dnsmasq-base; docs/vm.md)"
done
if [ -e "$PROBE_VM_STATE/env" ]; then
	die "a testbed is up already ($PROBE_VM_STATE/env): make vm-down first"
fi
mkdir -p "$PROBE_VM_STATE"
echo "${PROBE_VM_CLIENTS:-2}" >"$PROBE_VM_STATE/clients"
t0=$(date +%s)
lap() { say "$1 ($(($(date +%s) - t0)) s)"; }

# A static binary runs on any guest userland.
# Stripped, it is a third smaller: the upload to a TCG guest is not free.
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o bin/probe ./cmd/probe
# One key for the VMs' agents and the host, made once and kept.
if [ ! -s vm/probe.key ]; then
	(umask 077 && head -c 32 /dev/urandom | base64 >vm/probe.key)
	say "made vm/probe.key"
fi

if [ -z "${PROBE_VM_BOX:-}" ]; then
	vm/build-box.sh
	export PROBE_VM_BOX=$PROBE_VM_LOCAL_BOX
	lap "box ready"
fi

# Without udev /dev/kvm is root's alone, and libvirt, which starts QEMU as
# libvirt-qemu, then re-probes QEMU on every call (tens of seconds each).
# Give it to group kvm, as udev would, for the run; vm/down.sh puts it back.
if [ -c /dev/kvm ] && [ "$(stat -c %G:%a /dev/kvm)" != kvm:660 ]; then
	stat -c '%u:%g %a' /dev/kvm >"$PROBE_VM_STATE/kvm-perms"
	chgrp kvm /dev/kvm && chmod 660 /dev/kvm
	say "/dev/kvm: group kvm, mode 660 for the run (was $(cat "$PROBE_VM_STATE/kvm-perms"))"
fi

# The namespace has only lo: libvirt's bridges, dnsmasq and the VMs' taps are
# created in it and cannot reach any other network. Forwarding stays off.
if ! ip netns list 2>/dev/null | grep -qx "$PROBE_VM_NETNS\( .*\)\?"; then
	ip netns add "$PROBE_VM_NETNS"
fi
in_ns ip link set lo up
in_ns sysctl -qw net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0

# No systemd here to start libvirt: start its three daemons by hand, in the
# namespace, with pid files of our own so vm/down.sh stops exactly these.
run=$PROBE_VM_STATE/run
mkdir -p "$run"
for d in virtlogd virtlockd libvirtd; do
	pid=$run/$d.pid
	if [ -s "$pid" ] && kill -0 "$(cat "$pid")" 2>/dev/null; then
		continue
	fi
	if pgrep -x "$d" >/dev/null; then
		die "$d is running already, not started by this testbed: stop it or run the testbed where libvirt is free"
	fi
	rm -f "/run/$d.pid" "/run/libvirt/$d.pid"
	in_ns "/usr/sbin/$d" -d -p "$pid"
done
for i in $(seq 150); do
	virsh -q -c qemu:///system version >/dev/null 2>&1 && break
	[ "$i" = 150 ] && die "libvirtd did not answer within 30 s"
	sleep 0.2
done
# Debian's libvirt package defines a NAT network named default: it must not run.
if virsh -q net-list --name | grep -qx default; then
	virsh -q net-destroy default >/dev/null
fi
virsh -q pool-info default >/dev/null 2>&1 && touch "$run/pool-existed"
lap "libvirt up in namespace $PROBE_VM_NETNS"

# Vagrant brings the VMs up in parallel and provisions each in one session.
# (Its progress bar, a line of escape sequences, is left out of the log.)
# On a busy host a guest's sshd sometimes drops the connection mid-upload
# ("closed stream"): a VM whose agent is not running is provisioned once more.
up_rc=0
vg up --provider=libvirt 2>&1 | sed -u 's/\x1b\[K//g; s/Progress: [0-9]*%//g' | grep --line-buffered -v '^[[:space:]]*$' || up_rc=$?
lap "vagrant up done (exit $up_rc)"

# One ssh config for all VMs: plain ssh costs ~0.1 s, `vagrant ssh` ~3 s.
vg ssh-config >"$PROBE_VM_STATE/ssh-config"
names=$(awk '$1 == "Host" { print $2 }' "$PROBE_VM_STATE/ssh-config" | tr '\n' ' ')
for n in $names; do
	if ! PROBE_VM_SSH_TIMEOUT=60 vssh "$n" systemctl is-active -q probe.service; then
		say "$n: agent not running; provisioning it again"
		vg provision "$n"
	fi
done
cat >"$PROBE_VM_STATE/env.tmp" <<EOF
# The running multi-VM testbed, written by vm/up.sh; PROBE_VM_ENV points here.
netns=$PROBE_VM_NETNS
ssh_config=$PROBE_VM_STATE/ssh-config
key_file=$PWD/vm/probe.key
probe=$PWD/bin/probe
shape=$PWD/vm/shape.sh
paths=${PROBE_VM_PATHS:-$PWD/vm/paths.conf}
host_address=10.254.1.1
vms=$names
EOF
vssh server cat /etc/hosts | awk '/# probe testbed$/ && $1 ~ /^10\.254\.1\./ { print "address." $2 "=" $1 }' >>"$PROBE_VM_STATE/env.tmp"
mv "$PROBE_VM_STATE/env.tmp" "$PROBE_VM_STATE/env"
say "testbed up in $(($(date +%s) - t0)) s; PROBE_VM_ENV=$PROBE_VM_STATE/env"
awk -F'[.=]' '/^address\./ { printf "  %-9s %s.%s.%s.%s\n", $2, $3, $4, $5, $6 }' "$PROBE_VM_STATE/env" >&2
