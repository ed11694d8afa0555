package collector

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/probe-dev/probe/bpf"
)

// FuzzProbeHeader: any datagram parses or is refused, and what parses
// writes back to the same bytes.
func FuzzProbeHeader(f *testing.F) {
	b := make([]byte, ProbeHeaderLen)
	ProbeHeader{Session: 7, Seq: 9, Kind: KindRequest, Flags: 1, Index: 3}.Put(b)
	f.Add(b)
	f.Add(b[:ProbeHeaderLen-1])
	f.Add([]byte("prb1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, ok := ParseProbeHeader(b)
		if !ok {
			return
		}
		again := make([]byte, ProbeHeaderLen)
		h.Put(again)
		if string(again) != string(b[:ProbeHeaderLen]) {
			t.Fatalf("header %+v writes % x, read from % x", h, again, b[:ProbeHeaderLen])
		}
	})
}

// FuzzProbeEvent: any ring buffer record decodes or is refused, without a
// panic, and fields land where the C layout puts them.
func FuzzProbeEvent(f *testing.F) {
	b := make([]byte, bpf.ProbeEventSize)
	binary.LittleEndian.PutUint64(b[bpf.ProbeEventTs:], 123456789)
	binary.LittleEndian.PutUint32(b[bpf.ProbeEventSeq:], 42)
	f.Add(b)
	f.Add(b[:bpf.ProbeEventSize-1])
	f.Fuzz(func(t *testing.T, b []byte) {
		var ev ProbeEvent
		if !decodeProbeEvent(b, &ev) {
			if len(b) >= bpf.ProbeEventSize {
				t.Fatalf("a %d-byte record refused", len(b))
			}
			return
		}
		if ev.Seq != binary.LittleEndian.Uint32(b[bpf.ProbeEventSeq:]) || ev.Time != int64(binary.LittleEndian.Uint64(b[bpf.ProbeEventTs:])) {
			t.Fatalf("decoded %+v", ev)
		}
	})
}

// FuzzParseSockOpt: any -s/-g argument parses or is refused with a message
// that names it; a parsed name round-trips through LookupSockOpt.
func FuzzParseSockOpt(f *testing.F) {
	for _, s := range []string{"SO_RCVBUF=10000000", "TCP_CONGESTION=bbr", "7=65536", "tcp.1=1", "ip.0x10=3", "SO_RCVBUF=", "=1", "NOPE=1", "tcp.=1", "sol.-1=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o, err := ParseSockOpt(s)
		if err != nil {
			if !strings.Contains(err.Error(), "socket option") && !strings.Contains(err.Error(), "option") {
				t.Fatalf("ParseSockOpt(%q): error %q does not say what it refused", s, err)
			}
			return
		}
		again, err := LookupSockOpt(o.Name)
		if err != nil || again.Level != o.Level || again.Opt != o.Opt {
			t.Fatalf("ParseSockOpt(%q) = %+v; LookupSockOpt(%q) = %+v, %v", s, o, o.Name, again, err)
		}
	})
}

// FuzzParseTCPInfoFields: any --tcp-info list parses into known fields or is
// refused.
func FuzzParseTCPInfoFields(f *testing.F) {
	for _, s := range []string{"rtt%RTT:,snd_cwnd%cwnd=,delivery_rate", "rtt%", "", " , ", "nope", "rtt,,rtt", "%x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := ParseTCPInfoFields(s)
		if err != nil {
			return
		}
		if len(sel) > strings.Count(s, ",")+1 {
			t.Fatalf("%d fields from %q", len(sel), s)
		}
		for _, f := range sel {
			if _, ok := tcpInfoField(f.Field.Name); !ok {
				t.Fatalf("unknown field %q selected from %q", f.Field.Name, s)
			}
		}
	})
}
