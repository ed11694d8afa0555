package probe

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/probe-dev/probe/probe/internal/wire"
)

var writeSeeds = flag.Bool("write-seeds", false, "rewrite FuzzHandshake's seed files in testdata/fuzz")

// fuzzKey is the keyed fuzz agent's key.
var fuzzKey = []byte("0123456789abcdef0123456789abcdef")

// fuzzMode is a FuzzHandshake input's choice of agent and of who
// authenticates.
type fuzzMode = uint8

const (
	fuzzKeyed fuzzMode = 1 << iota // the agent has a key
	fuzzAuth                       // the harness sends Auth first, with the right proof when keyed
)

// fuzzTimeout bounds one input's connection: the sessions' limits below
// end every session well within it.
const fuzzTimeout = 20 * time.Second

// fuzzAgent runs an agent with small limits on loopback for the fuzzer.
// With a key it allows run sessions, whose every command is true(1).
func fuzzAgent(f *testing.F, key []byte) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	s := NewServer(ServerConfig{Key: key, AllowRun: len(key) > 0,
		Conn:   ConnLimits{HandshakeTimeout: 5 * time.Second, SessionStartTimeout: time.Second},
		Limits: Limits{MaxPackets: 1000, MaxDuration: 2 * time.Second, MaxBytes: 1 << 20}})
	s.runPath = func(string) (string, error) { return exec.LookPath("true") }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	f.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}

// oneFrame says whether b is exactly one control frame.
func oneFrame(b []byte) bool {
	return len(b) >= 4 && uint64(binary.BigEndian.Uint32(b)) == uint64(len(b)-4)
}

// hangsUp reads c until the agent hangs up: EOF, or a reset when it closed
// with our bytes unread.
func hangsUp(c io.Reader) error {
	_, err := io.Copy(io.Discard, c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		return fmt.Errorf("the agent did not hang up: %w", err)
	}
	return nil
}

// fuzzConn sends plain on a control connection to addr; if it is one
// frame that the agent answers with StartTLS, it switches to TLS,
// authenticates when mode asks (with key's proof, bound to this TLS
// session) and sends frames inside TLS. It then half-closes and waits
// for the agent to hang up.
func fuzzConn(addr string, key []byte, plain, frames []byte, mode fuzzMode) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(fuzzTimeout))
	if _, err := c.Write(plain); err != nil {
		return nil // the agent hung up early
	}
	if !oneFrame(plain) {
		// Incomplete or trailing bytes: the agent would wait for more
		// or read them as TLS.
		c.(*net.TCPConn).CloseWrite()
		return hangsUp(c)
	}
	fc := wire.NewConn(c)
	if m, err := fc.Read(); err != nil || m.StartTLS == nil {
		return hangsUp(c)
	}
	tc := tls.Client(bufferedConn{Conn: c, r: fc.Reader()},
		&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, NextProtos: []string{controlALPN}})
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("tls handshake after a hello the agent accepted: %w", err)
	}
	read := make(chan error, 1)
	go func() { read <- hangsUp(tc) }()
	if mode&fuzzAuth != 0 {
		a := &wire.Auth{}
		if len(key) > 0 {
			secret, err := sessionSecret(tc.ConnectionState())
			if err != nil {
				return err
			}
			a.MAC = clientProof(key, secret)
		}
		if err := wire.NewConn(tc).Write(&wire.Message{Auth: a}); err != nil {
			return <-read
		}
	}
	if _, err := tc.Write(frames); err == nil {
		tc.CloseWrite()
		c.(*net.TCPConn).CloseWrite()
	}
	return <-read
}

// handshakeSeed is one opening of FuzzHandshake's corpus.
type handshakeSeed struct {
	name          string
	plain, frames []byte
	mode          fuzzMode
}

// handshakeSeeds are well-formed openings: a hello, then inside TLS each
// kind of session with and without a key, so that the fuzzer starts past
// the handshake; and the frames that once hurt the agent.
func handshakeSeeds(t testing.TB) []handshakeSeed {
	h := encodeFrames(t, []*wire.Message{hello()})
	frames := func(ms ...*wire.Message) []byte { return encodeFrames(t, ms) }
	open := func(o *wire.Open, then ...*wire.Message) []byte {
		return frames(append(append([]*wire.Message{{Open: o}}, then...), &wire.Message{Finish: &wire.Finish{}})...)
	}
	trains := []wire.TrainSpec{{ID: 1, N: 2, Size: 100}, {ID: 2, N: 3, Size: 200, At: time.Millisecond}}
	sessions := []struct {
		name   string
		frames []byte
	}{
		{"echo", open(&wire.Open{Mode: wire.ModeEcho, Echo: &EchoParams{Count: 10, Size: 64}})},
		{"capacity", open(&wire.Open{Mode: wire.ModeCapacity, Capacity: &wire.CapacityParams{}},
			&wire.Message{Collect: &wire.Collect{Trains: trains, Wait: time.Millisecond}})},
		{"capacity-send", open(&wire.Open{Mode: wire.ModeCapacity, Capacity: &wire.CapacityParams{Reverse: true}},
			&wire.Message{SendTrains: &wire.SendTrains{Trains: trains}})},
		{"tcp", open(&wire.Open{Mode: wire.ModeTCP, TCP: &TCPParams{Streams: 1, Direction: wire.DirForward, Duration: 100 * time.Millisecond, WriteSize: 1 << 10, Interval: 50 * time.Millisecond}},
			&wire.Message{TCPStart: &wire.TCPStart{}})},
		{"quic", open(&wire.Open{Mode: wire.ModeQUIC, QUIC: &QUICParams{Streams: 1, Direction: wire.DirReverse, Duration: 100 * time.Millisecond, WriteSize: 1 << 10, Interval: 50 * time.Millisecond}},
			&wire.Message{QUICStart: &wire.QUICStart{}})},
		{"run", open(&wire.Open{Mode: wire.ModeRun, Run: &RunParams{Path: "true", Args: []string{"a"}}})},
		{"counters", frames(&wire.Message{Open: &wire.Open{Mode: wire.ModeCounters}})},
		{"two-sessions", append(open(&wire.Open{Mode: wire.ModeEcho, Echo: &EchoParams{Count: 1, Size: 64}}),
			open(&wire.Open{Mode: wire.ModeCapacity, Capacity: &wire.CapacityParams{}})...)},
		{"stamps", stampsFrame(0xffffffff)},
	}
	seeds := []handshakeSeed{
		{"hello", h, nil, 0},
		{"stamps-plain", stampsFrame(0xffffffff), nil, 0},
		{"old-version", encodeFrames(t, []*wire.Message{{Hello: &wire.Hello{Version: wire.ProtocolVersion - 1}}}), nil, 0},
		{"auth-keyless", h, frames(&wire.Message{Auth: &wire.Auth{}}), 0},
		{"auth-wrong-key", h, frames(&wire.Message{Auth: &wire.Auth{MAC: make([]byte, 32)}}), fuzzKeyed},
		{"auth-missing", h, frames(&wire.Message{Auth: &wire.Auth{}}), fuzzKeyed},
		{"auth-twice", h, frames(&wire.Message{Auth: &wire.Auth{}}), fuzzKeyed | fuzzAuth},
	}
	for _, s := range sessions {
		seeds = append(seeds, handshakeSeed{s.name, h, s.frames, fuzzAuth},
			handshakeSeed{s.name + "-keyed", h, s.frames, fuzzKeyed | fuzzAuth})
	}
	return seeds
}

// seedFile is a corpus file of FuzzHandshake's signature.
func (s handshakeSeed) file() []byte {
	return fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n[]byte(%q)\nbyte(%q)\n", s.plain, s.frames, s.mode)
}

// The seeds in testdata/fuzz are the ones handshakeSeeds encodes: a change
// of the protocol that makes them stale fails here, and -write-seeds
// rewrites them.
func TestHandshakeSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzHandshake")
	for _, s := range handshakeSeeds(t) {
		path := filepath.Join(dir, "seed-"+s.name)
		if *writeSeeds {
			if err := os.WriteFile(path, s.file(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil || string(b) != string(s.file()) {
			t.Errorf("%s is missing or stale (%v): go test ./probe -run TestHandshakeSeeds -write-seeds", path, err)
		}
	}
}

// FuzzHandshake drives the agent's connection handler with arbitrary bytes
// on a real control connection: a plain hello, then frames inside a real
// TLS session, authenticated by the harness with the agent's key when the
// mode says so, so that every decoder and session behind the handshake
// sees them. The agent must neither crash nor allocate more than a bounded
// multiple of what it was sent, and it must hang up.
func FuzzHandshake(f *testing.F) {
	open, keyed := fuzzAgent(f, nil), fuzzAgent(f, fuzzKey)
	f.Fuzz(func(t *testing.T, plain, frames []byte, mode fuzzMode) {
		addr, key := open, []byte(nil)
		if mode&fuzzKeyed != 0 {
			addr, key = keyed, fuzzKey
		}
		var err error
		got := allocated(func() { err = fuzzConn(addr, key, plain, frames, mode) })
		if err != nil {
			t.Fatal(err)
		}
		// Each connection costs its buffers, TLS and goroutines; a session
		// its fixed buffers (a capacity session's train buffers are 6.4
		// MiB) and records, at most 1000 packets here.
		if bound := 12<<20 + 192*uint64(len(plain)+len(frames)); got > bound {
			t.Fatalf("%d bytes allocated for %d bytes sent, bound %d", got, len(plain)+len(frames), bound)
		}
	})
}
