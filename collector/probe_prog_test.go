package collector

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"
)

// tcxNext is TCX_NEXT (TC_ACT_UNSPEC, -1) as prog.Run reports it.
const tcxNext = 0xffffffff

// newKernelTimestamper loads the real probe objects, or skips saying why.
func newKernelTimestamper(t *testing.T) *Timestamper {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_BPF, CAP_NET_ADMIN) to load eBPF programs")
	}
	ts, err := NewTimestamper()
	if errors.Is(err, unix.EPERM) {
		t.Skipf("root without the capabilities (CAP_BPF, CAP_NET_ADMIN): %v", err)
	}
	if errors.Is(err, ebpf.ErrNotSupported) {
		t.Skipf("kernel lacks a feature the probe objects need: %v", err)
	}
	if err != nil {
		t.Fatal(err) // verifier errors and the like are bugs: fail
	}
	t.Cleanup(func() {
		if err := ts.Close(); err != nil {
			t.Errorf("close timestamper: %v", err)
		}
	})
	return ts
}

// eventLog collects a sink's events. The reader goroutine learns of a
// packet through the kernel, which the race detector cannot see, so the
// test's side must synchronise with a lock.
type eventLog struct {
	mu  sync.Mutex
	evs []ProbeEvent
}

func (l *eventLog) sink(ev *ProbeEvent) {
	l.mu.Lock()
	l.evs = append(l.evs, *ev)
	l.mu.Unlock()
}

// take returns the events so far and starts over.
func (l *eventLog) take() []ProbeEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	evs := l.evs
	l.evs = nil
	return evs
}

func monotonicNow(t *testing.T) int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Nano()
}

func probePayload(h ProbeHeader, extra int) []byte {
	b := make([]byte, ProbeHeaderLen+extra)
	h.Put(b)
	return b
}

var (
	testMAC1 = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	testMAC2 = net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
)

func serializeFrame(t *testing.T, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func ipv4Layer(proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{
		Version: 4, TTL: 64, Protocol: proto,
		SrcIP: net.IPv4(10, 0, 0, 1), DstIP: net.IPv4(10, 0, 0, 2),
	}
}

func udp4Frame(t *testing.T, ip *layers.IPv4, src, dst uint16, payload []byte) []byte {
	eth := &layers.Ethernet{SrcMAC: testMAC1, DstMAC: testMAC2, EthernetType: layers.EthernetTypeIPv4}
	udp := &layers.UDP{SrcPort: layers.UDPPort(src), DstPort: layers.UDPPort(dst)}
	udp.SetNetworkLayerForChecksum(ip)
	return serializeFrame(t, eth, ip, udp, gopacket.Payload(payload))
}

func udp6Frame(t *testing.T, src, dst uint16, payload []byte) []byte {
	eth := &layers.Ethernet{SrcMAC: testMAC1, DstMAC: testMAC2, EthernetType: layers.EthernetTypeIPv6}
	ip := &layers.IPv6{
		Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP,
		SrcIP: net.ParseIP("fd00::1"), DstIP: net.ParseIP("fd00::2"),
	}
	udp := &layers.UDP{SrcPort: layers.UDPPort(src), DstPort: layers.UDPPort(dst)}
	udp.SetNetworkLayerForChecksum(ip)
	return serializeFrame(t, eth, ip, udp, gopacket.Payload(payload))
}

func tcp4Frame(t *testing.T, src, dst uint16, payload []byte) []byte {
	eth := &layers.Ethernet{SrcMAC: testMAC1, DstMAC: testMAC2, EthernetType: layers.EthernetTypeIPv4}
	ip := ipv4Layer(layers.IPProtocolTCP)
	tcp := &layers.TCP{SrcPort: layers.TCPPort(src), DstPort: layers.TCPPort(dst), Seq: 1, ACK: true, Window: 1000}
	tcp.SetNetworkLayerForChecksum(ip)
	return serializeFrame(t, eth, ip, tcp, gopacket.Payload(payload))
}

// TestProbeProgram drives tc_ingress and tc_egress with prog.Run: only
// probes of a registered session on its port reach the ring buffer, and
// every packet is passed on with TCX_NEXT.
func TestProbeProgram(t *testing.T) {
	ts := newKernelTimestamper(t)
	const (
		session = 0x5e55_1011
		port    = 40000
		other   = 40001
	)
	var log eventLog
	if err := ts.AddSession(session, port, WantAll, log.sink); err != nil {
		t.Fatal(err)
	}

	req := ProbeHeader{Session: session, Seq: 17, Kind: KindRequest, Flags: 3, Index: 9}
	reply := ProbeHeader{Session: session, Seq: 18, Kind: KindReply, Index: 1}
	unknown := ProbeHeader{Session: session + 1, Seq: 19, Kind: KindRequest}
	notProbe := probePayload(req, 20)
	notProbe[0] ^= 0xff // magic broken

	// IPv4 with a 4-byte option (router alert): IHL 6, UDP at offset 24.
	withOpt := ipv4Layer(layers.IPProtocolUDP)
	withOpt.Options = []layers.IPv4Option{{OptionType: 0x94, OptionLength: 4, OptionData: []byte{0, 0}}}
	// A later fragment: what follows the IP header is not a UDP header.
	frag := ipv4Layer(layers.IPProtocolUDP)
	frag.FragOffset = 185

	cases := []struct {
		name  string
		frame []byte
		want  *ProbeHeader // nil: must not be recorded
		ipLen uint16
	}{
		{"ipv4 probe to port", udp4Frame(t, ipv4Layer(layers.IPProtocolUDP), 51000, port, probePayload(req, 100)), &req, 20 + 8 + 116},
		{"ipv4 reply from port", udp4Frame(t, ipv4Layer(layers.IPProtocolUDP), port, 51000, probePayload(reply, 0)), &reply, 20 + 8 + 16},
		{"ipv4 options honour ihl", udp4Frame(t, withOpt, 51000, port, probePayload(req, 4)), &req, 24 + 8 + 20},
		{"ipv6 probe to port", udp6Frame(t, 51000, port, probePayload(req, 50)), &req, 40 + 8 + 66},
		{"ipv6 reply from port", udp6Frame(t, port, 51000, probePayload(reply, 0)), &reply, 40 + 8 + 16},
		{"non-probe udp", udp4Frame(t, ipv4Layer(layers.IPProtocolUDP), 51000, port, notProbe), nil, 0},
		{"tcp with probe payload", tcp4Frame(t, 51000, port, probePayload(req, 0)), nil, 0},
		{"unregistered session", udp4Frame(t, ipv4Layer(layers.IPProtocolUDP), 51000, port, probePayload(unknown, 0)), nil, 0},
		{"another port", udp4Frame(t, ipv4Layer(layers.IPProtocolUDP), 51000, other, probePayload(req, 0)), nil, 0},
		{"ipv6 another port", udp6Frame(t, other, 51000, probePayload(req, 0)), nil, 0},
		{"truncated payload", udp4Frame(t, ipv4Layer(layers.IPProtocolUDP), 51000, port, probePayload(req, 0)[:10]), nil, 0},
		{"later ipv4 fragment", udp4Frame(t, frag, 51000, port, probePayload(req, 0)), nil, 0},
	}

	progs := []struct {
		prog *ebpf.Program
		dir  Direction
	}{{ts.objs.TcIngress, Ingress}, {ts.objs.TcEgress, Egress}}

	wantProbes := 0
	for _, p := range progs {
		for _, c := range cases {
			before := monotonicNow(t)
			ret, err := p.prog.Run(&ebpf.RunOptions{Data: c.frame})
			if err != nil {
				t.Fatalf("%s %s: run: %v", p.dir, c.name, err)
			}
			if ret != tcxNext {
				t.Errorf("%s %s: returned %#x, want TCX_NEXT", p.dir, c.name, ret)
			}
			if err := ts.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			after := monotonicNow(t)
			got := log.take()

			if c.want == nil {
				if len(got) != 0 {
					t.Errorf("%s %s: recorded %+v, want nothing", p.dir, c.name, got)
				}
				continue
			}
			wantProbes++
			if len(got) != 1 {
				t.Errorf("%s %s: recorded %d events, want 1", p.dir, c.name, len(got))
				continue
			}
			ev := got[0]
			want := ProbeEvent{
				Time: ev.Time, Session: c.want.Session, Seq: c.want.Seq, Index: c.want.Index,
				Kind: c.want.Kind, Flags: c.want.Flags, Dir: p.dir, IPLen: c.ipLen,
				Ifindex: 1, // prog.Run runs on the loopback of the current netns
			}
			if ev != want {
				t.Errorf("%s %s: recorded %+v, want %+v", p.dir, c.name, ev, want)
			}
			if ev.Time < before || ev.Time > after {
				t.Errorf("%s %s: time %d outside [%d, %d] (CLOCK_MONOTONIC)", p.dir, c.name, ev.Time, before, after)
			}
		}
	}

	probes, lost := ts.Stats()
	if probes != uint64(wantProbes) || lost != 0 {
		t.Errorf("stats: probes %d lost %d, want %d and 0", probes, lost, wantProbes)
	}

	// Once removed, the session's probes are not recorded any more.
	if err := ts.RemoveSession(session); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.objs.TcIngress.Run(&ebpf.RunOptions{Data: cases[0].frame}); err != nil {
		t.Fatal(err)
	}
	if err := ts.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := log.take(); len(got) != 0 {
		t.Errorf("recorded %d events after RemoveSession", len(got))
	}
	if err := ts.RemoveSession(session); err == nil {
		t.Error("second RemoveSession returned nil")
	}
}

func TestAddSessionErrors(t *testing.T) {
	ts := newKernelTimestamper(t)
	sink := func(*ProbeEvent) {}
	if err := ts.AddSession(1, 0, WantAll, sink); err == nil {
		t.Error("port 0 accepted")
	}
	if err := ts.AddSession(1, 5000, WantAll, nil); err == nil {
		t.Error("nil sink accepted")
	}
	if err := ts.AddSession(1, 5000, WantAll, sink); err != nil {
		t.Fatal(err)
	}
	if err := ts.AddSession(1, 5001, WantAll, sink); err == nil {
		t.Error("duplicate session accepted")
	}
}

// A full ring counts as lost, never blocks, and still passes the packet.
func TestProbeProgramRingFull(t *testing.T) {
	ts := newKernelTimestamper(t)
	// Keep the reader from draining: it blocks in the sink of the first event.
	release := make(chan struct{})
	defer close(release)
	first := true
	if err := ts.AddSession(1, 7000, WantAll, func(*ProbeEvent) {
		if first {
			first = false
			<-release
		}
	}); err != nil {
		t.Fatal(err)
	}
	frame := udp4Frame(t, ipv4Layer(layers.IPProtocolUDP), 51000, 7000, probePayload(ProbeHeader{Session: 1}, 0))
	// The ring's worth of 40-byte records, and some more.
	runs := int(ts.objs.Events.MaxEntries())/40 + 1000
	ret, _, err := ts.objs.TcEgress.Benchmark(frame, runs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ret != tcxNext {
		t.Errorf("returned %#x, want TCX_NEXT", ret)
	}
	probes, lost := ts.Stats()
	if lost == 0 || probes+lost != uint64(runs) {
		t.Errorf("stats: probes %d lost %d, want lost > 0 and a sum of %d", probes, lost, runs)
	}
}

// A session's Want records only the kinds and directions asked for: an echo
// agent wants requests at ingress and replies at egress, not their mirror
// images that loopback shows it too.
func TestProbeProgramWant(t *testing.T) {
	ts := newKernelTimestamper(t)
	const session, port = 0x5e55_2022, 40100
	var log eventLog
	want := WantEvent(KindRequest, Ingress) | WantEvent(KindReply, Egress)
	if err := ts.AddSession(session, port, want, log.sink); err != nil {
		t.Fatal(err)
	}
	req := udp4Frame(t, ipv4Layer(layers.IPProtocolUDP), 51000, port, probePayload(ProbeHeader{Session: session, Seq: 1, Kind: KindRequest}, 8))
	reply := udp4Frame(t, ipv4Layer(layers.IPProtocolUDP), port, 51000, probePayload(ProbeHeader{Session: session, Seq: 2, Kind: KindReply}, 8))
	train := udp4Frame(t, ipv4Layer(layers.IPProtocolUDP), 51000, port, probePayload(ProbeHeader{Session: session, Seq: 3, Kind: KindTrain}, 8))
	odd := udp4Frame(t, ipv4Layer(layers.IPProtocolUDP), 51000, port, probePayload(ProbeHeader{Session: session, Seq: 4, Kind: 9}, 8))
	for _, c := range []struct {
		name  string
		prog  *ebpf.Program
		frame []byte
		seq   uint32 // 0: must not be recorded
	}{
		{"request ingress", ts.objs.TcIngress, req, 1},
		{"request egress", ts.objs.TcEgress, req, 0},
		{"reply egress", ts.objs.TcEgress, reply, 2},
		{"reply ingress", ts.objs.TcIngress, reply, 0},
		{"train ingress", ts.objs.TcIngress, train, 0},
		{"unknown kind", ts.objs.TcIngress, odd, 0},
	} {
		if _, err := c.prog.Run(&ebpf.RunOptions{Data: c.frame}); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if err := ts.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		got := log.take()
		switch {
		case c.seq == 0 && len(got) != 0:
			t.Errorf("%s: recorded %+v", c.name, got)
		case c.seq != 0 && (len(got) != 1 || got[0].Seq != c.seq):
			t.Errorf("%s: got %+v, want seq %d", c.name, got, c.seq)
		}
	}
}
