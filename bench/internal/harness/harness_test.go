package harness

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

func TestCells(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{Ratio(1, 3, 2), "0.33"},
		{Ratio(1, 3, 3), "0.333"},
		{Ratio(1, 0, 2), "-"},
		{Join("", "b"), "b"},
		{Join("a", ""), "a"},
		{Join("a", "b"), "a; b"},
		{FormatRate(19.8e6), "19.800 Mbit/s"},
		{FormatRate(2.5e9), "2.500 Gbit/s"},
		{Spread([]float64{3, 1, 2, 9, 4}, 1), "3.0 (1.0–9.0)"},
		{Spread(nil, 1), "-"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	for _, c := range []struct {
		xs   []float64
		want float64
	}{{nil, 0}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := Median(c.xs); got != c.want {
			t.Errorf("Median(%v) = %v, want %v", c.xs, got, c.want)
		}
	}
}

func TestFreeAddrs(t *testing.T) {
	addrs, err := FreeAddrs(3)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint16]bool{}
	for _, a := range addrs {
		if seen[a.Port()] || a.Addr() != loopback {
			t.Fatalf("FreeAddrs(3) = %v: want distinct loopback ports", addrs)
		}
		seen[a.Port()] = true
	}
}

func TestRecordOnce(t *testing.T) {
	var c Commands
	c.Record(Host{}, "iperf3", "-s", "-p", "5201")
	c.Record(Host{}, "iperf3", "-s", "-p", "5201")
	if len(c) != 1 || c[0] != "iperf3 -s -p 5201" {
		t.Errorf("commands %q, want one iperf3 -s -p 5201", c)
	}
}

func TestRun(t *testing.T) {
	ctx := context.Background()
	if out, err := Run(ctx, Host{}, 5*time.Second, "sh", "-c", "echo hi"); err != nil || string(out) != "hi\n" {
		t.Errorf("Run echo = %q, %v", out, err)
	}
	// With nothing on standard error, the last line of the output says why.
	_, err := Run(ctx, Host{}, 5*time.Second, "sh", "-c", "echo one; echo two; exit 3")
	if err == nil || err.Error() != "sh: exit status 3: two" {
		t.Errorf("Run exit 3: %v", err)
	}
	_, err = Run(ctx, Host{}, 50*time.Millisecond, "sleep", "5")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run past its limit: %v, want deadline exceeded", err)
	}
}

func TestStart(t *testing.T) {
	ctx := context.Background()
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	// This test listens, so that only Listening's reading of /proc is tested.
	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pc, err := net.ListenPacket("udp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for _, network := range []string{"tcp", "udp"} {
		s, err := Start(ctx, Host{}, "sleeper", Listening(network, addr), "sleep", "30")
		if err != nil {
			t.Fatalf("Start with a %s socket bound: %v", network, err)
		}
		s.Stop()
		s.Stop() // a stopped server stops again at once
	}

	_, err = Start(ctx, Host{}, "failer", Ready{Check: func(Host) bool { return false }},
		"sh", "-c", "echo broken >&2; exit 1")
	if err == nil || err.Error() != "failer exited: broken" {
		t.Errorf("Start of a server that exits: %v", err)
	}
}

func TestListeningAddress(t *testing.T) {
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	r := Listening("tcp", addr)
	if r.Check(Host{}) {
		t.Errorf("Listening(%v) holds with nothing bound", addr)
	}
	if !strings.HasSuffix(r.What, addr.String()) {
		t.Errorf("What = %q, want it to name %v", r.What, addr)
	}
}

func TestCPU(t *testing.T) {
	ctx := context.Background()
	// A shell that spins on builtins alone (a child's CPU is not in
	// /proc/PID/stat's), for well over 20 ms of CPU.
	spin := "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"
	f, err := RunAll(ctx, Host{}, 10*time.Second, "sh", "-c", spin+"; echo out; echo err >&2")
	if err != nil || string(f.Stdout) != "out\n" || string(f.Stderr) != "err\n" {
		t.Fatalf("RunAll = %q, %q, %v", f.Stdout, f.Stderr, err)
	}
	if f.CPU < 20*time.Millisecond {
		t.Errorf("RunAll's CPU %v for a spin", f.CPU)
	}
	s, err := Start(ctx, Host{}, "spinner", Ready{Check: func(Host) bool { return true }}, "sh", "-c", spin+"; exec sleep 30")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	var used time.Duration
	for deadline := time.Now().Add(20 * time.Second); used < 20*time.Millisecond && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		if used, err = s.CPU(); err != nil {
			t.Fatal(err)
		}
	}
	if used < 20*time.Millisecond {
		t.Errorf("the spinning server's CPU %v", used)
	}
	if d, err := statCPU("1234 (a b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0"); err != nil || d != 3*time.Second {
		t.Errorf("statCPU = %v, %v; want 3s", d, err)
	}
}
