package report

import (
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/probe-dev/probe/collector/dump"
	"golang.org/x/sys/unix"
)

// Pcap writes probe packets to a nanosecond pcap of raw IP packets, each at
// a kernel timestamp (eBPF at TC, else the socket's, else user space's, the
// first one a packet has): an echo run's probes when they left and first
// replies when they arrived, as the client saw them; a capacity run's train
// packets when they left the sender and when they reached the receiver.
// The payload is zeros of the packet's length: the capture is of when and
// how big, not of the bytes.
type Pcap struct {
	w *pcapgo.Writer
	// offset turns CLOCK_MONOTONIC (eBPF and user stamps) into wall-clock
	// time, as pcap wants; it is read once, on this host, while the run is
	// live.
	offset int64
}

// NewPcap writes the file header.
func NewPcap(w io.Writer) (*Pcap, error) {
	pw := pcapgo.NewWriterNanos(w)
	if err := pw.WriteFileHeader(65536, layers.LinkTypeRaw); err != nil {
		return nil, fmt.Errorf("pcap: %w", err)
	}
	var mono, real unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono)
	unix.ClockGettime(unix.CLOCK_REALTIME, &real)
	return &Pcap{w: pw, offset: real.Nano() - mono.Nano()}, nil
}

// pcapSources are the client's stamps in order of preference, and whether
// each is on CLOCK_MONOTONIC.
var pcapSources = []struct {
	src  dump.Source
	mono bool
}{{dump.SourceEBPF, true}, {dump.SourceSW, false}, {dump.SourceUser, true}}

// WallTime is a packet's stamp as the capture gives it, in ns since the
// epoch; ok is false when the packet has none. CLOCK_MONOTONIC stamps are
// put on the wall clock with this host's offset, which is the other host's
// too only when both share a kernel (the testbed's namespaces).
func (p *Pcap) WallTime(s dump.Stamps) (int64, bool) {
	for _, c := range pcapSources {
		if s.Has(c.src) {
			if c.mono {
				return s[c.src] + p.offset, true
			}
			return s[c.src], true
		}
	}
	return 0, false
}

// Point writes one measurement's probes and replies, in time order per
// direction as recorded (probes by sequence number, then replies).
func (p *Pcap) Point(local, agent netip.AddrPort, recs []dump.EchoRecord, size int) error {
	for i := range recs {
		r := &recs[i]
		n := r.Size
		if n == 0 {
			n = size
		}
		if t, ok := p.WallTime(r.ClientTx); ok {
			if err := p.packet(local, agent, n, t); err != nil {
				return err
			}
		}
		if r.Replies == 0 {
			continue
		}
		if t, ok := p.WallTime(r.ClientRx); ok {
			if err := p.packet(agent, local, n, t); err != nil {
				return err
			}
		}
	}
	return nil
}

// Train writes a capacity train's packets from sender to receiver: each
// packet when it left, at the sender's stamp, and when it arrived, at the
// receiver's, as far as the train has them.
func (p *Pcap) Train(sender, receiver netip.AddrPort, t *dump.Train) error {
	size := t.Size - ipOverhead(sender.Addr()) // UDP payload
	for i := range t.Tx {
		if ts, ok := p.WallTime(t.Tx[i]); ok {
			if err := p.packet(sender, receiver, size, ts); err != nil {
				return err
			}
		}
		if i >= len(t.Rx) {
			continue
		}
		if ts, ok := p.WallTime(t.Rx[i]); ok {
			if err := p.packet(sender, receiver, size, ts); err != nil {
				return err
			}
		}
	}
	return nil
}

// ipOverhead is the IP and UDP header bytes of a packet to or from addr.
func ipOverhead(addr netip.Addr) int {
	if addr.Unmap().Is4() {
		return 20 + 8
	}
	return 40 + 8
}

func (p *Pcap) packet(from, to netip.AddrPort, size int, t int64) error {
	from, to = netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), netip.AddrPortFrom(to.Addr().Unmap(), to.Port())
	buf := gopacket.NewSerializeBuffer()
	udp := &layers.UDP{SrcPort: layers.UDPPort(from.Port()), DstPort: layers.UDPPort(to.Port())}
	var ip gopacket.SerializableLayer
	if from.Addr().Is4() {
		v4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: from.Addr().AsSlice(), DstIP: to.Addr().AsSlice()}
		udp.SetNetworkLayerForChecksum(v4)
		ip = v4
	} else {
		v6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: from.Addr().AsSlice(), DstIP: to.Addr().AsSlice()}
		udp.SetNetworkLayerForChecksum(v6)
		ip = v6
	}
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ip, udp, gopacket.Payload(make([]byte, size))); err != nil {
		return fmt.Errorf("pcap: %w", err)
	}
	b := buf.Bytes()
	ci := gopacket.CaptureInfo{Timestamp: time.Unix(0, t), CaptureLength: len(b), Length: len(b)}
	if err := p.w.WritePacket(ci, b); err != nil {
		return fmt.Errorf("pcap: %w", err)
	}
	return nil
}
