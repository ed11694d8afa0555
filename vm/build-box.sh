#!/usr/bin/env bash
# Builds a Debian 12 Vagrant box for libvirt from Debian's packages, for
# machines that cannot download one, and adds it to Vagrant as probe/debian12.
#
#   vm/build-box.sh            build (or reuse the cached .box) and add it
#
# The .box is cached in $PROBE_VM_CACHE (default /var/cache/probe-vm) under the
# hash of this script, so a changed recipe builds a new one. Needs root,
# mmdebstrap, extlinux, parted, qemu-utils and the Debian mirror (apt only).
set -euo pipefail
cd "$(dirname "$0")/.."
. vm/lib.sh

mirror=${PROBE_VM_MIRROR:-http://deb.debian.org/debian}
hash=$(sha256sum vm/build-box.sh | cut -c1-12)
box=$PROBE_VM_CACHE/debian12-$hash.box

if [ -f "$box" ]; then
	say "reusing $box"
else
	mkdir -p "$PROBE_VM_CACHE"
	work=$(mktemp -d "$PROBE_VM_CACHE/build.XXXXXX")
	mnt=$work/mnt loop=
	cleanup() {
		mountpoint -q "$mnt" && umount "$mnt"
		[ -n "$loop" ] && losetup -d "$loop"
		rm -rf "$work"
	}
	trap cleanup EXIT
	t0=$(date +%s)

	# The guest runs the host-built static probe binary; it needs tc (and
	# sch_netem from the kernel's modules), ping for people, and sshd for Vagrant.
	# The initramfs holds only what finds and mounts a virtio disk: Debian's
	# default (MODULES=most) takes minutes to build twice on a busy 2-core
	# machine and longer to unpack under TCG.
	cat >"$work/initramfs-hook" <<-'EOF'
		#!/bin/sh
		[ "$1" = prereqs ] && exit 0
		. /usr/share/initramfs-tools/hook-functions
		manual_add_modules virtio_pci virtio_blk ext4 crc32c_generic
	EOF
	say "mmdebstrap bookworm from $mirror"
	mmdebstrap --quiet --variant=minbase \
		--essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" && echo MODULES=list >"$1/etc/initramfs-tools/conf.d/probe-vm"' \
		--essential-hook="install -D -m 755 $work/initramfs-hook \"\$1/etc/initramfs-tools/hooks/probe-vm\"" \
		--include=systemd-sysv,udev,dbus,openssh-server,sudo,linux-image-amd64,ifupdown,isc-dhcp-client,iproute2,iputils-ping,kmod,netbase,procps,ethtool \
		bookworm "$work/root" "$mirror"

	r=$work/root
	chroot "$r" useradd -m -s /bin/bash vagrant
	echo vagrant:vagrant | chroot "$r" chpasswd
	echo 'vagrant ALL=(ALL) NOPASSWD:ALL' >"$r/etc/sudoers.d/vagrant"
	chmod 440 "$r/etc/sudoers.d/vagrant"
	install -d -m 700 -o 1000 -g 1000 "$r/home/vagrant/.ssh"
	install -m 600 -o 1000 -g 1000 "$(vagrant_insecure_key).pub" "$r/home/vagrant/.ssh/authorized_keys"
	echo 'UseDNS no' >"$r/etc/ssh/sshd_config.d/vagrant.conf"
	echo '/dev/vda1 / ext4 errors=remount-ro 0 1' >"$r/etc/fstab"
	printf 'auto lo\niface lo inet loopback\n\nallow-hotplug eth0\niface eth0 inet dhcp\n' >"$r/etc/network/interfaces"
	echo debian12 >"$r/etc/hostname"
	mkdir -p "$r/boot/extlinux"
	kver=$(basename "$r"/boot/vmlinuz-* | sed 's/^vmlinuz-//')
	cat >"$r/boot/extlinux/extlinux.conf" <<-EOF
		default debian
		timeout 0
		label debian
		  kernel /boot/vmlinuz-$kver
		  initrd /boot/initrd.img-$kver
		  append root=/dev/vda1 ro net.ifnames=0 biosdevname=0 console=ttyS0 quiet
	EOF
	rm -f "$r"/etc/ssh/ssh_host_*  # each VM makes its own at first boot
	cat >"$r/etc/systemd/system/ssh-hostkeys.service" <<-'EOF'
		[Unit]
		Description=SSH host keys
		Before=ssh.service
		ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
		[Service]
		Type=oneshot
		ExecStart=/usr/bin/ssh-keygen -A
		[Install]
		WantedBy=multi-user.target
	EOF
	chroot "$r" systemctl enable -q ssh-hostkeys.service
	chroot "$r" apt-get clean
	rm -rf "$r"/var/lib/apt/lists/*

	# A 4 GiB sparse disk with one partition. No udev here, so the partition is
	# reached through a loop device at its offset rather than losetup -P.
	say "disk image"
	raw=$work/disk.raw
	truncate -s 4G "$raw"
	parted -s "$raw" mklabel msdos mkpart primary ext4 1MiB 100% set 1 boot on
	loop=$(losetup -f --show -o 1MiB "$raw")
	mkfs.ext4 -q -L root -O ^64bit,^metadata_csum_seed "$loop"
	mkdir "$mnt"
	mount "$loop" "$mnt"
	cp -a "$r"/. "$mnt"/
	extlinux --install "$mnt/boot/extlinux" 2>/dev/null
	umount "$mnt"
	losetup -d "$loop"
	loop=
	dd if=/usr/lib/EXTLINUX/mbr.bin of="$raw" bs=440 count=1 conv=notrunc status=none

	# The qcow2 is compressed already: the tar is not.
	say "qcow2 and box"
	qemu-img convert -c -O qcow2 "$raw" "$work/box.img"
	echo '{"provider":"libvirt","format":"qcow2","virtual_size":4}' >"$work/metadata.json"
	cat >"$work/Vagrantfile" <<-'EOF'
		Vagrant.configure("2") do |config|
		  config.vm.provider :libvirt do |lv|
		    lv.disk_bus = "virtio"
		  end
		end
	EOF
	tar -C "$work" -cf "$box.tmp" metadata.json Vagrantfile box.img
	mv "$box.tmp" "$box"
	say "built $box in $(($(date +%s) - t0)) s"
fi

if vagrant box list 2>/dev/null | grep -q "^$PROBE_VM_LOCAL_BOX .*libvirt"; then
	added=$(cat "$VAGRANT_HOME/probe-box-hash" 2>/dev/null || true)
	[ "$added" = "$hash" ] && { say "box $PROBE_VM_LOCAL_BOX already added"; exit 0; }
	vagrant box remove -f --provider libvirt "$PROBE_VM_LOCAL_BOX" >/dev/null
fi
vagrant box add --name "$PROBE_VM_LOCAL_BOX" "$box" >/dev/null
echo "$hash" >"$VAGRANT_HOME/probe-box-hash"
say "added box $PROBE_VM_LOCAL_BOX"
