package probe

import (
	"context"
	"strings"
	"testing"
	"time"
)

// startPerf runs a standing perf server (serve --quic-perf) on loopback and
// returns its address.
func startPerf(t *testing.T, cfg ServerConfig) (*Server, string) {
	t.Helper()
	s := NewServer(cfg)
	return s, servePerf(t, s)
}

// servePerf runs s's standing perf server on a loopback port until the
// test ends, and returns its address.
func servePerf(t *testing.T, s *Server) string {
	t.Helper()
	udp, _, err := ListenQUIC("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServePerf(ctx, udp) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return udp.LocalAddr().String()
}

// Without a control connection, the client moves exactly the bytes asked
// each way, over several streams (the remainder on the last), times a
// full and a 0-RTT resumed handshake, samples its connection, and knows
// nothing of the server's side and sends no pings.
func TestPerfQUICBytes(t *testing.T) {
	s, addr := startPerf(t, ServerConfig{})
	sum, _ := s.QUICFingerprint()
	for _, tc := range []struct {
		dir     Direction
		streams int
	}{{DirForward, 1}, {DirReverse, 1}, {DirReverse, 3}, {DirBidir, 2}, {DirForward, 5}} {
		const total = 6<<20 + 7
		p := quicParams(tc.streams, tc.dir, total)
		res, err := PerfQUIC(context.Background(), PerfConfig{Server: addr, Params: p, Trust: QUICTrust{Pin: sum}})
		if err != nil {
			t.Fatalf("%s -P %d: %v", tc.dir, tc.streams, err)
		}
		var up, down uint64
		perStream := map[string]uint64{}
		for _, cs := range res.Client.Streams {
			if cs.Err != "" || len(cs.Samples) == 0 {
				t.Errorf("%s stream %d: error %q, %d samples", tc.dir, cs.ID, cs.Err, len(cs.Samples))
			}
			switch cs.Dir {
			case "up":
				up += cs.Sent
				perStream["up"] = max(perStream["up"], cs.Sent)
			case "down":
				if cs.Requested != cs.Received {
					t.Errorf("%s stream %d: requested %d, received %d", tc.dir, cs.ID, cs.Requested, cs.Received)
				}
				down += cs.Received
			}
		}
		wantUp, wantDown := uint64(0), uint64(0)
		if tc.dir != DirReverse {
			wantUp = total
		}
		if tc.dir != DirForward {
			wantDown = total
		}
		if up != wantUp || down != wantDown {
			t.Errorf("%s -P %d: %d bytes up, %d down; want %d and %d", tc.dir, tc.streams, up, down, wantUp, wantDown)
		}
		want := tc.streams
		if tc.dir == DirBidir {
			want *= 2
		}
		if len(res.Client.Streams) != want {
			t.Errorf("%s: %d streams, want %d", tc.dir, len(res.Client.Streams), want)
		}
		if !res.PerfOnly || len(res.Agent.Streams) != 0 || len(res.Agent.Conn) != 0 || len(res.Pings) != 0 || res.Params.PingEvery != 0 {
			t.Errorf("%s: perf only %v, agent side %d streams %d samples, %d pings", tc.dir, res.PerfOnly, len(res.Agent.Streams), len(res.Agent.Conn), len(res.Pings))
		}
		if n := len(res.Client.Conn); n == 0 || res.Client.Conn[n-1].PacketsSent == 0 || res.Client.Elapsed <= 0 {
			t.Errorf("%s: %d connection samples, elapsed %v", tc.dir, n, res.Client.Elapsed)
		}
		hs := res.Handshakes
		if len(hs) != 2 || hs[0].Resumed || !hs[1].Resumed || !hs[1].Used0RTT || hs[0].FirstByte == 0 || hs[1].FirstByte == 0 {
			t.Errorf("%s: handshakes %+v: want a full one, then one resumed in 0-RTT", tc.dir, hs)
		}
	}
}

// By time: the upload ends at the deadline with every byte drained by the
// server (its close says so), the download with STOP_SENDING.
func TestPerfQUICByTime(t *testing.T) {
	_, addr := startPerf(t, ServerConfig{})
	p := quicParams(2, DirBidir, 0)
	p.Duration = 300 * time.Millisecond
	res, err := PerfQUIC(context.Background(), PerfConfig{Server: addr, Params: p, Trust: QUICTrust{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	for _, cs := range res.Client.Streams {
		if cs.Err != "" || (cs.Dir == "up" && cs.Sent == 0) || (cs.Dir == "down" && (cs.Received == 0 || cs.Requested != perfUnlimited)) {
			t.Errorf("stream %+v", cs)
		}
	}
	if e := res.Client.Elapsed; e < p.Duration || e > p.Duration+2*time.Second {
		t.Errorf("elapsed %v for a test of %v", e, p.Duration)
	}
}

// Certificates: a wrong pin, a certificate the system's roots do not
// vouch for, and one not from the given CA each fail with one line that
// says so (the second names the three ways to trust the server); the right
// CA and the right pin pass, and resumption still works with them.
func TestPerfQUICCertificates(t *testing.T) {
	caCert, caKey, pool := testCA(t)
	leaf := issue(t, caCert, caKey)
	_, addr := startPerf(t, ServerConfig{QUICCert: &leaf})
	_, _, otherPool := testCA(t)
	p := quicParams(1, DirReverse, 1000)
	run := func(tr QUICTrust) (*QUICResult, error) {
		return PerfQUIC(context.Background(), PerfConfig{Server: addr, Params: p, Trust: tr, Timeout: 3 * time.Second})
	}
	for _, tc := range []struct {
		name  string
		trust QUICTrust
		want  []string
	}{
		{"wrong pin", QUICTrust{Pin: make([]byte, 32)}, []string{"QUIC handshake with " + addr, "the perf server's certificate sha256:", "is not the pinned sha256:0000"}},
		{"system roots", QUICTrust{}, []string{"the perf server's certificate sha256:", "does not verify against the system's roots",
			"--ca FILE, --pin sha256:HEX or --insecure"}},
		{"other CA", QUICTrust{CA: otherPool}, []string{"certificate signed by unknown authority"}},
	} {
		_, err := run(tc.trust)
		if err == nil || strings.Contains(err.Error(), "\n") {
			t.Fatalf("%s: %v; want one line", tc.name, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q lacks %q", tc.name, err, w)
			}
		}
		t.Logf("%s: %v", tc.name, err)
	}
	for name, tr := range map[string]QUICTrust{"right CA": {CA: pool}, "right pin": {Pin: CertFingerprint(leaf.Certificate[0])}} {
		res, err := run(tr)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if hs := res.Handshakes; len(hs) != 2 || !hs[1].Used0RTT || res.Client.Streams[0].Received != 1000 {
			t.Errorf("%s: handshakes %+v, streams %+v", name, hs, res.Client.Streams)
		}
	}
}

// A perf server address without a port, or on no host, is one clear line.
func TestPerfQUICAddress(t *testing.T) {
	p := quicParams(1, DirReverse, 1000)
	for addr, want := range map[string]string{"127.0.0.1": `perf server "127.0.0.1": want HOST:PORT`,
		"no-such-host.invalid:4433": "unknown host no-such-host.invalid"} {
		_, err := PerfQUIC(context.Background(), PerfConfig{Server: addr, Params: p, Trust: QUICTrust{Insecure: true}})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want %q", addr, err, want)
		}
	}
}
