package main

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"github.com/probe-dev/probe/cmd/internal/report"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/probe-dev/probe/probe"
)

// perfAgent starts probe serve with --quic-perf on loopback, presenting a
// certificate written for the test, and returns the perf address, the
// certificate's PEM file and its fingerprint.
func perfAgent(t *testing.T) (addr, certFile, pin string) {
	t.Helper()
	cert, err := probe.SelfSignedCert()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr = udp.LocalAddr().String()
	udp.Close()
	ctl := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	startAgent(t, (*exec.Cmd).Start, func() (net.Conn, error) { return net.Dial("tcp", ctl) },
		"--listen", ctl, "--ebpf", "off", "--cert", certFile, "--key", keyFile, "--quic-perf", addr)
	return addr, certFile, probe.FormatFingerprint(probe.CertFingerprint(cert.Certificate[0]))
}

// measureAtPerf runs probe measure against a perf server, no agent named.
func measureAtPerf(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	return run(t, exec.Command(probeBin, append([]string{"measure"}, args...)...))
}

// --perf-server measures against the standing perf server without a
// control connection: download, upload and bidir by bytes, each byte
// counted exactly on the client, however the trust is given; the report
// has no agent side and no pings, and says so.
func TestQUICPerfServerCLI(t *testing.T) {
	addr, certFile, pin := perfAgent(t)
	const total = 5_000_003 // not a multiple of the streams
	for _, tc := range []struct {
		args           []string
		sent, received float64
	}{
		{[]string{"-R", "-P", "3", "--pin", pin}, 0, total},
		{[]string{"-P", "2", "--ca", certFile}, total, 0},
		{[]string{"--bidir", "-P", "2", "--insecure"}, total, total},
	} {
		args := append([]string{"--mode", "quic", "--perf-server", addr, "--bytes", fmt.Sprint(total), "--json"}, tc.args...)
		out, stderr, code := measureAtPerf(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s", tc.args, code, stderr)
		}
		m := decode[report.QUICDoc](t, out)
		if s, r := float64(m.End.Client.BytesSent), float64(m.End.Client.BytesReceived); s != tc.sent || r != tc.received {
			t.Errorf("%v: client sent %v, received %v; want %v and %v", tc.args, s, r, tc.sent, tc.received)
		}
		if m.End.Client.StreamErrors != 0 || m.Params.PerfServer == nil || *m.Params.PerfServer != addr || m.Note == nil ||
			!strings.Contains(*m.Note, "the server's side is unknown") {
			t.Errorf("%v: errors %v, perf_server %v, note %v", tc.args, m.End.Client.StreamErrors, m.Params.PerfServer, m.Note)
		}
		if m.End.Agent != nil || m.Params.Agent != nil || m.PingsIdle != nil || m.PingsLoaded != nil || m.Start.Agent != nil {
			t.Errorf("%v: an agent or pings in the JSON of a perf-only test: %s", tc.args, out)
		}
		if hs := m.Handshakes; len(hs) != 2 || !hs[1].Used0RTT {
			t.Errorf("%v: handshakes %v", tc.args, hs)
		}
	}

	plot := filepath.Join(t.TempDir(), "perf.svg")
	out, stderr, code := measureAtPerf(t, "--perf-server", addr, "--insecure", "-R", "-t", "1s", "--plot", plot)
	if code != 0 {
		t.Fatalf("by time: exit %d\n%s", code, stderr)
	}
	for _, want := range []string{"quic server → client (perf server " + addr + ")", "the server's side is unknown", "no datagram pings",
		"resumed, request in 0-RTT:", "down: rate from the client's stream counters, loss, RTT and cwnd from the client's connection statistics (the receiver's",
		"srtt µs", "server unknown"} {
		if !strings.Contains(out, want) {
			t.Errorf("text output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "datagram RTT") || strings.Contains(out, "agent") {
		t.Errorf("text output speaks of pings or an agent:\n%s", out)
	}
	if fi, err := os.Stat(plot); err != nil || fi.Size() == 0 {
		t.Errorf("plot: %v", err)
	}
}

// Against a perf server, a certificate nothing vouches for, a wrong pin,
// and options that need an agent each fail with one line.
func TestQUICPerfServerRefusals(t *testing.T) {
	addr, _, _ := perfAgent(t)
	wrong := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "does not verify against the system's roots (x509: certificate signed by unknown authority): trust it with --ca FILE, --pin sha256:HEX or --insecure"},
		{[]string{"--pin", wrong}, "the perf server's certificate sha256:"},
		{[]string{"--pin", wrong}, "is not the pinned " + wrong},
		{[]string{"--insecure", "-h", "127.0.0.1"}, "--perf-server and -h: -h names an agent"},
		{[]string{"--insecure", "--key-file", "/nonexistent"}, "--perf-server and --key-file:"},
		{[]string{"--insecure", "--exclusive"}, "--perf-server and --exclusive:"},
		{[]string{"--insecure", "--pings", "5"}, "--perf-server and --pings: datagram pings need an agent"},
		{[]string{"--insecure", "--ping-interval", "0"}, "--perf-server and --ping-interval:"},
		{[]string{"--insecure", "--mode", "tcp,quic"}, "--perf-server measures QUIC only, not --mode tcp,quic"},
		{[]string{"--insecure", "--pin", wrong}, "--pin, --ca and --insecure: choose one"},
	} {
		_, stderr, code := measureAtPerf(t, append([]string{"--mode", "quic", "--perf-server", addr, "--bytes", "1000"}, tc.args...)...)
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if code != 1 || len(lines) != 1 || !strings.HasPrefix(stderr, "probe: ") || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want one line with %q", tc.args, code, stderr, tc.want)
		}
	}
	_, stderr, code := measureAtPerf(t, "--perf-server", strings.Split(addr, ":")[0], "--insecure")
	if code != 1 || !strings.Contains(stderr, "want HOST:PORT") {
		t.Errorf("no port: exit %d, %q", code, stderr)
	}
}
