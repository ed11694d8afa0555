package dump

import "time"

// TCPSample is one stream's state at one instant of a TCP test: the bytes
// the application moved so far and the kernel's TCP_INFO of the socket.
type TCPSample struct {
	T     time.Duration `msgpack:"t"`     // since the test started
	Bytes uint64        `msgpack:"bytes"` // written (sender) or read (receiver) so far

	RTT          time.Duration `msgpack:"rtt"` // smoothed
	RTTVar       time.Duration `msgpack:"rttvar"`
	MinRTT       time.Duration `msgpack:"min_rtt"`
	SndCwnd      uint32        `msgpack:"snd_cwnd"` // segments
	SndSsthresh  uint32        `msgpack:"snd_ssthresh"`
	SndMSS       uint32        `msgpack:"snd_mss"`
	Unacked      uint32        `msgpack:"unacked"`
	Lost         uint32        `msgpack:"lost"`
	Retransmits  uint8         `msgpack:"retransmits"` // of the segment at the head now
	TotalRetrans uint32        `msgpack:"total_retrans"`
	DeliveryRate uint64        `msgpack:"delivery_rate"` // bytes/s
	PacingRate   uint64        `msgpack:"pacing_rate"`   // bytes/s
	BytesAcked   uint64        `msgpack:"bytes_acked"`
	BytesRecv    uint64        `msgpack:"bytes_received"`
	BusyTime     time.Duration `msgpack:"busy_time"` // time with data in flight
	RwndLimited  time.Duration `msgpack:"rwnd_limited"`
	SndbufLimit  time.Duration `msgpack:"sndbuf_limited"`
}

// TCPStream is what one side saw of one stream of a TCP test.
type TCPStream struct {
	Index    int         `msgpack:"index"`
	Sent     uint64      `msgpack:"sent"`     // bytes written
	Received uint64      `msgpack:"received"` // bytes read
	Samples  []TCPSample `msgpack:"samples"`
	Err      string      `msgpack:"err,omitempty"`
}
