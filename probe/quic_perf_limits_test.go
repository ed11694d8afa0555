package probe

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// startBoth runs one agent with a control listener and a QUIC perf
// listener, as serve --quic-perf does.
func startBoth(t *testing.T, cfg ServerConfig) (s *Server, control, perf string) {
	t.Helper()
	s, control = startAgent(t, cfg)
	return s, control, servePerf(t, s)
}

// perfDialFrom opens a QUIC perf connection from a loopback address of the
// test's choosing and holds it until the test ends or it is closed.
func perfDialFrom(t *testing.T, addr, from string) (*quic.Conn, error) {
	t.Helper()
	udp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(from), 0)))
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: udp}
	t.Cleanup(func() { tr.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return tr.Dial(ctx, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)),
		&tls.Config{NextProtos: []string{PerfALPN}, InsecureSkipVerify: true}, quicConfig())
}

// waitStats waits until the agent's counts satisfy ok.
func waitStats(t *testing.T, s *Server, ok func(ServerStats) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok(s.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("agent holds %+v", s.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// QUIC perf connections count against the control connections' caps: in
// total, per address and in their handshake. Past a cap they are refused
// (CONNECTION_REFUSED), and the agent goes on serving everyone else.
func TestPerfQUICConnectionLimits(t *testing.T) {
	t.Run("per source", func(t *testing.T) {
		s, control, perf := startBoth(t, ServerConfig{Conn: ConnLimits{MaxConnsPerSource: 2}})
		var held []*quic.Conn
		for range 2 {
			c, err := perfDialFrom(t, perf, "127.0.0.1")
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, c)
		}
		if _, err := perfDialFrom(t, perf, "127.0.0.1"); err == nil {
			t.Fatal("a third perf connection from one address was taken")
		}
		if _, err := dialFrom(t, control, "127.0.0.1"); err == nil || !strings.Contains(err.Error(), "(serve --max-conns-per-source)") {
			t.Fatalf("a control connection past the cap: %v", err)
		}
		if _, err := perfDialFrom(t, perf, "127.0.0.2"); err != nil {
			t.Fatalf("another source: %v", err)
		}
		held[0].CloseWithError(0, "")
		waitStats(t, s, func(st ServerStats) bool { return st.Conns == 2 })
		if _, err := perfDialFrom(t, perf, "127.0.0.1"); err != nil {
			t.Fatalf("after one closed: %v", err)
		}
	})
	t.Run("total", func(t *testing.T) {
		_, control, perf := startBoth(t, ServerConfig{Conn: ConnLimits{MaxConns: 2}})
		c, err := dialFrom(t, control, "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := perfDialFrom(t, perf, "127.0.0.2"); err != nil {
			t.Fatal(err)
		}
		if _, err := perfDialFrom(t, perf, "127.0.0.3"); err == nil {
			t.Fatal("a perf connection past --max-conns was taken")
		}
		if _, err := dialFrom(t, control, "127.0.0.3"); err == nil || !strings.Contains(err.Error(), "(serve --max-conns)") {
			t.Fatalf("a control connection past the cap: %v", err)
		}
		// The client already in goes on.
		if _, err := c.Counters(context.Background()); err != nil {
			t.Fatalf("a session of the connected client: %v", err)
		}
	})
	t.Run("before authentication", func(t *testing.T) {
		s, control, perf := startBoth(t, ServerConfig{Conn: ConnLimits{MaxPreAuth: 1}})
		raw, err := net.Dial("tcp", control) // says nothing: held in the handshake
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		waitStats(t, s, func(st ServerStats) bool { return st.PreAuth == 1 })
		if _, err := perfDialFrom(t, perf, "127.0.0.2"); err == nil {
			t.Fatal("a perf handshake past --max-preauth was taken")
		}
		raw.Close()
		waitStats(t, s, func(st ServerStats) bool { return st.PreAuth == 0 && st.Conns == 0 })
		c, err := perfDialFrom(t, perf, "127.0.0.2")
		if err != nil {
			t.Fatalf("after the silent connection left: %v", err)
		}
		// A completed handshake leaves the pre-authentication count, and a
		// closed connection every count.
		waitStats(t, s, func(st ServerStats) bool { return st.PreAuth == 0 && st.Conns == 1 })
		c.CloseWithError(0, "")
		waitStats(t, s, func(st ServerStats) bool { return st.Conns == 0 })
	})
}
