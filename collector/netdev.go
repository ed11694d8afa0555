package collector

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"
)

// IfStat is one interface's cumulative counters from /proc/net/dev.
type IfStat struct {
	RxBytes, RxPackets, RxDrops uint64
	TxBytes, TxPackets, TxDrops uint64
}

// ReadNetDev reads the interface counters of the calling thread's network
// namespace (/proc/thread-self/net/dev; /proc/net/dev would follow the
// process's main thread instead). A caller that switched namespaces must hold
// runtime.LockOSThread across the call.
func ReadNetDev() (map[string]IfStat, error) {
	pfs, err := procfs.NewFS("/proc/thread-self")
	if err != nil {
		return nil, fmt.Errorf("open /proc/thread-self: %w", err)
	}
	nd, err := pfs.NetDev()
	if err != nil {
		return nil, fmt.Errorf("read /proc/thread-self/net/dev: %w", err)
	}
	out := make(map[string]IfStat, len(nd))
	for name, l := range nd {
		out[name] = IfStat{
			RxBytes: l.RxBytes, RxPackets: l.RxPackets, RxDrops: l.RxDropped,
			TxBytes: l.TxBytes, TxPackets: l.TxPackets, TxDrops: l.TxDropped,
		}
	}
	return out, nil
}

// ReadNetDevIn reads the interface counters of the network namespace ns
// (an open /proc/PID/ns/net), which outlives the processes in it for as
// long as ns is open: what a process sent just before it ended can still
// be read after. It needs CAP_SYS_ADMIN unless ns is the caller's own.
func ReadNetDevIn(ns *os.File) (map[string]IfStat, error) {
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("open own network namespace: %w", err)
	}
	defer self.Close()
	if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("enter network namespace: %w", err)
	}
	nd, err := ReadNetDev()
	if serr := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); serr != nil {
		// The thread stays locked, and ends with its goroutine: it is
		// in the wrong namespace for anything else.
		return nil, errors.Join(err, fmt.Errorf("return to own network namespace: %w", serr))
	}
	runtime.UnlockOSThread()
	return nd, err
}
