package probe

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/probe/internal/wire"
)

// udpSock is a loopback UDP socket for the test's life.
func udpSock(t *testing.T) *net.UDPConn {
	t.Helper()
	u, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	return u
}

// sayHello sends a hello of session carrying seq from u to, and returns the
// answer, if one comes.
func sayHello(t *testing.T, u *net.UDPConn, to netip.AddrPort, session, seq uint32) (collector.ProbeHeader, bool) {
	t.Helper()
	buf := make([]byte, 64)
	collector.ProbeHeader{Session: session, Seq: seq, Kind: collector.KindHello}.Put(buf)
	if _, err := u.WriteToUDPAddrPort(buf, to); err != nil {
		t.Fatal(err)
	}
	u.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	n, err := u.Read(buf)
	if err != nil {
		return collector.ProbeHeader{}, false
	}
	h, ok := collector.ParseProbeHeader(buf[:n])
	if !ok || n != 64 || h.Kind != collector.KindHello || helloFlags(h.Flags)&helloReply == 0 {
		t.Fatalf("answer %+v (%d bytes) is not a hello reply of the hello's size", h, n)
	}
	return h, true
}

// A capacity receiver pins its peer's port only once a hello from that port
// carries the nonce the receiver sent there: a hello from a spoofed source
// port (here a second socket that never confirms, the client's host's
// other program), the nonce of another port, or guesses, pin nothing; once
// the client confirms its port, no other port is answered or counted.
func TestTrainHelloConfirmed(t *testing.T) {
	conn, err := collector.ListenUDP(context.Background(), netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	const session = 0x5eed
	r := newTrainReceiver(conn, session, netip.MustParseAddr("127.0.0.1"), nil, nil)
	done := make(chan struct{})
	go func() { defer close(done); r.run() }()
	defer func() { conn.Close(); <-done }()
	to := conn.LocalAddr()
	pinned := func() bool { return r.peerAddr().IsValid() }

	victim, attacker, client := udpSock(t), udpSock(t), udpSock(t)
	if a, ok := sayHello(t, victim, to, session, 0); !ok || a.Seq == 0 || helloFlags(a.Flags)&helloPinned != 0 {
		t.Fatalf("a first hello: answer %+v, %v; want a nonce, not pinned", a, ok)
	}
	if pinned() {
		t.Fatal("an unconfirmed hello pinned its port")
	}
	// The attacker learns the nonce of its own port and replays it from the
	// victim's.
	a, _ := sayHello(t, attacker, to, session, 0)
	if v, _ := sayHello(t, victim, to, session, a.Seq); helloFlags(v.Flags)&helloPinned != 0 || pinned() {
		t.Fatal("another port's nonce pinned the victim's port")
	}
	buf := make([]byte, collector.ProbeHeaderLen)
	for guess := range uint32(2000) {
		collector.ProbeHeader{Session: session, Seq: guess, Kind: collector.KindHello}.Put(buf)
		victim.WriteToUDPAddrPort(buf, to)
	}
	time.Sleep(50 * time.Millisecond)
	if got := r.peerAddr(); got.IsValid() && got != client.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Fatalf("guessed nonces pinned %v", got)
	}

	c, _ := sayHello(t, client, to, session, 0)
	if c, ok := sayHello(t, client, to, session, c.Seq); !ok || helloFlags(c.Flags)&helloPinned == 0 {
		t.Fatalf("the client's confirmation: answer %+v, %v", c, ok)
	}
	if got, want := r.peerAddr(), client.LocalAddr().(*net.UDPAddr).AddrPort(); got != want {
		t.Fatalf("trains would go to %v, want the client's %v", got, want)
	}
	victim.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	for { // the answers to the guesses
		if _, err := victim.Read(buf); err != nil {
			break
		}
	}
	if _, ok := sayHello(t, victim, to, session, 0); ok {
		t.Fatal("a hello from another port was answered after the client's was confirmed")
	}
	collector.ProbeHeader{Session: session, Seq: 9, Kind: collector.KindTrain}.Put(buf)
	victim.WriteToUDPAddrPort(buf, to)
	time.Sleep(50 * time.Millisecond)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.trains) != 0 {
		t.Fatal("a train packet from another port was counted")
	}
}

// Against the agent: a hello from a port that never confirms it binds no
// trains (the agent refuses to send, not knowing where), and after the
// client confirms its own port, the session's trains go there and nowhere
// else, whoever said hello first.
func TestCapacitySpoofedHello(t *testing.T) {
	_, addr := startAgent(t, ServerConfig{})
	_, fc := secureRaw(t, addr)
	if err := fc.Write(&wire.Message{Auth: &wire.Auth{}}); err != nil {
		t.Fatal(err)
	}
	if m, err := fc.Read(); err != nil || m.Welcome == nil {
		t.Fatalf("want welcome, got %v, %v", m, err)
	}
	open := func() (uint32, netip.AddrPort) {
		fc.Write(&wire.Message{Open: &wire.Open{Mode: wire.ModeCapacity, Capacity: &wire.CapacityParams{}}})
		m, err := fc.Read()
		if err != nil || m.Opened == nil {
			t.Fatalf("want opened, got %v, %v", m, err)
		}
		return m.Opened.Session, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), m.Opened.Port)
	}
	trains := &wire.SendTrains{Trains: []wire.TrainSpec{{ID: 1, N: 2, Size: 200}}}
	victim, client := udpSock(t), udpSock(t)

	// The spoofer knows the session's ID (32 random bits, inside TLS):
	// the worst case.
	session, agent := open()
	if _, ok := sayHello(t, victim, agent, session, 0); !ok {
		t.Fatal("no answer to a first hello")
	}
	fc.Write(&wire.Message{SendTrains: trains})
	m, err := fc.Read()
	if err != nil || m.Error == nil || m.Error.Code != wire.CodeProtocol {
		t.Fatalf("trains after an unconfirmed hello: %v, %v; want a refusal", m, err)
	}

	session, agent = open()
	sayHello(t, victim, agent, session, 0)
	a, _ := sayHello(t, client, agent, session, 0)
	if c, ok := sayHello(t, client, agent, session, a.Seq); !ok || helloFlags(c.Flags)&helloPinned == 0 {
		t.Fatalf("the client's confirmation: answer %+v, %v", c, ok)
	}
	fc.Write(&wire.Message{SendTrains: trains})
	if m, err := fc.Read(); err != nil || m.TrainsSent == nil {
		t.Fatalf("want trains_sent, got %v, %v", m, err)
	}
	got := func(u *net.UDPConn) (n int) {
		buf := make([]byte, 2048)
		u.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		for {
			k, err := u.Read(buf)
			if err != nil {
				return n
			}
			if h, ok := collector.ParseProbeHeader(buf[:k]); ok && h.Kind == collector.KindTrain {
				n++
			}
		}
	}
	if c, v := got(client), got(victim); c != 2 || v != 0 {
		t.Fatalf("train packets: %d at the client, %d at the spoofed port; want 2 and 0", c, v)
	}
	fc.Write(&wire.Message{Finish: &wire.Finish{}})
}

// FuzzTrainPacket: no datagram crashes a capacity receiver; hellos are
// answered only from its peer, at their own size, and never replies; a port
// is pinned only by a hello carrying its nonce, after which no other port
// is answered; and what it keeps stays bounded.
func FuzzTrainPacket(f *testing.F) {
	peer := netip.MustParseAddr("10.0.0.1")
	const session = 7
	for _, h := range []collector.ProbeHeader{
		{Session: session, Kind: collector.KindHello},
		{Session: session, Kind: collector.KindHello, Flags: uint8(helloReply | helloPinned), Seq: 5},
		{Session: session, Seq: 3, Kind: collector.KindTrain, Index: 4},
		{Session: session, Seq: 3, Kind: collector.KindTrain, Index: MaxTrainLen},
		{Session: session + 1, Kind: collector.KindTrain},
	} {
		b := make([]byte, collector.ProbeHeaderLen)
		h.Put(b)
		f.Add(b, uint16(4000), false, false)
		f.Add(b, uint16(4000), false, true)
	}
	f.Add([]byte("prb1"), uint16(1), true, false)
	f.Fuzz(func(t *testing.T, b []byte, port uint16, stranger, confirm bool) {
		r := newTrainReceiver(nil, session, peer, nil, nil)
		from := netip.AddrPortFrom(peer, port)
		if stranger {
			from = netip.AddrPortFrom(netip.MustParseAddr("10.0.0.2"), port)
		}
		if h, ok := collector.ParseProbeHeader(b); ok && confirm {
			h.Seq = r.nonce(port)
			b = append([]byte(nil), b...)
			h.Put(b)
		}
		// The same datagram twice, and once from another port.
		for i, d := range []collector.Datagram{{N: len(b), From: from}, {N: len(b), From: from},
			{N: len(b), From: netip.AddrPortFrom(from.Addr(), port+1)}} {
			d.Stamps[dump.SourceUser] = int64(i + 1)
			h, ok := collector.ParseProbeHeader(b)
			pinned := r.peerAddr()
			c := append([]byte(nil), b...)
			echo := r.handle(c, &d)
			if !echo {
				continue
			}
			if !ok || h.Kind != collector.KindHello || stranger || h.Session != session || helloFlags(h.Flags)&helloReply != 0 ||
				(pinned.IsValid() && pinned != d.From) {
				t.Fatalf("answered datagram %d (%+v, ok %v) from %v, pinned %v", i, h, ok, d.From, pinned)
			}
			a, _ := collector.ParseProbeHeader(c)
			if len(c) != len(b) || a.Kind != collector.KindHello || helloFlags(a.Flags)&helloReply == 0 || a.Seq != r.nonce(d.From.Port()) {
				t.Fatalf("answer %+v (%d bytes) to a hello of %d bytes", a, len(c), len(b))
			}
		}
		if p := r.peerAddr(); p.IsValid() {
			h, _ := collector.ParseProbeHeader(b)
			if p.Addr() != peer || h.Seq != r.nonce(p.Port()) {
				t.Fatalf("pinned %v by a hello carrying %d", p, h.Seq)
			}
		}
		if len(r.trains) > 1 {
			t.Fatalf("%d trains kept for one datagram", len(r.trains))
		}
		for _, tr := range r.trains {
			if tr.got != 1 || tr.dups != 2 {
				t.Fatalf("train counts %d packets and %d duplicates for one datagram", tr.got, tr.dups)
			}
		}
	})
}

// The eBPF stamps of train packets are kept within bounds however many
// packets of the session's ID arrive.
func TestTrainStampsBounded(t *testing.T) {
	s := newTrainStamps()
	ev := collector.ProbeEvent{Kind: collector.KindTrain, Dir: collector.Ingress, Time: 1}
	for i := range maxTrainStamps + 1000 {
		ev.Seq, ev.Index = uint32(i>>16), uint16(i)
		s.sink(&ev)
	}
	if len(s.ingress) > maxTrainStamps {
		t.Fatalf("%d stamps kept, bound %d", len(s.ingress), maxTrainStamps)
	}
}
