package probe

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/estimator"
	"github.com/probe-dev/probe/probe/internal/wire"
)

// replayRelay forwards UDP between a client and the agent, and sends every
// probe whose sequence number is below replays a second time.
func replayRelay(t *testing.T, agent netip.AddrPort, replays uint32) netip.AddrPort {
	t.Helper()
	front, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	back, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(agent))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { front.Close(); back.Close() })
	client := make(chan netip.AddrPort, 1)
	go func() {
		buf := make([]byte, 65536)
		known := false
		for {
			n, from, err := front.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if !known {
				client <- from
				known = true
			}
			back.Write(buf[:n])
			if h, ok := collector.ParseProbeHeader(buf[:n]); ok && h.Seq < replays {
				back.Write(buf[:n])
			}
		}
	}()
	go func() {
		buf := make([]byte, 65536)
		var to netip.AddrPort
		for {
			n, err := back.Read(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue
			}
			if !to.IsValid() {
				to = <-client
			}
			front.WriteToUDPAddrPort(buf[:n], to)
		}
	}()
	return front.LocalAddr().(*net.UDPAddr).AddrPort()
}

// Replayed probes are dropped and counted, not answered again: they used to
// take the place of real probes, which then showed up as unexplained loss.
func TestEchoDropsReplays(t *testing.T) {
	_, addr := startAgent(t, ServerConfig{})
	c, err := Dial(context.Background(), addr, ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.relay = func(agent netip.AddrPort) netip.AddrPort { return replayRelay(t, agent, 100) }
	res, err := c.Echo(context.Background(), EchoParams{Count: 500, Size: 64, Interval: 500 * time.Microsecond, RcvBuf: 4 << 20}, EchoOptions{Wait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s, err := estimator.EchoStats(res.Point, res.Records, estimator.AutoSource)
	if err != nil {
		t.Fatal(err)
	}
	// A busy machine may drop some at a socket, but says so.
	if s.LostThere > s.ExplainedThere || s.Duplicates != 0 || s.AgentDuplicates != 100 {
		t.Fatalf("lost there %d (explained %d), duplicate replies %d, agent dropped %d duplicates; want 0 unexplained, 0, 100",
			s.LostThere, s.ExplainedThere, s.Duplicates, s.AgentDuplicates)
	}
}

// Once a session's first probe came in, the agent answers that address and
// port only: a probe of the session from another port of the client's
// address (spoofed, or another program) gets nothing and takes nothing.
func TestEchoAnswersOnlyItsPort(t *testing.T) {
	_, addr := startAgent(t, ServerConfig{})
	c, fc := rawConn(t, addr)
	cl := &Client{cfg: ClientConfig{Timeout: 5 * time.Second}, conn: c, fc: fc, host: "127.0.0.1"}
	if err := cl.handshake(context.Background()); err != nil {
		t.Fatal(err)
	}
	cl.fc.Write(&wire.Message{Open: &wire.Open{Mode: wire.ModeEcho, Echo: &EchoParams{Count: 10, Size: 64}}})
	m, err := cl.expect("opened")
	if err != nil {
		t.Fatal(err)
	}
	agent := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), m.Opened.Port)
	listen := func() *net.UDPConn {
		u, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { u.Close() })
		return u
	}
	client, other := listen(), listen()
	try := func(u *net.UDPConn, seq uint32, size int) int {
		buf := make([]byte, 2048)
		fillProbe(buf[:size], collector.ProbeHeader{Session: m.Opened.Session, Seq: seq, Kind: collector.KindRequest})
		u.WriteToUDPAddrPort(buf[:size], agent)
		u.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := u.Read(buf)
		if err != nil {
			return 0
		}
		return n
	}
	if n := try(client, 1, 64); n != 64 {
		t.Fatalf("the session's client got %d bytes back for 64", n)
	}
	if try(other, 2, 64) != 0 {
		t.Fatal("a probe from another port was answered")
	}
	if try(client, 1, 64) != 0 {
		t.Fatal("a replayed probe was answered")
	}
	if n := try(client, 2, 100); n != 100 {
		t.Fatalf("the client's probe 2 got %d bytes back for 100 (the other port's took its place?)", n)
	}
	cl.fc.Write(&wire.Message{Finish: &wire.Finish{}})
	for {
		m, err := cl.fc.Read()
		if err != nil {
			t.Fatal(err)
		}
		if d := m.Done; d != nil {
			if d.Received != 2 || d.Ignored != 2 || d.Duplicates != 1 {
				t.Fatalf("done: %+v; want 2 received, 2 ignored, 1 duplicate", *d)
			}
			return
		}
	}
}

// An echo session costs what its probes bring, not what its count says: a
// 30-byte Open of a million probes used to take ~100 MB at once.
func TestEchoOpenAllocatesByProbes(t *testing.T) {
	_, addr := startAgent(t, ServerConfig{})
	c, fc := rawConn(t, addr)
	cl := &Client{cfg: ClientConfig{Timeout: 5 * time.Second}, conn: c, fc: fc, host: "127.0.0.1"}
	if err := cl.handshake(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := allocated(func() {
		cl.fc.Write(&wire.Message{Open: &wire.Open{Mode: wire.ModeEcho, Echo: &EchoParams{Count: DefaultLimits().MaxPackets, Size: 64}}})
		if _, err := cl.expect("opened"); err != nil {
			t.Fatal(err)
		}
		cl.fc.Write(&wire.Message{Finish: &wire.Finish{}})
		if _, err := cl.expect("done"); err != nil {
			t.Fatal(err)
		}
	})
	// The receive batch (4 MiB) and a bit per probe are fixed costs.
	if got > 8<<20 {
		t.Fatalf("an echo session of no probes allocated %d bytes", got)
	}
}

// FuzzEchoProbe: any datagram is answered or ignored by an echo session
// without a panic; a probe is answered only from the session's client, once
// per sequence number, within the count, and never with more bytes than it
// brought.
func FuzzEchoProbe(f *testing.F) {
	const session, count = 77, 16
	probe := make([]byte, 64)
	fillProbe(probe, collector.ProbeHeader{Session: session, Seq: 3, Kind: collector.KindRequest})
	f.Add(probe, uint16(5000), false)
	f.Add(probe[:minEchoSize-1], uint16(5000), false)
	f.Add(probe, uint16(5001), true)
	f.Fuzz(func(t *testing.T, b []byte, port uint16, stranger bool) {
		client := netip.MustParseAddr("192.0.2.1")
		e := &agentEcho{id: session, peer: client, count: count, rate: newBucket(1000), seen: make([]uint64, 1)}
		from := netip.AddrPortFrom(client, port)
		if stranger {
			from = netip.AddrPortFrom(netip.MustParseAddr("192.0.2.2"), port)
		}
		answered := 0
		for i, d := range []collector.Datagram{{N: len(b), From: from}, {N: len(b), From: from},
			{N: len(b), From: netip.AddrPortFrom(client, port+1)}} {
			h, ok := collector.ParseProbeHeader(b)
			if !e.accept(h, ok, &d) {
				continue
			}
			if answered > 0 || d.From.Addr() != client || h.Session != session || int(h.Seq) >= count || len(b) < minEchoSize {
				t.Fatalf("datagram %d (%+v) from %v accepted", i, h, d.From)
			}
			e.mark(h.Seq, true)
			probeIntact(b)
			answered++
		}
		if answered > 0 && !stranger && e.duplicates != 1 {
			t.Fatalf("a replay was not counted as a duplicate: %d", e.duplicates)
		}
	})
}
