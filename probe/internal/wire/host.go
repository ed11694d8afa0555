package wire

// HostInfo is what a host says about itself, so that a report names both
// ends: its name, its kernel and the timestamp sources it can take.
type HostInfo struct {
	Name    string   `msgpack:"name"`
	Kernel  string   `msgpack:"kernel"`
	Sources []string `msgpack:"sources"` // best first: ebpf, sw, user
}
