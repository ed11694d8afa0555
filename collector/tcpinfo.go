package collector

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/probe-dev/probe/collector/dump"
	"golang.org/x/sys/unix"
)

// ReadTCPInfo reads the kernel's TCP_INFO of c.
func ReadTCPInfo(c syscall.Conn) (*unix.TCPInfo, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("read tcp_info: %w", err)
	}
	var info *unix.TCPInfo
	var serr error
	err = rc.Control(func(fd uintptr) {
		info, serr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return nil, fmt.Errorf("read tcp_info: %w", err)
	}
	return info, nil
}

// micros converts the kernel's µs counters, which are u32 or u64.
func micros[T uint32 | uint64](us T) time.Duration {
	return time.Duration(us) * time.Microsecond
}

// TCPSampleOf converts TCP_INFO (µs for times, segments for windows) into a
// sample at time t with the application's byte count.
func TCPSampleOf(info *unix.TCPInfo, t time.Duration, bytes uint64) dump.TCPSample {
	return dump.TCPSample{
		T:            t,
		Bytes:        bytes,
		RTT:          micros(info.Rtt),
		RTTVar:       micros(info.Rttvar),
		MinRTT:       micros(info.Min_rtt),
		SndCwnd:      info.Snd_cwnd,
		SndSsthresh:  info.Snd_ssthresh,
		SndMSS:       info.Snd_mss,
		Unacked:      info.Unacked,
		Lost:         info.Lost,
		Retransmits:  info.Retransmits,
		TotalRetrans: info.Total_retrans,
		DeliveryRate: info.Delivery_rate,
		PacingRate:   info.Pacing_rate,
		BytesAcked:   info.Bytes_acked,
		BytesRecv:    info.Bytes_received,
		BusyTime:     micros(info.Busy_time),
		RwndLimited:  micros(info.Rwnd_limited),
		SndbufLimit:  micros(info.Sndbuf_limited),
	}
}

// TCPInfoField is one sample field a user may select for printing; Value
// gives it in Unit.
type TCPInfoField struct {
	Name, Unit string
	Value      func(*dump.TCPSample) float64
}

func inUnit(d, unit time.Duration) float64 { return float64(d) / float64(unit) }

// TCPInfoFields are the selectable fields, named as in the dump's msgpack
// tags so that a selection and a dump read alike.
var TCPInfoFields = []TCPInfoField{
	{"rtt", "µs", func(s *dump.TCPSample) float64 { return inUnit(s.RTT, time.Microsecond) }},
	{"rttvar", "µs", func(s *dump.TCPSample) float64 { return inUnit(s.RTTVar, time.Microsecond) }},
	{"min_rtt", "µs", func(s *dump.TCPSample) float64 { return inUnit(s.MinRTT, time.Microsecond) }},
	{"snd_cwnd", "segments", func(s *dump.TCPSample) float64 { return float64(s.SndCwnd) }},
	{"snd_ssthresh", "segments", func(s *dump.TCPSample) float64 { return float64(s.SndSsthresh) }},
	{"snd_mss", "bytes", func(s *dump.TCPSample) float64 { return float64(s.SndMSS) }},
	{"unacked", "segments", func(s *dump.TCPSample) float64 { return float64(s.Unacked) }},
	{"lost", "segments", func(s *dump.TCPSample) float64 { return float64(s.Lost) }},
	{"retransmits", "segments", func(s *dump.TCPSample) float64 { return float64(s.Retransmits) }},
	{"total_retrans", "segments", func(s *dump.TCPSample) float64 { return float64(s.TotalRetrans) }},
	{"delivery_rate", "bit/s", func(s *dump.TCPSample) float64 { return 8 * float64(s.DeliveryRate) }},
	{"pacing_rate", "bit/s", func(s *dump.TCPSample) float64 { return 8 * float64(s.PacingRate) }},
	{"bytes_acked", "bytes", func(s *dump.TCPSample) float64 { return float64(s.BytesAcked) }},
	{"bytes_received", "bytes", func(s *dump.TCPSample) float64 { return float64(s.BytesRecv) }},
	{"busy_time", "ms", func(s *dump.TCPSample) float64 { return inUnit(s.BusyTime, time.Millisecond) }},
	{"rwnd_limited", "ms", func(s *dump.TCPSample) float64 { return inUnit(s.RwndLimited, time.Millisecond) }},
	{"sndbuf_limited", "ms", func(s *dump.TCPSample) float64 { return inUnit(s.SndbufLimit, time.Millisecond) }},
}

// SelectedField is a field chosen for printing and the label printed before
// its value.
type SelectedField struct {
	Field TCPInfoField
	Label string
}

// Format is the label followed by the value, without exponent so that byte
// counts stay readable.
func (f SelectedField) Format(s *dump.TCPSample) string {
	return f.Label + strconv.FormatFloat(f.Field.Value(s), 'f', -1, 64)
}

// ParseTCPInfoFields reads a comma-separated list of field[%label], like
// "rtt%RTT:,snd_cwnd%cwnd=,delivery_rate"; the label defaults to "name=" and
// may be empty ("rtt%"). An empty s selects nothing.
func ParseTCPInfoFields(s string) ([]SelectedField, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var sel []SelectedField
	for item := range strings.SplitSeq(s, ",") {
		name, label, hasLabel := strings.Cut(item, "%")
		name = strings.TrimSpace(name)
		if name == "" {
			return nil, fmt.Errorf("tcp_info field selection %q: empty field name", s)
		}
		f, ok := tcpInfoField(name)
		if !ok {
			return nil, fmt.Errorf("unknown tcp_info field %q (known: %s)", name, strings.Join(tcpInfoFieldNames(), ", "))
		}
		if !hasLabel {
			label = name + "="
		}
		sel = append(sel, SelectedField{Field: f, Label: label})
	}
	return sel, nil
}

func tcpInfoField(name string) (TCPInfoField, bool) {
	for _, f := range TCPInfoFields {
		if f.Name == name {
			return f, true
		}
	}
	return TCPInfoField{}, false
}

func tcpInfoFieldNames() []string {
	names := make([]string, len(TCPInfoFields))
	for i, f := range TCPInfoFields {
		names[i] = f.Name
	}
	return names
}
