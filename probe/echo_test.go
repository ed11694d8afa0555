package probe

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/estimator"
)

// flipRelay forwards UDP between a client and the agent and flips a payload
// byte of every probe whose sequence number is 3 mod 10 on the way there,
// and of every reply whose sequence number is 5 mod 7 on the way back.
func flipRelay(t *testing.T, agent netip.AddrPort) netip.AddrPort {
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
	var client netip.AddrPort
	clientKnown := make(chan struct{})
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := front.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if !client.IsValid() {
				client = from
				close(clientKnown)
			}
			if h, ok := collector.ParseProbeHeader(buf[:n]); ok && h.Seq%10 == 3 {
				buf[n-1] ^= 0x40
			}
			back.Write(buf[:n])
		}
	}()
	go func() {
		buf := make([]byte, 65536)
		for {
			n, err := back.Read(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue
			}
			if h, ok := collector.ParseProbeHeader(buf[:n]); ok && h.Seq%7 == 5 {
				buf[minEchoSize] ^= 0x01
			}
			<-clientKnown
			front.WriteToUDPAddrPort(buf[:n], client)
		}
	}()
	return front.LocalAddr().(*net.UDPAddr).AddrPort()
}

// Bytes flipped in flight are caught by the checksum and blamed on the
// direction they were flipped in.
func TestEchoCatchesCorruption(t *testing.T) {
	_, addr := startAgent(t, ServerConfig{})
	c, err := Dial(context.Background(), addr, ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.relay = func(agent netip.AddrPort) netip.AddrPort { return flipRelay(t, agent) }
	res, err := c.Echo(context.Background(), EchoParams{Count: 140, Size: 200, Interval: 100 * time.Microsecond}, EchoOptions{Wait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	wantThere, wantBack := 0, 0
	for _, r := range res.Records {
		there, back := r.Seq%10 == 3, r.Seq%7 == 5
		want := uint8(0)
		switch {
		case there:
			want, wantThere = dump.CorruptThere, wantThere+1
		case back:
			want, wantBack = dump.CorruptBack, wantBack+1
		}
		if r.Replies != 1 || r.Corrupt != want {
			t.Fatalf("probe %d: %d replies, corrupt %b, want %b", r.Seq, r.Replies, r.Corrupt, want)
		}
	}
	s, err := estimator.EchoStats(res.Point, res.Records, estimator.AutoSource)
	if err != nil {
		t.Fatal(err)
	}
	if s.CorruptedThere != wantThere || s.CorruptedBack != wantBack || s.Kernel.N+s.Unstamped != 140-wantThere-wantBack {
		t.Fatalf("corrupted there %d back %d (want %d, %d), RTT samples %d", s.CorruptedThere, s.CorruptedBack, wantThere, wantBack, s.Kernel.N)
	}
}

// Back to back into small socket buffers on loopback, in GSO batches and
// one probe per send: every probe that goes missing is one the kernel says
// a socket buffer dropped, and the point says how the probes went.
func TestEchoLossIsExplained(t *testing.T) {
	_, addr := startAgent(t, ServerConfig{})
	c, err := Dial(context.Background(), addr, ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	checked := 0
	for _, noGSO := range []bool{false, true} {
		p := EchoParams{Count: 20000, Size: 1000, RcvBuf: 16384, NoGSO: noGSO}
		res, err := c.Echo(context.Background(), p, EchoOptions{Wait: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if res.Point.GSO == noGSO {
			t.Errorf("no-gso %v: the point says GSO %v", noGSO, res.Point.GSO)
		}
		// An error here (everything lost) still comes with the counts.
		s, _ := estimator.EchoStats(res.Point, res.Records, estimator.AutoSource)
		t.Logf("no-gso %v: sent %d, lost there %d (agent socket dropped %d), back %d (client socket dropped %d)",
			noGSO, s.Sent, s.LostThere, s.AgentSocketDrops, s.LostBack, s.ClientSocketDrops)
		if s.Lost() == 0 {
			t.Logf("no-gso %v: nothing was lost: the receivers kept up, so there is nothing to explain", noGSO)
			continue
		}
		if uint64(s.LostThere) != s.AgentSocketDrops || uint64(s.LostBack) != s.ClientSocketDrops {
			t.Fatalf("no-gso %v: lost there %d / back %d, but the sockets dropped %d / %d",
				noGSO, s.LostThere, s.LostBack, s.AgentSocketDrops, s.ClientSocketDrops)
		}
		checked++
	}
	if checked == 0 {
		t.Skip("nothing was lost either way: the receivers kept up, so there is nothing to explain on this machine")
	}
}

// Probes over the agent's rate limit are lost there, and the agent says how
// many, so that every lost probe is explained.
func TestEchoRateLimitExplainsLoss(t *testing.T) {
	limits := DefaultLimits()
	limits.MaxRate = 1000 // a bucket of 100 replies, refilled at 1 per ms
	_, addr := startAgent(t, ServerConfig{Limits: limits})
	c, err := Dial(context.Background(), addr, ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := EchoParams{Count: 2000, Size: 64, RcvBuf: 8 << 20}
	res, err := c.Echo(context.Background(), p, EchoOptions{Wait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s, err := estimator.EchoStats(res.Point, res.Records, estimator.AutoSource)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sent %d, lost there %d: rate limit %d, agent socket %d", s.Sent, s.LostThere, res.Point.AgentLimited, res.Point.AgentSocketDrops)
	if res.Point.AgentLimited < 1000 || s.LostThere != res.Point.AgentLimited+int(res.Point.AgentSocketDrops) || s.ExplainedThere != s.LostThere {
		t.Fatalf("lost there %d, explained %d; agent limited %d, socket drops %d", s.LostThere, s.ExplainedThere, res.Point.AgentLimited, res.Point.AgentSocketDrops)
	}
}
