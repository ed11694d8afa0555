package dump

import "time"

// QUICStreamSample is one stream's byte count at one instant of a QUIC test.
type QUICStreamSample struct {
	T     time.Duration `msgpack:"t"`     // since the test started
	Bytes uint64        `msgpack:"bytes"` // written (sender) or read (receiver) so far
}

// QUICStream is what one side saw of one stream of a QUIC test. Dir is "up"
// (the client sends) or "down" (the agent sends), as the perf request says.
type QUICStream struct {
	ID        int64              `msgpack:"id"`  // the QUIC stream ID, the same on both sides
	Dir       string             `msgpack:"dir"` // "up" or "down"
	Requested uint64             `msgpack:"requested"`
	Sent      uint64             `msgpack:"sent"`     // bytes written
	Received  uint64             `msgpack:"received"` // bytes read
	Samples   []QUICStreamSample `msgpack:"samples"`
	Err       string             `msgpack:"err,omitempty"`
}

// QUICConnSample is one side's view of its QUIC connection at one instant:
// quic-go's ConnectionStats and, from its qlog metrics events, the bytes in
// flight. Counters are cumulative since the connection started.
type QUICConnSample struct {
	T             time.Duration `msgpack:"t"`
	SmoothedRTT   time.Duration `msgpack:"srtt"`
	MinRTT        time.Duration `msgpack:"min_rtt"`
	LatestRTT     time.Duration `msgpack:"latest_rtt"`
	RTTVar        time.Duration `msgpack:"rttvar"`
	Cwnd          uint64        `msgpack:"cwnd"`            // bytes, QUIC packets without UDP/IP headers
	BytesInFlight uint64        `msgpack:"bytes_in_flight"` // sent, not yet acknowledged or declared lost
	PacketsSent   uint64        `msgpack:"packets_sent"`
	BytesSent     uint64        `msgpack:"bytes_sent"`
	PacketsLost   uint64        `msgpack:"packets_lost"`
	BytesLost     uint64        `msgpack:"bytes_lost"`
	PacketsRecv   uint64        `msgpack:"packets_received"`
	BytesRecv     uint64        `msgpack:"bytes_received"`
}

// QUICPing is one datagram (RFC 9221) the client sent and the agent echoed.
type QUICPing struct {
	Seq    uint32        `msgpack:"seq"`
	Sent   time.Duration `msgpack:"sent"` // since the first ping
	RTT    time.Duration `msgpack:"rtt"`  // user-space send to receive; 0: no echo came back
	Loaded bool          `msgpack:"loaded"`
}

// QUICHandshake times one connection's start from the client: dial to
// handshake complete, and dial to the first byte of a one-byte perf
// response.
type QUICHandshake struct {
	Resumed   bool          `msgpack:"resumed"`    // a TLS session ticket was offered
	Used0RTT  bool          `msgpack:"used_0rtt"`  // the request went in 0-RTT and the agent took it
	Handshake time.Duration `msgpack:"handshake"`  // until the handshake completed
	FirstByte time.Duration `msgpack:"first_byte"` // until the response's first byte arrived
}
