package probe

import (
	"context"
	"strings"
	"testing"
	"time"
)

func tcpParams(streams int, dir Direction, bytes int64) TCPParams {
	return TCPParams{Streams: streams, Direction: dir, Bytes: bytes, WriteSize: 64 << 10, Interval: 20 * time.Millisecond}
}

// Every byte one side wrote the other read, in every direction, and each
// stream was sampled.
func TestTCPByteAccounting(t *testing.T) {
	_, addr := startAgent(t, ServerConfig{})
	for _, dir := range []Direction{DirForward, DirReverse, DirBidir} {
		c, err := Dial(context.Background(), addr, ClientConfig{})
		if err != nil {
			t.Fatal(err)
		}
		const total = 40<<20 + 3 // not a multiple of the streams: the remainder must arrive too
		p := tcpParams(4, dir, total)
		p.SockOpts = []string{"SO_RCVBUF=1000000", "TCP_NODELAY=1"}
		p.GetOpts = []string{"SO_RCVBUF", "TCP_NODELAY"}
		res, err := c.TCP(context.Background(), p)
		c.Close()
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		check := func(from, to TCPSide, name string) {
			var sent, got uint64
			for i := range from.Streams {
				sent += from.Streams[i].Sent
				got += to.Streams[i].Received
				if from.Streams[i].Sent != to.Streams[i].Received {
					t.Errorf("%s %s stream %d: sent %d, received %d", dir, name, i, from.Streams[i].Sent, to.Streams[i].Received)
				}
				if len(from.Streams[i].Samples) == 0 || from.Streams[i].Err != "" || to.Streams[i].Err != "" {
					t.Errorf("%s %s stream %d: %d samples, errors %q %q", dir, name, i, len(from.Streams[i].Samples), from.Streams[i].Err, to.Streams[i].Err)
				}
			}
			if sent != total || got != total {
				t.Errorf("%s %s: sent %d, received %d, want %d", dir, name, sent, got, total)
			}
		}
		if p.Sends(true) {
			check(res.Client, res.Agent, "client to agent")
		}
		if p.Sends(false) {
			check(res.Agent, res.Client, "agent to client")
		}
		for _, side := range []TCPSide{res.Client, res.Agent} {
			if side.ReadBack["TCP_NODELAY"] != "1" || !strings.HasPrefix(side.ReadBack["SO_RCVBUF"], "2") {
				t.Errorf("%s: read back %v, want TCP_NODELAY 1 and SO_RCVBUF doubled to 2000000", dir, side.ReadBack)
			}
		}
	}
}

// 1024 streams connect, move their bytes and report without error.
func TestTCPThousandStreams(t *testing.T) {
	_, addr := startAgent(t, ServerConfig{})
	c, err := Dial(context.Background(), addr, ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := c.TCP(context.Background(), tcpParams(MaxStreams, DirForward, 64<<20))
	if err != nil {
		t.Fatal(err)
	}
	var got uint64
	for _, s := range res.Agent.Streams {
		if s.Err != "" {
			t.Fatalf("stream %d: %s", s.Index, s.Err)
		}
		got += s.Received
	}
	if len(res.Agent.Streams) != MaxStreams || got != 64<<20 {
		t.Fatalf("%d streams, %d bytes", len(res.Agent.Streams), got)
	}
}

// An exclusive test wants an idle agent, and holds it.
func TestTCPExclusive(t *testing.T) {
	s, addr := startAgent(t, ServerConfig{})
	busy, err := Dial(context.Background(), addr, ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	done := make(chan error, 1)
	go func() {
		p := tcpParams(1, DirForward, 0)
		p.Duration = time.Second
		_, err := busy.TCP(context.Background(), p)
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	c, err := Dial(context.Background(), addr, ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := tcpParams(1, DirForward, 1<<20)
	p.Exclusive = true
	if _, err := c.TCP(context.Background(), p); err == nil || !strings.Contains(err.Error(), "--exclusive needs an idle agent") {
		t.Fatalf("exclusive beside another test: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Once idle (the agent ends its side a moment after the client), the
	// exclusive test runs, and nobody else gets in meanwhile.
	for s.active.Load() != 0 {
		time.Sleep(5 * time.Millisecond)
	}
	go func() {
		p := tcpParams(1, DirForward, 0)
		p.Duration, p.Exclusive = time.Second, true
		_, err := c.TCP(context.Background(), p)
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	if _, err := busy.Echo(context.Background(), EchoParams{Count: 5, Size: 64}, EchoOptions{Wait: time.Second}); err == nil || !strings.Contains(err.Error(), "exclusive test is running") {
		t.Fatalf("echo beside an exclusive test: %v (exclusive test: %v)", err, <-done)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestTCPParamsCheck(t *testing.T) {
	good := tcpParams(1, DirForward, 1000)
	for _, tc := range []struct {
		mod  func(*TCPParams)
		want string
	}{
		{func(p *TCPParams) { p.Streams = 1025 }, "1025 streams"},
		{func(p *TCPParams) { p.Direction = "up" }, `direction "up"`},
		{func(p *TCPParams) { p.Bytes = 0 }, "duration or a byte count"},
		{func(p *TCPParams) { p.WriteSize = 0 }, "write size 0"},
		{func(p *TCPParams) { p.SockOpts = []string{"SO_NOSUCH=1"} }, "SO_RCVBUF"},
		{func(p *TCPParams) { p.SockOpts = []string{"TCP_NODELAY=yes"} }, "yes"},
		{func(p *TCPParams) { p.GetOpts = []string{"SO_NOSUCH"} }, "SO_RCVBUF"},
	} {
		p := good
		tc.mod(&p)
		if err := p.Check(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err %v, want one mentioning %q", p, err, tc.want)
		}
	}
	if err := good.Check(); err != nil {
		t.Fatal(err)
	}
}

// The agent moves at most its byte limit per session: a byte-count test
// over it is refused before it starts, and a timed test ends at the limit,
// each stream saying why.
func TestTCPByteLimit(t *testing.T) {
	const limit = 4 << 20
	_, addr := startAgent(t, ServerConfig{Limits: Limits{MaxBytes: limit}})
	c, err := Dial(context.Background(), addr, ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.TCP(context.Background(), tcpParams(2, DirBidir, 3<<20)); err == nil ||
		!strings.Contains(err.Error(), "6291456 bytes over the agent's limit of 4194304 bytes per session") {
		t.Fatalf("over the limit: %v", err)
	}
	p := tcpParams(2, DirForward, 0)
	p.Duration = 5 * time.Second
	res, err := c.TCP(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	var got uint64
	for _, s := range res.Agent.Streams {
		got += s.Received
		if !strings.Contains(s.Err, "limit of 4194304 bytes per session was reached") {
			t.Errorf("agent stream %d: error %q", s.Index, s.Err)
		}
	}
	// A read may overshoot by its buffer before the budget says stop.
	if got < limit || got > limit+2*(256<<10) || res.Client.Elapsed > 4*time.Second {
		t.Fatalf("agent received %d bytes in %v, want the limit %d (plus at most one read per stream), early", got, res.Client.Elapsed, limit)
	}
}

// The CPU figures of a side are its whole process's (getrusage), and say
// how many tests that process ran at once: concurrent tests on one agent
// do not each pass the agent's CPU off as their own. Client and agent
// share this test's process, so a test alone counts 2.
func TestTCPCPUSessions(t *testing.T) {
	_, addr := startAgent(t, ServerConfig{})
	one := func() *TCPResult {
		c, err := Dial(context.Background(), addr, ClientConfig{})
		if err != nil {
			t.Error(err)
			return nil
		}
		defer c.Close()
		// Long enough for the concurrent ones to overlap.
		p := tcpParams(1, DirForward, 0)
		p.Duration = 600 * time.Millisecond
		res, err := c.TCP(context.Background(), p)
		if err != nil {
			t.Error(err)
			return nil
		}
		return res
	}
	if res := one(); res == nil || res.Agent.CPUSessions != 2 || res.Client.CPUSessions != 2 {
		t.Fatalf("a test alone: %+v", res)
	}
	const n = 4
	results := make(chan *TCPResult, n)
	for range n {
		go func() { results <- one() }()
	}
	for range n {
		res := <-results
		if res == nil {
			t.FailNow()
		}
		t.Logf("agent CPU user %v, system %v over %d tests at once", res.Agent.UserCPU, res.Agent.SysCPU, res.Agent.CPUSessions)
		if res.Agent.CPUSessions < 3 || res.Agent.CPUSessions > 2*n {
			t.Errorf("agent side: %d tests at once, want 3 to %d", res.Agent.CPUSessions, 2*n)
		}
	}
}
