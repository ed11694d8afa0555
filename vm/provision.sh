#!/bin/sh
# Runs as root in each VM, once, from the Vagrantfile's shell provisioner:
#   provision.sh NAME ADDRESS ADDR=NAME,ADDR=NAME,...
# The file provisioners have put the host-built probe binary, the shared key,
# the paths file and vm/guest/ in /tmp. Everything happens in this one ssh
# session: each extra `vagrant ssh` costs seconds.
set -eu
name=$1 address=$2 hosts=$3

hostname "$name"
echo "$name" >/etc/hostname
sed -i '/# probe testbed$/d' /etc/hosts
echo "127.0.1.1 $name # probe testbed" >>/etc/hosts
echo "$hosts" | tr ',' '\n' | awk -F= '{ print $1, $2, "# probe testbed" }' >>/etc/hosts

# The private interface: the one holding the address already (a second run),
# else the first interface with no IPv4 address (the management one has its
# DHCP lease). Names differ between boxes (eth1, ens6), so none is assumed.
ifc=$(ip -o -4 addr show | awk -v a="$address" 'index($4, a "/") == 1 { print $2; exit }')
if [ -z "$ifc" ]; then
	for d in /sys/class/net/*; do
		n=${d##*/}
		[ "$n" = lo ] && continue
		[ -e "$d/device" ] || continue
		[ -n "$(ip -o -4 addr show dev "$n")" ] && continue
		ifc=$n
		break
	done
fi
[ -n "$ifc" ] || { echo "no interface for $address" >&2; exit 1; }

install -d -m 755 /etc/probe
echo "$name" >/etc/probe/name
echo "$ifc" >/etc/probe/iface
echo "$address" >/etc/probe/address
install -m 600 /tmp/probe.key /etc/probe/probe.key
install -m 644 /tmp/probe-paths.conf /etc/probe/paths.conf
install -m 755 /tmp/probe-bin /usr/local/bin/probe
install -m 755 /tmp/probe-guest/probe-shape /tmp/probe-guest/probe-net /usr/local/sbin/
install -m 644 /tmp/probe-guest/probe-net.service /tmp/probe-guest/probe.service /etc/systemd/system/
rm -rf /tmp/probe-bin /tmp/probe.key /tmp/probe-paths.conf /tmp/probe-guest

systemctl daemon-reload
systemctl enable probe-net.service probe.service 2>/dev/null
systemctl restart probe-net.service
systemctl restart probe.service
for i in $(seq 50); do
	ss -Hltn 'sport = :7323' | grep -q . && break
	sleep 0.2
done
ss -Hltn 'sport = :7323' | grep -q . || { journalctl -u probe --no-pager | tail -20; exit 1; }
echo "$name: $address on $ifc, probe serving on :7323"
