package collector

import (
	"fmt"

	"github.com/prometheus/procfs"
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
