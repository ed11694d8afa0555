package wire

import (
	"time"

	"github.com/probe-dev/probe/collector/dump"
)

// ProtocolVersion is bumped on every incompatible change of the control
// protocol; client and agent must speak the same one.
const ProtocolVersion = 3

// Message is one control frame: exactly one of its fields is set.
type Message struct {
	Hello    *Hello    `msgpack:"hello,omitempty"`
	StartTLS *StartTLS `msgpack:"start_tls,omitempty"`
	Auth     *Auth     `msgpack:"auth,omitempty"`
	Welcome  *Welcome  `msgpack:"welcome,omitempty"`
	Open     *Open     `msgpack:"open,omitempty"`
	Opened   *Opened   `msgpack:"opened,omitempty"`
	Finish   *Finish   `msgpack:"finish,omitempty"`

	SendTrains     *SendTrains     `msgpack:"send_trains,omitempty"`
	TrainsSent     *TrainsSent     `msgpack:"trains_sent,omitempty"`
	Collect        *Collect        `msgpack:"collect,omitempty"`
	TrainsReceived *TrainsReceived `msgpack:"trains_received,omitempty"`

	TCPStart  *TCPStart  `msgpack:"tcp_start,omitempty"`
	TCPReport *TCPReport `msgpack:"tcp_report,omitempty"`

	RunExited *RunExited `msgpack:"run_exited,omitempty"`
	RunReport *RunReport `msgpack:"run_report,omitempty"`

	QUICStart  *QUICStart  `msgpack:"quic_start,omitempty"`
	QUICReport *QUICReport `msgpack:"quic_report,omitempty"`

	Counters *Counters `msgpack:"counters,omitempty"`

	Stamps *Stamps `msgpack:"stamps,omitempty"`
	Done   *Done   `msgpack:"done,omitempty"`
	Error  *Error  `msgpack:"error,omitempty"`
}

// Kind names the message m holds, as its key on the wire; "" if none.
func (m *Message) Kind() string {
	switch {
	case m.Hello != nil:
		return "hello"
	case m.StartTLS != nil:
		return "start_tls"
	case m.Auth != nil:
		return "auth"
	case m.Welcome != nil:
		return "welcome"
	case m.Open != nil:
		return "open"
	case m.Opened != nil:
		return "opened"
	case m.Finish != nil:
		return "finish"
	case m.SendTrains != nil:
		return "send_trains"
	case m.TrainsSent != nil:
		return "trains_sent"
	case m.Collect != nil:
		return "collect"
	case m.TrainsReceived != nil:
		return "trains_received"
	case m.TCPStart != nil:
		return "tcp_start"
	case m.TCPReport != nil:
		return "tcp_report"
	case m.RunExited != nil:
		return "run_exited"
	case m.RunReport != nil:
		return "run_report"
	case m.QUICStart != nil:
		return "quic_start"
	case m.QUICReport != nil:
		return "quic_report"
	case m.Counters != nil:
		return "counters"
	case m.Stamps != nil:
		return "stamps"
	case m.Done != nil:
		return "done"
	case m.Error != nil:
		return "error"
	}
	return ""
}

// Hello opens the handshake (client -> agent), in plain text: the agent
// answers a version it does not speak with an Error anyone can read.
type Hello struct {
	Version int    `msgpack:"version"`
	Client  string `msgpack:"client"`
}

// StartTLS accepts Hello (agent -> client, plain text); everything after it
// travels in TLS.
type StartTLS struct {
	Version int    `msgpack:"version"`
	Agent   string `msgpack:"agent"`
}

// Auth proves the client knows the key (client -> agent, in TLS): an HMAC
// over the TLS session's exported keying material; empty without a key.
type Auth struct {
	MAC []byte `msgpack:"mac"`
}

// Welcome ends the handshake (agent -> client, in TLS); with a key, MAC
// proves the agent knows it too, over the same TLS session.
type Welcome struct {
	MAC    []byte   `msgpack:"mac,omitempty"`
	Limits Limits   `msgpack:"limits"`
	Host   HostInfo `msgpack:"host"` // for reports; zero from older agents
}

// Limits bound what one session may ask of the agent.
type Limits struct {
	MaxSessions   int           `msgpack:"max_sessions"`    // concurrent sessions, whole agent
	MaxDuration   time.Duration `msgpack:"max_duration"`    // per session
	MaxPackets    int           `msgpack:"max_packets"`     // per session
	MaxPacketSize int           `msgpack:"max_packet_size"` // UDP payload bytes
	MaxRate       int           `msgpack:"max_rate"`        // packets per second, per session
	MaxBytes      int64         `msgpack:"max_bytes"`       // TCP and QUIC: stream bytes per session, both ways
}

// Open asks for a session (client -> agent).
type Open struct {
	Mode Mode        `msgpack:"mode"`
	Echo *EchoParams `msgpack:"echo,omitempty"`
	// Capacity opens a capacity session; trains then go either way, as
	// the client asks with SendTrains (agent sends) or Collect (agent
	// received).
	Capacity *CapacityParams `msgpack:"capacity,omitempty"`
	TCP      *TCPParams      `msgpack:"tcp,omitempty"`
	Run      *RunParams      `msgpack:"run,omitempty"` // needs an agent with AllowRun
	QUIC     *QUICParams     `msgpack:"quic,omitempty"`
}

// CapacityParams describe a capacity session.
type CapacityParams struct {
	Reverse bool `msgpack:"reverse"` // the client sends, the agent receives
}

// SendTrains asks the agent to send a batch of trains to the client.
type SendTrains struct {
	Trains []TrainSpec `msgpack:"trains"`
}

// TrainsSent returns the agent's transmit timestamps of a batch.
type TrainsSent struct {
	Trains []SentTrain `msgpack:"trains"`
}

// SentTrain is the sender's view of one train.
type SentTrain struct {
	ID uint32        `msgpack:"id"`
	Tx []dump.Stamps `msgpack:"tx"`
}

// Collect asks the agent for what it received of a batch the client sent,
// waiting up to Wait for packets still on their way.
type Collect struct {
	Trains []TrainSpec   `msgpack:"trains"`
	Wait   time.Duration `msgpack:"wait"`
}

// TrainsReceived answers Collect.
type TrainsReceived struct {
	Trains []RecvTrain `msgpack:"trains"`
}

// EchoParams describe an echo session.
type EchoParams struct {
	Count    int           `msgpack:"count"`    // packets
	Size     int           `msgpack:"size"`     // UDP payload bytes
	Interval time.Duration `msgpack:"interval"` // between sends; 0: back to back
	// Socket settings for both ends (the agent applies them to its socket
	// and replies): buffer sizes in bytes, DSCP, TTL; 0: the defaults.
	RcvBuf int `msgpack:"rcvbuf,omitempty"`
	SndBuf int `msgpack:"sndbuf,omitempty"`
	DSCP   int `msgpack:"dscp,omitempty"`
	TTL    int `msgpack:"ttl,omitempty"`
	// NoGSO keeps back-to-back probes and replies one send each; by
	// default both ends send them with UDP GSO, per batch (see SendBatch).
	NoGSO bool `msgpack:"no_gso,omitempty"`
}

// Opened grants a session (agent -> client).
type Opened struct {
	Session uint32 `msgpack:"session"`
	Port    uint16 `msgpack:"port"`
	// Sources the agent stamps with, best first.
	Sources []string `msgpack:"sources"`
	// PID is a run session's command.
	PID int `msgpack:"pid,omitempty"`
	// CertSHA256 is the SHA-256 of the agent's QUIC certificate (DER), for
	// the client to pin: the control connection vouches for it.
	CertSHA256 []byte `msgpack:"cert_sha256,omitempty"`
}

// Finish ends the session's traffic and asks for the agent's records.
type Finish struct{}

// Stamps is a batch of the agent's per-packet timestamps.
type Stamps struct {
	Records []AgentStamp `msgpack:"records"`
}

// AgentStamp is what the agent saw of one echoed packet.
type AgentStamp struct {
	Seq   uint32      `msgpack:"seq"`
	Rx    dump.Stamps `msgpack:"rx"`
	Tx    dump.Stamps `msgpack:"tx"`
	Order uint32      `msgpack:"order"` // its position in the agent's arrival order, from 1
}

// Done closes a session's results.
type Done struct {
	Received    int    `msgpack:"received"`     // probes accepted
	Ignored     int    `msgpack:"ignored"`      // datagrams not answered (foreign, malformed, duplicate, over the limit)
	Limited     int    `msgpack:"limited"`      // of those, the session's probes over the agent's rate limit
	Corrupted   int    `msgpack:"corrupted"`    // probes that failed the agent's checksum
	Duplicates  int    `msgpack:"duplicates"`   // of the ignored, replays of probes answered already
	SocketDrops uint64 `msgpack:"socket_drops"` // datagrams the agent's socket buffer overflowed with
}

// Error refuses a request; the agent hangs up after protocol faults.
type Error struct {
	Code    Code   `msgpack:"code"`
	Message string `msgpack:"message"`
}

func (e *Error) Error() string { return e.Message }
