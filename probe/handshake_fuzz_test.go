package probe

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/probe-dev/probe/probe/internal/wire"
)

// fuzzAgent runs an agent with small limits on loopback for the fuzzer.
func fuzzAgent(f *testing.F, key []byte) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	s := NewServer(ServerConfig{Key: key, Conn: ConnLimits{HandshakeTimeout: 2 * time.Second},
		Limits: Limits{MaxPackets: 1000, MaxDuration: 2 * time.Second, MaxBytes: 1 << 20}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	f.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}

// handshakeSeeds are well-formed openings: hello, auth, then each kind of
// session, so that the fuzzer starts past the handshake.
func handshakeSeeds(f *testing.F) [][]byte {
	open := func(o *wire.Open) []byte {
		return encodeFrames(f, []*wire.Message{hello(), {Auth: &wire.Auth{}}, {Open: o}, {Finish: &wire.Finish{}}})
	}
	return [][]byte{
		encodeFrames(f, []*wire.Message{hello()}),
		encodeFrames(f, []*wire.Message{hello(), {Auth: &wire.Auth{}}}),
		open(&wire.Open{Mode: wire.ModeEcho, Echo: &EchoParams{Count: 10, Size: 64}}),
		open(&wire.Open{Mode: wire.ModeCapacity, Capacity: &wire.CapacityParams{}}),
		encodeFrames(f, []*wire.Message{hello(), {Auth: &wire.Auth{}}, {Open: &wire.Open{Mode: wire.ModeCapacity, Capacity: &wire.CapacityParams{}}},
			{Collect: &wire.Collect{Trains: []wire.TrainSpec{{ID: 1, N: 2, Size: 100}}}}, {Finish: &wire.Finish{}}}),
		open(&wire.Open{Mode: wire.ModeTCP, TCP: &TCPParams{}}),
		open(&wire.Open{Mode: wire.ModeQUIC, QUIC: &QUICParams{}}),
		open(&wire.Open{Mode: wire.ModeRun, Run: &RunParams{Path: "true"}}),
		stampsFrame(0xffffffff),
	}
}

// FuzzHandshake drives the agent's connection handler, handshake and
// sessions, with arbitrary bytes on a real control connection: it must
// neither crash nor allocate more than a bounded multiple of what it was
// sent, and it must hang up.
func FuzzHandshake(f *testing.F) {
	for _, s := range handshakeSeeds(f) {
		f.Add(s, false)
	}
	open, keyed := fuzzAgent(f, nil), fuzzAgent(f, []byte("0123456789abcdef0123456789abcdef"))
	f.Fuzz(func(t *testing.T, b []byte, withKey bool) {
		addr := open
		if withKey {
			addr = keyed
		}
		got := allocated(func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.Copy(c, bytes.NewReader(b)); err != nil {
				return // the agent hung up early
			}
			c.(*net.TCPConn).CloseWrite()
			// A reset is a hang-up too: the agent closed with our bytes
			// unread.
			if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("the agent did not hang up: %v", err)
			}
		})
		// Each connection costs its buffers and goroutines; a session its
		// fixed buffers (an echo session's receive batch is 4 MiB, a
		// capacity session's train 6.4 MiB) and records, at most 1000
		// packets here.
		if bound := 12<<20 + 192*uint64(len(b)); got > bound {
			t.Fatalf("%d bytes allocated for %d bytes sent, bound %d", got, len(b), bound)
		}
	})
}
