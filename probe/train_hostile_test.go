package probe

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/collector/dump"
)

// A capacity receiver takes its peer's port from the first hello: a later
// hello from another port of the same address (spoofed, or another
// program) is neither echoed nor followed, so trains cannot be sent there.
func TestTrainHelloPinned(t *testing.T) {
	conn, err := collector.ListenUDP(context.Background(), netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	const session = 0x5eed
	r := newTrainReceiver(conn, session, netip.MustParseAddr("127.0.0.1"), nil, nil)
	done := make(chan struct{})
	go func() { defer close(done); r.run() }()
	defer func() { conn.Close(); <-done }()
	hello := func() (*net.UDPConn, bool) {
		u, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { u.Close() })
		buf := make([]byte, 64)
		collector.ProbeHeader{Session: session, Kind: collector.KindHello}.Put(buf)
		u.WriteToUDPAddrPort(buf, conn.LocalAddr())
		u.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, err = u.Read(buf)
		return u, err == nil
	}
	first, echoed := hello()
	if !echoed {
		t.Fatal("the first hello was not echoed")
	}
	if _, echoed := hello(); echoed {
		t.Fatal("a hello from another port was echoed")
	}
	if got, want := r.peerAddr(), first.LocalAddr().(*net.UDPAddr).AddrPort(); got != want {
		t.Fatalf("trains would go to %v, want the first hello's %v", got, want)
	}
}

// FuzzTrainPacket: no datagram crashes a capacity receiver, hellos are
// echoed only from its peer at their own size, and what it keeps stays
// bounded.
func FuzzTrainPacket(f *testing.F) {
	peer := netip.MustParseAddr("10.0.0.1")
	const session = 7
	for _, h := range []collector.ProbeHeader{
		{Session: session, Kind: collector.KindHello},
		{Session: session, Seq: 3, Kind: collector.KindTrain, Index: 4},
		{Session: session, Seq: 3, Kind: collector.KindTrain, Index: MaxTrainLen},
		{Session: session + 1, Kind: collector.KindTrain},
	} {
		b := make([]byte, collector.ProbeHeaderLen)
		h.Put(b)
		f.Add(b, uint16(4000), false)
	}
	f.Add([]byte("prb1"), uint16(1), true)
	f.Fuzz(func(t *testing.T, b []byte, port uint16, stranger bool) {
		r := newTrainReceiver(nil, session, peer, nil, nil)
		from := netip.AddrPortFrom(peer, port)
		if stranger {
			from = netip.AddrPortFrom(netip.MustParseAddr("10.0.0.2"), port)
		}
		// The same datagram twice, and once from another port.
		for i, d := range []collector.Datagram{{N: len(b), From: from}, {N: len(b), From: from},
			{N: len(b), From: netip.AddrPortFrom(from.Addr(), port+1)}} {
			d.Stamps[dump.SourceUser] = int64(i + 1)
			echo := r.handle(b, &d)
			h, ok := collector.ParseProbeHeader(b)
			if echo && (!ok || h.Kind != collector.KindHello || stranger || i == 2 || h.Session != session) {
				t.Fatalf("echoed datagram %d (%+v, ok %v) from %v", i, h, ok, d.From)
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
