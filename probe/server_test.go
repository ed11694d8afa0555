package probe

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/probe-dev/probe/probe/internal/wire"
	"github.com/vmihailenco/msgpack/v5"
	"golang.org/x/sync/errgroup"

	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/collector/dump"
)

// startAgent runs an agent on loopback for the test's lifetime.
func startAgent(t *testing.T, cfg ServerConfig) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return s, ln.Addr().String()
}

// echoOK checks that a well-behaved client is served end to end.
func echoOK(t *testing.T, addr string, key []byte) *EchoResult {
	t.Helper()
	ctx := context.Background()
	c, err := Dial(ctx, addr, ClientConfig{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := c.Echo(ctx, EchoParams{Count: 20, Size: 100, Interval: time.Millisecond}, EchoOptions{Wait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Records {
		if r.Replies != 1 {
			t.Fatalf("probe %d: %d replies", r.Seq, r.Replies)
		}
	}
	return res
}

func TestEchoOverLoopback(t *testing.T) {
	_, addr := startAgent(t, ServerConfig{})
	res := echoOK(t, addr, nil)
	if len(res.Records) != 20 {
		t.Fatalf("%d records", len(res.Records))
	}
	for _, r := range res.Records {
		for _, st := range []struct {
			name string
			s    dump.Stamps
		}{{"client tx", r.ClientTx}, {"client rx", r.ClientRx}, {"agent rx", r.AgentRx}, {"agent tx", r.AgentTx}} {
			if !st.s.Has(dump.SourceSW) || !st.s.Has(dump.SourceUser) {
				t.Fatalf("probe %d: %s stamps %v lack sw or user", r.Seq, st.name, st.s)
			}
		}
		if r.AgentTx[dump.SourceSW] < r.AgentRx[dump.SourceSW] || r.ClientRx[dump.SourceSW] < r.ClientTx[dump.SourceSW] {
			t.Fatalf("probe %d: stamps out of order: %+v", r.Seq, r)
		}
	}
}

// rawConn speaks frames by hand, to send what a client never would.
func rawConn(t *testing.T, addr string) (net.Conn, *wire.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c, wire.NewConn(c)
}

// expectRefusal reads frames until an Error and checks its code, then that
// the agent hung up.
func expectRefusal(t *testing.T, c net.Conn, fc *wire.Conn, code Code, text string) {
	t.Helper()
	for {
		m, err := fc.Read()
		if err != nil {
			t.Fatalf("want %s error, got %v", code, err)
		}
		if m.Error == nil {
			continue
		}
		if m.Error.Code != code || !strings.Contains(m.Error.Message, text) {
			t.Fatalf("got error %q (%s), want code %s containing %q", m.Error.Message, m.Error.Code, code, text)
		}
		break
	}
	if _, err := fc.Read(); !errors.Is(err, io.EOF) {
		t.Fatalf("agent kept the connection after a fault: %v", err)
	}
}

func hello() *wire.Message {
	return &wire.Message{Hello: &wire.Hello{Version: wire.ProtocolVersion}}
}

// secureRaw says hello and switches to TLS by hand, trusting any
// certificate, and returns the frames inside TLS.
func secureRaw(t *testing.T, addr string) (*tls.Conn, *wire.Conn) {
	t.Helper()
	c, fc := rawConn(t, addr)
	fc.Write(hello())
	if m, err := fc.Read(); err != nil || m.StartTLS == nil {
		t.Fatalf("want start_tls, got %v, %v", m, err)
	}
	tc := tls.Client(bufferedConn{Conn: c, r: fc.Reader()}, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{controlALPN}})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	return tc, wire.NewConn(tc)
}

func TestProtocolFaults(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	_, addr := startAgent(t, ServerConfig{Key: key})
	frame := func(body []byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
		return append(b, body...)
	}
	cases := []struct {
		name string
		send func(net.Conn, *wire.Conn)
		code Code
		text string
	}{
		{"malformed", func(c net.Conn, _ *wire.Conn) { c.Write(frame([]byte{0xc1, 0xff, 0x00})) }, CodeMalformed, "malformed"},
		{"empty message", func(c net.Conn, _ *wire.Conn) { c.Write(frame([]byte{0x80})) }, CodeProtocol, "expected hello"},
		// A 26-byte frame whose array header declares 2^32-1 records: before
		// authentication only handshake messages are decoded, and this one
		// is skipped, not allocated.
		{"stamps before the handshake", func(c net.Conn, _ *wire.Conn) {
			c.Write(frame([]byte{0x81, 0xa6, 's', 't', 'a', 'm', 'p', 's', 0x81, 0xa7, 'r', 'e', 'c', 'o', 'r', 'd', 's', 0xdd, 0xff, 0xff, 0xff, 0xff}))
		}, CodeMalformed, "malformed"},
		{"oversize", func(c net.Conn, _ *wire.Conn) {
			c.Write(binary.BigEndian.AppendUint32(nil, wire.MaxFrame+1))
		}, CodeOversize, "limit"},
		{"version", func(_ net.Conn, fc *wire.Conn) {
			fc.Write(&wire.Message{Hello: &wire.Hello{Version: wire.ProtocolVersion + 1}})
		}, CodeVersion, "version mismatch"},
		{"no hello", func(_ net.Conn, fc *wire.Conn) { fc.Write(&wire.Message{Finish: &wire.Finish{}}) }, CodeProtocol, "expected hello"},
		// What a client of protocol 2 sends first, nonce and all.
		{"protocol 2 client", func(c net.Conn, _ *wire.Conn) {
			body, _ := msgpack.Marshal(map[string]any{"hello": map[string]any{"version": 2, "client": "probe", "nonce": bytes.Repeat([]byte{7}, 32)}})
			c.Write(frame(body))
		}, CodeVersion, "agent speaks protocol 3, client 2"},
		{"pre-auth frame over the limit", func(c net.Conn, _ *wire.Conn) {
			c.Write(binary.BigEndian.AppendUint32(nil, 4097))
		}, CodeOversize, "limit 4096"},
		{"missing key", func(c net.Conn, _ *wire.Conn) {
			_, fc := secureRaw(t, addr)
			fc.Write(&wire.Message{Auth: &wire.Auth{}})
			expectRefusal(t, c, fc, CodeAuth, "authentication required")
		}, "", ""},
		{"wrong key", func(c net.Conn, _ *wire.Conn) {
			_, fc := secureRaw(t, addr)
			fc.Write(&wire.Message{Auth: &wire.Auth{MAC: bytes.Repeat([]byte{1}, 32)}})
			expectRefusal(t, c, fc, CodeAuth, "wrong key")
		}, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, fc := rawConn(t, addr)
			tc.send(c, fc)
			if tc.code != "" {
				expectRefusal(t, c, fc, tc.code, tc.text)
			}
			// The agent keeps serving everyone else.
			echoOK(t, addr, key)
		})
	}
}

func TestClientErrors(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	_, addr := startAgent(t, ServerConfig{Key: key})
	ctx := context.Background()
	if _, err := Dial(ctx, addr, ClientConfig{Key: []byte("another key of 32 bytes........")}); err == nil || !strings.Contains(err.Error(), "wrong key") {
		t.Fatalf("wrong key: %v", err)
	}
	if _, err := Dial(ctx, addr, ClientConfig{}); err == nil || !strings.Contains(err.Error(), "requires a key") {
		t.Fatalf("no key: %v", err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close()
	if _, err := Dial(ctx, closed, ClientConfig{}); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("refused: %v", err)
	}
	if _, err := Dial(ctx, "no-such-host.invalid", ClientConfig{}); err == nil || !strings.Contains(err.Error(), "unknown host") {
		t.Fatalf("unknown host: %v", err)
	}
	echoOK(t, addr, key)
}

// recorder keeps what a client wrote.
type recorder struct {
	net.Conn
	mu  sync.Mutex
	out bytes.Buffer
}

func (r *recorder) Write(b []byte) (int, error) {
	r.mu.Lock()
	r.out.Write(b)
	r.mu.Unlock()
	return r.Conn.Write(b)
}

// A handshake recorded on the wire does not open another connection.
func TestReplayedHandshakeRefused(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	_, addr := startAgent(t, ServerConfig{Key: key})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{Conn: nc}
	c := &Client{cfg: ClientConfig{Key: key, Timeout: 5 * time.Second}, conn: rec, fc: wire.NewConn(rec), host: "127.0.0.1"}
	if err := c.handshake(context.Background()); err != nil {
		t.Fatalf("genuine handshake: %v", err)
	}
	c.Close()

	// The replayed TLS handshake fails against the agent's fresh one, and
	// the agent hangs up without a word in the clear after StartTLS.
	replay, fc := rawConn(t, addr)
	replay.Write(rec.out.Bytes())
	if m, err := fc.Read(); err != nil || m.StartTLS == nil {
		t.Fatalf("want start_tls, got %v, %v", m, err)
	}
	rest, err := io.ReadAll(fc.Reader())
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("the agent kept the replayed connection: %v", err)
	}
	if bytes.Contains(rest, []byte("welcome")) {
		t.Fatal("a welcome in the clear")
	}
}

func TestSessionLimits(t *testing.T) {
	s, addr := startAgent(t, ServerConfig{Limits: Limits{MaxPackets: 50, MaxSessions: 1}})
	ctx := context.Background()
	c, err := Dial(ctx, addr, ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, p := range []EchoParams{
		{Count: 51, Size: 64},
		{Count: 10, Size: 64, Interval: -time.Second},
		{Count: 10, Size: 64, DSCP: 64},
		{Count: 10, Size: 64, RcvBuf: 1 << 30},
	} {
		if _, err := c.Echo(ctx, p, EchoOptions{Wait: time.Second}); err == nil || !strings.Contains(err.Error(), "agent refused") {
			t.Fatalf("%+v: err = %v", p, err)
		}
	}
	// Too small for the header and checksum: refused before asking.
	if _, err := c.Echo(ctx, EchoParams{Count: 10, Size: 8}, EchoOptions{Wait: time.Second}); err == nil || !strings.Contains(err.Error(), "need 20") {
		t.Fatalf("8-byte probes: %v", err)
	}
	// A refused request leaves the connection usable.
	if _, err := c.Echo(ctx, EchoParams{Count: 5, Size: 64}, EchoOptions{Wait: time.Second}); err != nil {
		t.Fatal(err)
	}

	// One session at a time: a second client is told the agent is busy.
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := c.Echo(ctx, EchoParams{Count: 50, Size: 64, Interval: 10 * time.Millisecond}, EchoOptions{Wait: time.Second})
		done <- err
	}()
	go func() {
		for s.active.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
		close(started)
	}()
	<-started
	c2, err := Dial(ctx, addr, ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := c2.Echo(ctx, EchoParams{Count: 5, Size: 64}, EchoOptions{Wait: time.Second}); err == nil || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("second session: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// The agent answers only the client that opened the session, and frees the
// session when that client vanishes.
func TestSessionAnswersOnlyItsClient(t *testing.T) {
	s, addr := startAgent(t, ServerConfig{})
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
	buf := make([]byte, 64)
	// The session's client sends from one port: the agent answers only
	// the port of its first probe.
	own, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	try := func(from string, h collector.ProbeHeader) bool {
		u := own
		if from != "127.0.0.1:0" {
			u, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(from)))
			if err != nil {
				t.Fatal(err)
			}
			defer u.Close()
		}
		h.Put(buf)
		u.WriteToUDPAddrPort(buf, agent)
		u.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		_, err = u.Read(buf)
		return err == nil
	}
	good := collector.ProbeHeader{Session: m.Opened.Session, Seq: 1, Kind: collector.KindRequest}
	if !try("127.0.0.1:0", good) {
		t.Fatal("the session's client got no answer")
	}
	if try("127.0.0.2:0", good) {
		t.Fatal("a stranger's probe was answered")
	}
	wrong := good
	wrong.Session++
	if try("127.0.0.1:0", wrong) {
		t.Fatal("a probe of another session was answered")
	}
	over := good
	over.Seq = 10
	if try("127.0.0.1:0", over) {
		t.Fatal("a probe past the agreed count was answered")
	}
	c.Close()
	deadline := time.Now().Add(2 * time.Second)
	for s.active.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("session still running after its client left")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Several clients measure at once; each gets its own session and its own
// replies (iperf3's one-test-at-a-time server is what users complain of).
func TestConcurrentClients(t *testing.T) {
	_, addr := startAgent(t, ServerConfig{})
	var g errgroup.Group
	for range 8 {
		g.Go(func() error {
			c, err := Dial(context.Background(), addr, ClientConfig{})
			if err != nil {
				return err
			}
			defer c.Close()
			res, err := c.Echo(context.Background(), EchoParams{Count: 200, Size: 64, Interval: 200 * time.Microsecond}, EchoOptions{Wait: time.Second})
			if err != nil {
				return err
			}
			for _, r := range res.Records {
				if r.Replies != 1 || !r.AgentRx.Has(dump.SourceSW) {
					return fmt.Errorf("probe %d: %d replies, agent stamps %v", r.Seq, r.Replies, r.AgentRx)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}
