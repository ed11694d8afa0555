package probe

import (
	"os"

	"golang.org/x/sys/unix"
)

// HostInfo is what a host says about itself, so that a report names both
// ends: its name, its kernel and the timestamp sources it can take.
type HostInfo struct {
	Name    string   `msgpack:"name"`
	Kernel  string   `msgpack:"kernel"`
	Sources []string `msgpack:"sources"` // best first: ebpf, sw, user
}

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
