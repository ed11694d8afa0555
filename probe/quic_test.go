package probe

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/probe-dev/probe/probe/internal/wire"
	"github.com/quic-go/quic-go"

	"github.com/probe-dev/probe/collector/dump"
)

func quicParams(streams int, dir Direction, bytes int64) QUICParams {
	return QUICParams{Streams: streams, Direction: dir, Bytes: bytes, WriteSize: 64 << 10, Interval: 20 * time.Millisecond,
		Pings: 10, PingEvery: 2 * time.Millisecond}
}

func dialAgent(t *testing.T, addr string) *Client {
	t.Helper()
	c, err := Dial(context.Background(), addr, ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// byID indexes a side's streams.
func byID(side QUICSide) map[int64]dump.QUICStream {
	m := make(map[int64]dump.QUICStream)
	for _, s := range side.Streams {
		m[s.ID] = s
	}
	return m
}

// Every byte one side wrote the other read, stream by stream, in every
// direction and over many streams; the second connection resumed the
// first's session in 0-RTT; idle datagrams all came back.
func TestQUICByteAccounting(t *testing.T) {
	_, addr := startAgent(t, ServerConfig{})
	for _, tc := range []struct {
		dir     Direction
		streams int
	}{{DirForward, 1}, {DirReverse, 1}, {DirBidir, 3}, {DirReverse, 64}} {
		c := dialAgent(t, addr)
		const total = 24<<20 + 5 // not a multiple of the streams: the remainder must arrive too
		p := quicParams(tc.streams, tc.dir, total)
		res, err := c.QUIC(context.Background(), p, QUICTrust{})
		if err != nil {
			t.Fatalf("%s -P %d: %v", tc.dir, tc.streams, err)
		}
		name := func(s string) string { return string(tc.dir) + " " + s }
		agent := byID(res.Agent)
		want := tc.streams
		if tc.dir == DirBidir {
			want *= 2
		}
		if len(res.Client.Streams) != want || len(res.Agent.Streams) != want {
			t.Fatalf("%s: %d client streams, %d agent streams, want %d", tc.dir, len(res.Client.Streams), len(res.Agent.Streams), want)
		}
		var up, down uint64
		for _, cs := range res.Client.Streams {
			as, ok := agent[cs.ID]
			if !ok {
				t.Fatalf("%s: stream %d unknown to the agent", tc.dir, cs.ID)
			}
			if cs.Err != "" || as.Err != "" || len(cs.Samples) == 0 || len(as.Samples) == 0 {
				t.Errorf("%s stream %d: errors %q %q, %d and %d samples", tc.dir, cs.ID, cs.Err, as.Err, len(cs.Samples), len(as.Samples))
			}
			if cs.Dir != as.Dir {
				t.Errorf("%s stream %d: client says %s, agent %s", tc.dir, cs.ID, cs.Dir, as.Dir)
			}
			switch cs.Dir {
			case "up":
				if cs.Sent != as.Received {
					t.Errorf("%s stream %d: sent %d, received %d", name("up"), cs.ID, cs.Sent, as.Received)
				}
				up += as.Received
			case "down":
				if as.Sent != cs.Received || cs.Requested != as.Requested {
					t.Errorf("%s stream %d: sent %d, received %d, requested %d/%d", name("down"), cs.ID, as.Sent, cs.Received, cs.Requested, as.Requested)
				}
				down += cs.Received
			}
		}
		if p.Uploads() && up != total {
			t.Errorf("%s: %d bytes up, want %d", tc.dir, up, total)
		}
		if p.Downloads() && down != total {
			t.Errorf("%s: %d bytes down, want %d", tc.dir, down, total)
		}
		if len(res.Client.Conn) == 0 || len(res.Agent.Conn) == 0 || res.Client.Conn[len(res.Client.Conn)-1].PacketsSent == 0 {
			t.Errorf("%s: connection samples %d and %d", tc.dir, len(res.Client.Conn), len(res.Agent.Conn))
		}
		// Bytes in flight come from the tracer, which only a side that
		// sends data keeps: quic-go builds a qlog event per packet for it.
		if got := tracedInFlight(res.Client.Conn); got != p.Uploads() {
			t.Errorf("%s: the client's samples carry bytes in flight: %v, want %v", tc.dir, got, p.Uploads())
		}
		if got := tracedInFlight(res.Agent.Conn); got != p.Downloads() {
			t.Errorf("%s: the agent's samples carry bytes in flight: %v, want %v", tc.dir, got, p.Downloads())
		}
		hs := res.Handshakes
		if len(hs) != 2 || hs[0].Resumed || !hs[1].Resumed || !hs[1].Used0RTT || hs[0].FirstByte == 0 || hs[1].FirstByte == 0 {
			t.Errorf("%s: handshakes %+v: want a full one, then one resumed in 0-RTT", tc.dir, hs)
		}
		idle, echoed := 0, 0
		for _, pg := range res.Pings {
			if !pg.Loaded {
				idle++
				if pg.RTT > 0 {
					echoed++
				}
			}
		}
		if idle != p.Pings || echoed != idle {
			t.Errorf("%s: %d idle pings, %d echoed; want %d", tc.dir, idle, echoed, p.Pings)
		}
	}
}

// tracedInFlight says whether any sample has bytes in flight.
func tracedInFlight(conn []dump.QUICConnSample) bool {
	for _, c := range conn {
		if c.BytesInFlight > 0 {
			return true
		}
	}
	return false
}

// A test by time: every uploaded byte arrives, downloads stop with
// STOP_SENDING and the agent wrote at least what the client read.
func TestQUICByTime(t *testing.T) {
	_, addr := startAgent(t, ServerConfig{})
	c := dialAgent(t, addr)
	p := quicParams(2, DirBidir, 0)
	p.Duration = 300 * time.Millisecond
	res, err := c.QUIC(context.Background(), p, QUICTrust{})
	if err != nil {
		t.Fatal(err)
	}
	agent := byID(res.Agent)
	for _, cs := range res.Client.Streams {
		as := agent[cs.ID]
		if cs.Err != "" || as.Err != "" {
			t.Fatalf("stream %d (%s): errors %q %q", cs.ID, cs.Dir, cs.Err, as.Err)
		}
		switch {
		case cs.Dir == "up" && (cs.Sent == 0 || cs.Sent != as.Received):
			t.Errorf("up stream %d: sent %d, received %d", cs.ID, cs.Sent, as.Received)
		case cs.Dir == "down" && (cs.Received == 0 || as.Sent < cs.Received || cs.Requested != perfUnlimited):
			t.Errorf("down stream %d: agent sent %d, client received %d, requested %d", cs.ID, as.Sent, cs.Received, cs.Requested)
		}
	}
}

// A test larger than the agent's limit is refused before it starts, and the
// control connection stays usable; a perf stream asking for more than the
// session's budget is reset with the limit's code.
func TestQUICLimit(t *testing.T) {
	_, addr := startAgent(t, ServerConfig{Limits: Limits{MaxBytes: 1 << 20}})
	c := dialAgent(t, addr)
	if c.Limits().MaxBytes != 1<<20 {
		t.Fatalf("welcome limits %+v", c.Limits())
	}
	_, err := c.QUIC(context.Background(), quicParams(1, DirReverse, 2<<20), QUICTrust{})
	if err == nil || !strings.Contains(err.Error(), "2097152 bytes over the agent's limit of 1048576 bytes per session") {
		t.Fatalf("over the limit: %v", err)
	}
	if _, err := c.QUIC(context.Background(), quicParams(1, DirBidir, 256<<10), QUICTrust{}); err != nil {
		t.Fatalf("within the limit, after a refusal: %v", err)
	}

	// A bare perf client (as the draft has it) in a session of its own.
	if err := c.fc.Write(&wire.Message{Open: &wire.Open{Mode: wire.ModeQUIC, QUIC: &QUICParams{Streams: 1, Direction: DirReverse, Bytes: 1,
		WriteSize: 1000, Interval: time.Second}}}); err != nil {
		t.Fatal(err)
	}
	m, err := c.expect("opened")
	if err != nil {
		t.Fatal(err)
	}
	defer c.fc.Write(&wire.Message{Finish: &wire.Finish{}})
	qc := perfDial(t, c, m.Opened)
	s, err := qc.OpenStreamSync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var hdr [perfRequestLen]byte
	putPerfRequest(hdr[:], 2<<20)
	s.Write(hdr[:])
	s.Close()
	_, err = io.ReadAll(s)
	var se *quic.StreamError
	if !errors.As(err, &se) || se.ErrorCode != perfErrLimit || !se.Remote {
		t.Fatalf("request over the limit: %v, want a reset with code %d", err, perfErrLimit)
	}
	if got := quicStreamError(err).Error(); !strings.Contains(got, "over its byte limit") {
		t.Fatalf("client's words: %q", got)
	}
	// Within the budget, the same connection is served.
	s, _ = qc.OpenStreamSync(context.Background())
	putPerfRequest(hdr[:], 1000)
	s.Write(hdr[:])
	s.Close()
	if b, err := io.ReadAll(s); err != nil || len(b) != 1000 {
		t.Fatalf("request within the limit: %d bytes, %v", len(b), err)
	}
}

// perfDial connects to a session's QUIC port as a plain perf client,
// pinning the announced certificate.
func perfDial(t *testing.T, c *Client, o *wire.Opened) *quic.Conn {
	t.Helper()
	conf, err := clientTLS(QUICTrust{}, c.host, o.CertSHA256, &certCheck{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	qc, err := quic.DialAddr(ctx, netip.AddrPortFrom(c.AgentAddr(), o.Port).String(), conf, &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { qc.CloseWithError(0, "") })
	return qc
}

// A handshake with a certificate other than the pinned one, or not signed
// by the given CA, fails with one line that says so, and the session ends
// cleanly; with the right CA, it succeeds.
func TestQUICCertificates(t *testing.T) {
	caCert, caKey, pool := testCA(t)
	leaf := issue(t, caCert, caKey)
	_, addr := startAgent(t, ServerConfig{QUICCert: &leaf})
	c := dialAgent(t, addr)
	p := quicParams(1, DirReverse, 1000)

	wrong := make([]byte, 32)
	_, err := c.QUIC(context.Background(), p, QUICTrust{Pin: wrong})
	if err == nil || !strings.Contains(err.Error(), "is not the pinned sha256:0000") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("wrong pin: %v", err)
	}
	t.Logf("wrong pin: %v", err)

	_, _, otherPool := testCA(t)
	_, err = c.QUIC(context.Background(), p, QUICTrust{CA: otherPool})
	if err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("other CA: %v", err)
	}
	t.Logf("other CA: %v", err)

	if _, err := c.QUIC(context.Background(), p, QUICTrust{CA: pool}); err != nil {
		t.Fatalf("right CA: %v", err)
	}
	res, err := c.QUIC(context.Background(), p, QUICTrust{Pin: CertFingerprint(leaf.Certificate[0])})
	if err != nil {
		t.Fatalf("right pin: %v", err)
	}
	if len(res.Handshakes) != 2 || !res.Handshakes[1].Used0RTT {
		t.Errorf("handshakes %+v", res.Handshakes)
	}
}

func testCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey, *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "probe test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return cert, key, pool
}

func issue(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "agent"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestQUICParamsCheck(t *testing.T) {
	good := quicParams(1, DirForward, 1000)
	for _, tc := range []struct {
		mod  func(*QUICParams)
		want string
	}{
		{func(p *QUICParams) { p.Streams = 1025 }, "1025 streams"},
		{func(p *QUICParams) { p.Direction = "up" }, `direction "up"`},
		{func(p *QUICParams) { p.Bytes = 0 }, "duration or a byte count"},
		{func(p *QUICParams) { p.WriteSize = 0 }, "write size 0"},
		{func(p *QUICParams) { p.Interval = time.Millisecond }, "sampling interval"},
		{func(p *QUICParams) { p.PingEvery = time.Microsecond }, "ping interval"},
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

func TestFingerprintRoundTrip(t *testing.T) {
	sum := CertFingerprint([]byte("certificate"))
	got, err := ParseFingerprint(FormatFingerprint(sum))
	if err != nil || string(got) != string(sum) {
		t.Fatalf("%x, %v", got, err)
	}
	if _, err := ParseFingerprint("sha256:abcd"); err == nil {
		t.Fatal("a short fingerprint parsed")
	}
}

func TestUDPBufferWarnings(t *testing.T) {
	if w := bufferWarnings(UDPBuffers{Rcv: 14 << 20, Snd: 14 << 20}); len(w) != 0 {
		t.Fatalf("large buffers: %q", w)
	}
	w := bufferWarnings(UDPBuffers{Rcv: 416 << 10, Snd: 14 << 20})
	if len(w) != 1 || !strings.Contains(w[0], "UDP receive buffer is 416 KiB") || !strings.Contains(w[0], "sysctl -w net.core.rmem_max=7340032") {
		t.Fatalf("small receive buffer: %q", w)
	}
}

// Without CAP_NET_ADMIN the buffers stop at the sysctl limit, and the
// warning comes exactly when that is below what quic-go wants.
func TestUDPBuffersUnprivileged(t *testing.T) {
	if os.Getenv("PROBE_UDP_BUFFERS_CHILD") != "" {
		c, b, warn, err := listenQUICUDP(netip.MustParseAddrPort("127.0.0.1:0"))
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		fmt.Printf("rcv=%d snd=%d warnings=%d\n%s\n", b.Rcv, b.Snd, len(warn), strings.Join(warn, "\n"))
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs a child without CAP_NET_ADMIN (setpriv) to meet the sysctl limit")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("needs setpriv (util-linux) to drop privileges")
	}
	limit := func(name string) int {
		b, err := os.ReadFile("/proc/sys/net/core/" + name)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return n
	}
	rmax, wmax := limit("rmem_max"), limit("wmem_max")
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
		os.Args[0], "-test.run=^TestUDPBuffersUnprivileged$")
	cmd.Env = append(os.Environ(), "PROBE_UDP_BUFFERS_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var rcv, snd, n int
	if _, err := fmt.Sscanf(string(out), "rcv=%d snd=%d warnings=%d", &rcv, &snd, &n); err != nil {
		t.Fatalf("child said %q", out)
	}
	want := 0
	for _, x := range []int{rmax, wmax} {
		if 2*min(x, quicBufferSize) < quicBufferSize {
			want++
		}
	}
	t.Logf("rmem_max %d, wmem_max %d: buffers %d/%d, %d warnings\n%s", rmax, wmax, rcv, snd, n, out)
	if rcv != 2*min(rmax, quicBufferSize) || snd != 2*min(wmax, quicBufferSize) || n != want {
		t.Fatalf("buffers %d/%d and %d warnings; want %d/%d and %d", rcv, snd, n, 2*min(rmax, quicBufferSize), 2*min(wmax, quicBufferSize), want)
	}
}

// A perf client that knows only the draft (ALPN "perf", 8-byte response
// size, upload, FIN) is served by the standing perf server: downloads and
// uploads on bidirectional streams, a response on a new unidirectional
// stream for a unidirectional request, datagrams echoed, and a request over
// the byte limit reset.
func TestServePerf(t *testing.T) {
	s := NewServer(ServerConfig{Limits: Limits{MaxBytes: 1 << 20}})
	addr := servePerf(t, s)
	sum, _ := s.QUICFingerprint()
	conf, _ := clientTLS(QUICTrust{Pin: sum}, "", nil, &certCheck{})
	dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer dcancel()
	qc, err := quic.DialAddr(dctx, addr, conf, &quic.Config{EnableDatagrams: true})
	if err != nil {
		t.Fatal(err)
	}
	defer qc.CloseWithError(0, "")
	request := func(s interface {
		Write([]byte) (int, error)
		Close() error
	}, want uint64, upload int) {
		var hdr [8]byte
		putPerfRequest(hdr[:], want)
		s.Write(hdr[:])
		s.Write(make([]byte, upload))
		s.Close()
	}
	// Download and upload on bidirectional streams.
	for _, tc := range []struct {
		want   uint64
		upload int
	}{{100_000, 0}, {0, 50_000}, {3000, 7000}} {
		st, _ := qc.OpenStreamSync(dctx)
		request(st, tc.want, tc.upload)
		b, err := io.ReadAll(st)
		if err != nil || uint64(len(b)) != tc.want {
			t.Errorf("request %d after %d up: %d bytes back, %v", tc.want, tc.upload, len(b), err)
		}
	}
	// A unidirectional request is answered on a new unidirectional stream.
	us, _ := qc.OpenUniStreamSync(dctx)
	request(us, 4000, 10)
	rs, err := qc.AcceptUniStream(dctx)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(rs); err != nil || len(b) != 4000 {
		t.Errorf("unidirectional: %d bytes back, %v", len(b), err)
	}
	// Datagrams come back as they went.
	qc.SendDatagram([]byte("ping"))
	if b, err := qc.ReceiveDatagram(dctx); err != nil || string(b) != "ping" {
		t.Errorf("datagram: %q, %v", b, err)
	}
	// Over the budget (1 MiB, some of it spent above).
	st, _ := qc.OpenStreamSync(dctx)
	request(st, 1<<20, 0)
	_, err = io.ReadAll(st)
	var se *quic.StreamError
	if !errors.As(err, &se) || se.ErrorCode != perfErrLimit {
		t.Errorf("over the limit: %v", err)
	}
}
