package wire

import "time"

// Counters is the agent's interface counters at Time.
type Counters struct {
	Time   time.Time   `msgpack:"time"`
	Ifaces []IfCounter `msgpack:"ifaces"`
}

// IfCounter is one interface's cumulative counters (/proc/net/dev).
type IfCounter struct {
	Name      string `msgpack:"name"`
	RxBytes   uint64 `msgpack:"rx_bytes"`
	TxBytes   uint64 `msgpack:"tx_bytes"`
	RxPackets uint64 `msgpack:"rx_packets"`
	TxPackets uint64 `msgpack:"tx_packets"`
	RxDrops   uint64 `msgpack:"rx_drops"`
	TxDrops   uint64 `msgpack:"tx_drops"`
}

// Iface returns the counters of the interface called name.
func (c *Counters) Iface(name string) (IfCounter, bool) {
	for _, i := range c.Ifaces {
		if i.Name == name {
			return i, true
		}
	}
	return IfCounter{}, false
}
