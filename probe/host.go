package probe

import (
	"os"

	"golang.org/x/sys/unix"
)

// LocalHost describes this host; ebpf says whether its TC timestamper is
// loaded.
func LocalHost(ebpf bool) HostInfo {
	h := HostInfo{Sources: []string{"sw", "user"}}
	h.Name, _ = os.Hostname()
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		h.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if ebpf {
		h.Sources = append([]string{"ebpf"}, h.Sources...)
	}
	return h
}
