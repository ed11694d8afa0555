package dump

import "time"

// EchoRecord is one echo probe as both ends saw it.
type EchoRecord struct {
	Seq      uint32 `msgpack:"seq"`
	Size     int    `msgpack:"size"`    // UDP payload bytes
	Replies  int    `msgpack:"replies"` // 0: lost; >1: duplicated
	ClientTx Stamps `msgpack:"client_tx"`
	ClientRx Stamps `msgpack:"client_rx"` // of the first reply
	AgentRx  Stamps `msgpack:"agent_rx"`  // zero: the probe never reached the agent
	AgentTx  Stamps `msgpack:"agent_tx"`

	// Scheduled is when the client meant to send the probe (CLOCK_MONOTONIC
	// ns); ClientTx[SourceUser] is when it did.
	Scheduled int64 `msgpack:"scheduled,omitempty"`
	// ClientOrder and AgentOrder are the 1-based positions in which the
	// (first) reply reached the client and the probe reached the agent; 0:
	// never. Reordering (RFC 4737) is read from them.
	ClientOrder uint32 `msgpack:"client_order,omitempty"`
	AgentOrder  uint32 `msgpack:"agent_order,omitempty"`
	// Corrupt says which checksum failed: CorruptThere, the agent's check of
	// the probe; CorruptBack, the client's check of the reply.
	Corrupt uint8 `msgpack:"corrupt,omitempty"`
}

// Corrupt bits.
const (
	CorruptThere = 1 << iota
	CorruptBack
)

// EchoPoint starts the records of one measurement of an echo run (one point
// of a sweep): the parameters, and what the hosts said about them.
type EchoPoint struct {
	Index    int           `msgpack:"index"`
	Size     int           `msgpack:"size"`      // UDP payload bytes
	Wait     time.Duration `msgpack:"wait"`      // between sends; 0: back to back
	Count    int           `msgpack:"count"`     // probes
	IPHeader int           `msgpack:"ip_header"` // IP+UDP header bytes, for IP-layer rates
	// Datagrams the kernel dropped because a socket's receive buffer was
	// full (the counter SO_RXQ_OVFL reports), at the agent and at the
	// client, during the point.
	AgentSocketDrops  uint64 `msgpack:"agent_socket_drops"`
	ClientSocketDrops uint64 `msgpack:"client_socket_drops"`
	// Probes the agent did not answer because they came faster than its
	// per-session rate limit (serve --max-rate): lost there, on purpose.
	AgentLimited int `msgpack:"agent_limited,omitempty"`
	// Datagrams the agent dropped as replays of probes it had answered
	// (a duplicate on the way, or someone replaying them).
	AgentDuplicates int `msgpack:"agent_duplicates,omitempty"`
	// GSO: the client sent the probes in UDP GSO batches, which the kernel
	// and eBPF stamp once per batch, not per probe.
	GSO bool `msgpack:"gso,omitempty"`
}
