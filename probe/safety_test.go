package probe

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/probe-dev/probe/probe/internal/wire"
)

var safetyKey = []byte("0123456789abcdef0123456789abcdef")

// relay forwards one connection to addr and lets the test write into the
// agent-bound direction, as a man in the middle would.
type relay struct {
	ln      net.Listener
	mu      sync.Mutex
	toAgent net.Conn
	ready   chan struct{}
}

func startRelay(t *testing.T, addr string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln, ready: make(chan struct{})}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		a, err := net.Dial("tcp", addr)
		if err != nil {
			c.Close()
			return
		}
		t.Cleanup(func() { c.Close(); a.Close() })
		r.mu.Lock()
		r.toAgent = a
		r.mu.Unlock()
		close(r.ready)
		go func() { io.Copy(c, a) }()
		buf := make([]byte, 32<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				r.mu.Lock()
				a.Write(buf[:n])
				r.mu.Unlock()
			}
			if err != nil {
				return
			}
		}
	}()
	return r
}

// inject writes a frame into the agent-bound stream.
func (r *relay) inject(m *wire.Message) error {
	<-r.ready
	r.mu.Lock()
	defer r.mu.Unlock()
	return wire.NewConn(r.toAgent).Write(m)
}

// A relay that forwards a genuine client's handshake and then injects a
// frame of its own gets nothing run: the frame is not a TLS record of the
// session, and the agent hangs up.
func TestRelayCannotInject(t *testing.T) {
	s, addr := startAgent(t, ServerConfig{Key: safetyKey, AllowRun: true})
	marker := filepath.Join(t.TempDir(), "ran")
	r := startRelay(t, addr)
	c, err := Dial(context.Background(), r.ln.Addr().String(), ClientConfig{Key: safetyKey})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r.inject(&wire.Message{Open: &wire.Open{Mode: wire.ModeRun, Run: &RunParams{Path: "sh", Args: []string{"-c", "touch " + marker}}}})
	time.Sleep(time.Second)
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the injected run session ran its command")
	}
	if n := s.active.Load(); n != 0 {
		t.Fatalf("%d sessions running", n)
	}
	// The genuine client's connection is gone with it: injected bytes
	// broke the TLS session.
	if _, err := c.Echo(context.Background(), EchoParams{Count: 5, Size: 64}, EchoOptions{Wait: time.Second}); err == nil {
		t.Fatal("the connection survived an injection")
	}
}

// A client with a key refuses an agent that does not prove it, instead of
// measuring against whoever answered.
func TestKeyedClientRefusesKeylessAgent(t *testing.T) {
	_, addr := startAgent(t, ServerConfig{})
	_, err := Dial(context.Background(), addr, ClientConfig{Key: safetyKey})
	if err == nil || !strings.Contains(err.Error(), "did not prove it knows the key") {
		t.Fatalf("err = %v", err)
	}
}

// The client sees the agent's certificate, the QUIC one, and checks a pin
// against it; a key or a pin makes the agent verified, neither does not.
func TestControlCertificate(t *testing.T) {
	s, addr := startAgent(t, ServerConfig{Key: safetyKey})
	sum, err := s.QUICFingerprint()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := Dial(ctx, addr, ClientConfig{Key: safetyKey})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if string(c.AgentFingerprint()) != string(sum) || !c.Verified() {
		t.Fatalf("fingerprint %x verified %v, want %x verified", c.AgentFingerprint(), c.Verified(), sum)
	}
	_, keyless := startAgent(t, ServerConfig{})
	c, err = Dial(ctx, keyless, ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if c.Verified() || len(c.AgentFingerprint()) != 32 {
		t.Fatalf("first use: verified %v, fingerprint %x", c.Verified(), c.AgentFingerprint())
	}
	pinned := c.AgentFingerprint()
	if c, err = Dial(ctx, keyless, ClientConfig{Trust: QUICTrust{Pin: pinned}}); err != nil {
		t.Fatalf("right pin: %v", err)
	}
	c.Close()
	if !c.Verified() {
		t.Fatal("pinned, not verified")
	}
	_, err = Dial(ctx, addr, ClientConfig{Key: safetyKey, Trust: QUICTrust{Pin: pinned}})
	if err == nil || !strings.Contains(err.Error(), "is not the pinned") {
		t.Fatalf("wrong pin: %v", err)
	}
}

// flakyListener fails its first accepts as a process out of descriptors
// does.
type flakyListener struct {
	net.Listener
	fails int
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails > 0 {
		l.fails--
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// Running out of descriptors is waited out: the agent goes on serving.
func TestAcceptErrorsBackOff(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(ServerConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- s.Serve(ctx, &flakyListener{Listener: ln, fails: 6}) }()
	echoOK(t, ln.Addr().String(), nil)
	// 5+10+20+40+80+160 ms of back-off went by first.
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("served after %v: no back-off", d)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
}

// dialFrom connects from a loopback address of the test's choosing.
func dialFrom(t *testing.T, addr, from string) (*Client, error) {
	t.Helper()
	c, err := Dial(context.Background(), addr, ClientConfig{Local: netip.MustParseAddr(from), Timeout: 3 * time.Second})
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// Every connection limit refuses with one line that names it, and lets
// the agent serve everyone else.
func TestConnectionLimits(t *testing.T) {
	t.Run("per source", func(t *testing.T) {
		_, addr := startAgent(t, ServerConfig{Conn: ConnLimits{MaxConnsPerSource: 2}})
		for range 2 {
			if _, err := dialFrom(t, addr, "127.0.0.1"); err != nil {
				t.Fatal(err)
			}
		}
		_, err := dialFrom(t, addr, "127.0.0.1")
		if err == nil || !strings.Contains(err.Error(), "limit 2 per address (serve --max-conns-per-source)") {
			t.Fatalf("third connection: %v", err)
		}
		if _, err := dialFrom(t, addr, "127.0.0.2"); err != nil {
			t.Fatalf("another source: %v", err)
		}
	})
	t.Run("total", func(t *testing.T) {
		_, addr := startAgent(t, ServerConfig{Conn: ConnLimits{MaxConns: 2}})
		dialFrom(t, addr, "127.0.0.1")
		dialFrom(t, addr, "127.0.0.2")
		_, err := dialFrom(t, addr, "127.0.0.3")
		if err == nil || !strings.Contains(err.Error(), "(serve --max-conns)") {
			t.Fatalf("third connection: %v", err)
		}
	})
	t.Run("before authentication", func(t *testing.T) {
		s, addr := startAgent(t, ServerConfig{Conn: ConnLimits{MaxPreAuth: 2}})
		for range 2 {
			c, err := net.Dial("tcp", addr) // says nothing: held in the handshake
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
		}
		for s.preAuthCount() < 2 {
			time.Sleep(time.Millisecond)
		}
		_, err := dialFrom(t, addr, "127.0.0.2")
		if err == nil || !strings.Contains(err.Error(), "(serve --max-preauth)") {
			t.Fatalf("third connection: %v", err)
		}
	})
	t.Run("handshake timeout", func(t *testing.T) {
		_, addr := startAgent(t, ServerConfig{Conn: ConnLimits{HandshakeTimeout: 200 * time.Millisecond}})
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.ReadAll(c); err != nil {
			t.Fatalf("a silent connection was kept: %v", err)
		}
	})
	t.Run("idle", func(t *testing.T) {
		_, addr := startAgent(t, ServerConfig{Conn: ConnLimits{IdleTimeout: 200 * time.Millisecond}})
		c, err := dialFrom(t, addr, "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(400 * time.Millisecond)
		_, err = c.Echo(context.Background(), EchoParams{Count: 5, Size: 64}, EchoOptions{Wait: time.Second})
		if err == nil || !strings.Contains(err.Error(), "(serve --idle-timeout)") {
			t.Fatalf("after idling: %v", err)
		}
	})
	t.Run("sessions per client", func(t *testing.T) {
		_, addr := startAgent(t, ServerConfig{Conn: ConnLimits{MaxSessionsPerSource: 1}})
		a, _ := dialFrom(t, addr, "127.0.0.1")
		raw := &wire.Message{Open: &wire.Open{Mode: wire.ModeEcho, Echo: &EchoParams{Count: 10, Size: 64}}}
		a.fc.Write(raw)
		if _, err := a.expect("opened"); err != nil {
			t.Fatal(err)
		}
		b, _ := dialFrom(t, addr, "127.0.0.1")
		_, err := b.Echo(context.Background(), EchoParams{Count: 5, Size: 64}, EchoOptions{Wait: time.Second})
		if err == nil || !strings.Contains(err.Error(), "limit 1 per address (serve --max-sessions-per-client)") {
			t.Fatalf("second session from one address: %v", err)
		}
		o, _ := dialFrom(t, addr, "127.0.0.2")
		if _, err := o.Echo(context.Background(), EchoParams{Count: 5, Size: 64}, EchoOptions{Wait: time.Second}); err != nil {
			t.Fatalf("another address: %v", err)
		}
	})
}

// A session that is opened and never used ends in seconds, whatever its
// mode, and says why.
func TestUnstartedSessionsExpire(t *testing.T) {
	s, addr := startAgent(t, ServerConfig{Conn: ConnLimits{SessionStartTimeout: 300 * time.Millisecond}})
	for _, o := range []*wire.Open{
		{Mode: wire.ModeEcho, Echo: &EchoParams{Count: 10, Size: 64}},
		{Mode: wire.ModeCapacity, Capacity: &wire.CapacityParams{}},
		{Mode: wire.ModeTCP, TCP: &TCPParams{Streams: 1, Direction: DirForward, Duration: time.Second, WriteSize: 1024, Interval: time.Second}},
		{Mode: wire.ModeQUIC, QUIC: &QUICParams{Streams: 1, Direction: DirForward, Duration: time.Second, WriteSize: 1024, Interval: time.Second}},
	} {
		t.Run(string(o.Mode), func(t *testing.T) {
			c, err := dialFrom(t, addr, "127.0.0.1")
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			c.fc.Write(&wire.Message{Open: o})
			if _, err := c.expect("opened"); err != nil {
				t.Fatal(err)
			}
			_, err = c.expect("done")
			if err == nil || !strings.Contains(err.Error(), "(serve --session-start-timeout)") {
				t.Fatalf("unused session: %v", err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("ended after %v", d)
			}
			for s.active.Load() != 0 {
				time.Sleep(time.Millisecond)
			}
		})
	}
}

// Only harmless socket options reach the agent's sockets unless its
// operator allows more; what is refused is said, and nothing is set.
func TestSockOptAllowList(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the privileged options need root to be set at all; not root")
	}
	_, addr := startAgent(t, ServerConfig{})
	_, widened := startAgent(t, ServerConfig{AllowSockOpts: []string{"SO_MARK", "ip.19"}})
	run := func(addr string, opts ...string) (*TCPResult, error) {
		c, err := Dial(context.Background(), addr, ClientConfig{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		p := tcpParams(1, DirForward, 1<<20)
		p.SockOpts = opts
		for _, o := range opts {
			p.GetOpts = append(p.GetOpts, strings.Split(o, "=")[0])
		}
		return c.TCP(context.Background(), p)
	}
	for _, tc := range []struct{ opt, text string }{
		{"SO_SNDBUFFORCE=1000000000", "SO_SNDBUFFORCE is not allowed on this agent (its operator may allow it: serve --allow-sockopt SO_SNDBUFFORCE)"},
		{"SO_MARK=7", "SO_MARK is not allowed"},
		{"ip.19=1", "ip.19 is not allowed"}, // IP_TRANSPARENT
		{"SO_RCVBUF=1000000000", "outside 0..4194304 (net.core.rmem_max)"},
		{"TCP_CONGESTION=cubic", "not among the allowed congestion controls"},
	} {
		if strings.Contains(tc.text, "4194304") {
			if v, err := readSysctlInt(rmemMaxPath); err != nil || v != 4194304 {
				tc.text = "(net.core.rmem_max)"
			}
		}
		if strings.Contains(tc.text, "congestion") {
			if b, _ := os.ReadFile(allowedCongestion); strings.Contains(string(b), "cubic") {
				continue
			}
		}
		_, err := run(addr, tc.opt)
		if err == nil || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%s: %v, want a refusal saying %q", tc.opt, err, tc.text)
		}
	}
	res, err := run(addr, "SO_RCVBUF=1000000", "TCP_NODELAY=1", "IP_TOS=16")
	if err != nil {
		t.Fatalf("harmless options: %v", err)
	}
	if res.Agent.ReadBack["TCP_NODELAY"] != "1" || res.Agent.ReadBack["IP_TOS"] != "16" {
		t.Fatalf("harmless options read back %v", res.Agent.ReadBack)
	}
	res, err = run(widened, "SO_MARK=7", "ip.19=1")
	if err != nil {
		t.Fatalf("widened: %v", err)
	}
	if res.Agent.ReadBack["SO_MARK"] != "7" || res.Agent.ReadBack["ip.19"] != "1" {
		t.Fatalf("widened options read back %v", res.Agent.ReadBack)
	}
	var e *Error
	if _, err := run(widened, "SO_PRIORITY=7"); !errors.As(err, &e) || e.Code != wire.CodeSockOpt {
		t.Fatalf("widening one option widened others: %v", err)
	}
}

// A client connected from one of several addresses sends its session's
// packets and streams from that address, the one the agent answers.
func TestSessionsFromTheControlAddress(t *testing.T) {
	_, addr := startAgent(t, ServerConfig{})
	c, err := dialFrom(t, addr, "127.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Echo(context.Background(), EchoParams{Count: 20, Size: 64, Interval: time.Millisecond}, EchoOptions{Wait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Records {
		if r.Replies != 1 {
			t.Fatalf("echo probe %d: %d replies", r.Seq, r.Replies)
		}
	}
	tr, err := c.TCP(context.Background(), tcpParams(2, DirForward, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	if got := tr.Agent.Streams[0].Received + tr.Agent.Streams[1].Received; got != 1<<20 {
		t.Fatalf("tcp: %d bytes arrived", got)
	}
}

// A peer that stops reading cannot block the agent's frame writer: every
// write of a control frame has its deadline (the agent wraps each
// authenticated connection so).
func TestStalledReaderWriteTimesOut(t *testing.T) {
	agentEnd, clientEnd := net.Pipe() // no buffer: a write waits for a read
	defer clientEnd.Close()
	defer agentEnd.Close()
	fc := wire.NewConn(writeDeadline{Conn: agentEnd, d: 200 * time.Millisecond})
	done := make(chan error, 1)
	go func() { done <- fc.Write(&wire.Message{Done: &wire.Done{}}) }()
	select {
	case err := <-done:
		if !isTimeout(err) {
			t.Fatalf("write to a peer that does not read: %v, want a timeout", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("a write to a peer that does not read still blocks after 3 s")
	}
}

// Opening an echo session for the most packets the agent allows costs it
// what the probes that come need, not the count's worth up front (88 MB
// for a million before).
func TestEchoSessionCostsWhatComes(t *testing.T) {
	_, addr := startAgent(t, ServerConfig{})
	c, err := dialFrom(t, addr, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	c.fc.Write(&wire.Message{Open: &wire.Open{Mode: wire.ModeEcho, Echo: &EchoParams{Count: DefaultLimits().MaxPackets, Size: 64}}})
	if _, err := c.expect("opened"); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&m1)
	if d := m1.TotalAlloc - m0.TotalAlloc; d > 4<<20 {
		t.Fatalf("opening a session of %d packets allocated %d MB", DefaultLimits().MaxPackets, d>>20)
	}
}
