# Shared by the vm/ scripts: names, places, and running things in the
# testbed's network namespace. Sourced from the repository root.

# Everything that outlives a testbed (the built box, Vagrant's home with the
# added box) lives here; vm/down.sh --purge removes it.
PROBE_VM_CACHE=${PROBE_VM_CACHE:-/var/cache/probe-vm}
export VAGRANT_HOME=${VAGRANT_HOME:-$PROBE_VM_CACHE/vagrant.d}
export VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_DEFAULT_PROVIDER=libvirt
# The box the Vagrantfile uses when PROBE_VM_BOX is not set by the user.
PROBE_VM_LOCAL_BOX=probe/debian12
# libvirtd, its bridges, dnsmasq and the VMs' taps live in this network
# namespace, which has nothing but lo and the libvirt bridges: whatever runs
# there cannot reach another network.
PROBE_VM_NETNS=${PROBE_VM_NETNS:-probe-vm}
# Runtime state of the running testbed: pid files, ssh config, the env file.
PROBE_VM_STATE=${PROBE_VM_STATE:-$PWD/.vagrant/probe-vm}
PROBE_VM_TIMEOUT=${PROBE_VM_TIMEOUT:-2400}
# Later vagrant calls (destroy) must see the machines vm/up.sh made.
if [ -z "${PROBE_VM_CLIENTS:-}" ] && [ -s "$PROBE_VM_STATE/clients" ]; then
	export PROBE_VM_CLIENTS=$(cat "$PROBE_VM_STATE/clients")
fi

say() { echo "vm: $*" >&2; }
die() { say "$*"; exit 1; }

vagrant_insecure_key() {
	local k
	for k in /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant /opt/vagrant/embedded/gems/gems/vagrant-*/keys/vagrant; do
		[ -f "$k" ] && { echo "$k"; return; }
	done
	die "cannot find Vagrant's insecure key"
}

in_ns() { ip netns exec "$PROBE_VM_NETNS" "$@"; }

# vagrant in the namespace, bounded: a hung libvirt call must not hang CI.
vg() { in_ns timeout --kill-after=30 "$PROBE_VM_TIMEOUT" vagrant "$@"; }

# ssh to a VM by its name, through the config vm/up.sh wrote.
vssh() { in_ns timeout --kill-after=10 "${PROBE_VM_SSH_TIMEOUT:-600}" ssh -F "$PROBE_VM_STATE/ssh-config" "$@"; }
