package dump

import "time"

// IfCounters are one interface's cumulative counters (/proc/net/dev).
type IfCounters struct {
	RxBytes   uint64 `msgpack:"rx_bytes"`
	RxPackets uint64 `msgpack:"rx_packets"`
	RxDrops   uint64 `msgpack:"rx_drops"`
	TxBytes   uint64 `msgpack:"tx_bytes"`
	TxPackets uint64 `msgpack:"tx_packets"`
	TxDrops   uint64 `msgpack:"tx_drops"`
}

// RunQueueBuckets is the size of ResourceSample.RunQueue: the log2(µs)
// buckets of bpf/sched.c (RUNQ_BUCKETS; a test in bpf checks they agree).
const RunQueueBuckets = 32

// ResourceSample is a watched process's (and its host's interfaces') state
// at one instant. Every counter is cumulative since the watch started or
// since the process did; the estimator works on differences.
type ResourceSample struct {
	T      time.Duration `msgpack:"t"`      // since the watch started
	User   time.Duration `msgpack:"user"`   // /proc utime, 10 ms steps
	System time.Duration `msgpack:"system"` // /proc stime, 10 ms steps
	OnCPU  time.Duration `msgpack:"on_cpu"` // from sched_switch, exact

	RSS     uint64 `msgpack:"rss"`      // bytes (VmRSS)
	PeakRSS uint64 `msgpack:"peak_rss"` // bytes (VmHWM)
	Threads int    `msgpack:"threads"`

	Voluntary   uint64 `msgpack:"voluntary"`   // switches while blocking
	Involuntary uint64 `msgpack:"involuntary"` // preemptions while runnable

	// RunQueue[i] counts wakeup-to-run latencies in [2^i, 2^(i+1)) µs
	// (bucket 0 also holds those under 1 µs).
	RunQueue [RunQueueBuckets]uint64 `msgpack:"run_queue"`

	Net map[string]IfCounters `msgpack:"net,omitempty"` // by interface name

	// ReadBytes and WriteBytes are what the tree made the storage layer
	// read and write (/proc/PID/io, ended children's included once
	// waited for); 0 where /proc does not say.
	ReadBytes  uint64 `msgpack:"read_bytes,omitempty"`
	WriteBytes uint64 `msgpack:"write_bytes,omitempty"`
}

// ResourceSeries is the time series of one watched process.
type ResourceSeries struct {
	Name    string           `msgpack:"name"`
	PID     int              `msgpack:"pid"`
	Samples []ResourceSample `msgpack:"samples"`
}
