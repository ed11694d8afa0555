package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/probe-dev/probe/cmd/internal/report"
	"github.com/probe-dev/probe/probe"
	"github.com/probe-dev/probe/testbed"
)

// A narrow link before a loaded faster one: a →(tbf 30)→ r →(tbf 100 and
// 40 Mbit/s of UDP cross traffic entering at r)→ b. The estimate is the
// narrow link's capacity, not a blend with the tight link's compression:
// within [0.97 × realized, 1.03 × configured], no shaper, within 20 s, and
// the interval meets the truth bracket (docs/capacity.md).
func TestCapacityNarrowNotTight(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and loads eBPF")
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		t.Skip("needs iperf3 for the cross traffic")
	}
	const narrow, tight = 30e6, 100e6
	tb, err := testbed.Up(testbed.Config{Name: fmt.Sprintf("h14nt%d", os.Getpid()%100000), Router: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tb.Down(); err != nil {
			t.Error(err)
		}
	})
	if err := tb.ShapeIface(tb.A, tb.A.Ifname, narrow, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := tb.ShapeIface(tb.R, "veth1", tight, 0, 0); err != nil {
		t.Fatal(err)
	}
	realized, err := tb.RealizedRate(narrow, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := realized/1e6, narrow*1500/1514/1e6
	agentAddr := net.JoinHostPort(tb.A.Addr.String(), strconv.Itoa(probe.DefaultPort))
	startAgent(t, tb.A.Start, func() (c net.Conn, err error) {
		err = tb.B.Do(func() error { c, err = net.Dial("tcp", agentAddr); return err })
		return c, err
	}, "--listen", agentAddr, "--ebpf", "on")

	cross, err := testbed.CrossTraffic(context.Background(), tb.R, tb.B, 5201, 30*time.Second, "-u", "-b", "40M")
	if err != nil {
		t.Fatal(err)
	}
	defer cross.Stop()
	time.Sleep(time.Second)
	args := []string{"--mode", "capacity", "-R", "--json"}
	if dir := os.Getenv("PROBE_TEST_DUMPS"); dir != "" {
		// Keep the run's trains for estimate -r (docs/capacity.md).
		args = append(args, "-w", filepath.Join(dir, fmt.Sprintf("narrow-not-tight-%d.msgpack", time.Now().Unix())))
	}
	out, stderr, code := measureFrom(t, tb, args...)
	if code != 0 {
		t.Fatalf("measure: exit %d\n%s", code, stderr)
	}
	m := decode[report.CapacityDoc](t, out).Result
	est, low, up := m.EstimateBps/1e6, m.LowerBps/1e6, 0.0
	if m.UpperBps != nil {
		up = *m.UpperBps / 1e6
	}
	overhead := "none fitted"
	if m.LinkOverheadBytes != nil {
		overhead = fmt.Sprintf("%.0f B", *m.LinkOverheadBytes)
	}
	t.Logf("estimate %.2f [%.2f, %.2f] verdict %v in %v s; truth [%.2f, %.2f]; overhead %s, noise floor %v µs, discarded %v",
		est, low, up, m.Verdict, m.DurationS, lo, hi, overhead, m.NoiseFloorUs, m.Discarded)
	if est < 0.97*lo || est > 1.03*hi {
		t.Errorf("estimate %.2f outside [0.97 × %.2f, 1.03 × %.2f]", est, lo, hi)
	}
	if m.Verdict == "shaper suspected" {
		t.Errorf("a one-frame tbf called a shaper")
	}
	if up > 0 && (low > hi || up < lo) {
		t.Errorf("interval [%.2f, %.2f] misses the truth [%.2f, %.2f]", low, up, lo, hi)
	}
	if d := m.DurationS; d > 20 {
		t.Errorf("took %.1f s, want ≤ 20 s", d)
	}
}

// Real shapers are caught: htb as tc sets it up (a bucket of about a frame
// and a half, sending while its tokens are not negative) and a tbf with a
// 15000 B bucket both pass the head of a train faster than the rest. A
// one-frame tbf is not a shaper (TestCapacityNarrowNotTight).
func TestCapacityShapers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and loads eBPF")
	}
	const rate = 20e6
	for i, tc := range []struct {
		name string
		htb  bool
		cfg  testbed.Config
	}{
		{"htb", true, testbed.Config{}},
		{"tbf 15000 B bucket", false, testbed.Config{Rate: rate, Burst: 15000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Name = fmt.Sprintf("h14sh%d%c", os.Getpid()%100000, 'a'+i)
			tb, err := testbed.Up(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := tb.Down(); err != nil {
					t.Error(err)
				}
			})
			if tc.htb {
				if err := tb.ShapeHTB(rate); err != nil {
					t.Fatal(err)
				}
			}
			agentAddr := net.JoinHostPort(tb.A.Addr.String(), strconv.Itoa(probe.DefaultPort))
			startAgent(t, tb.A.Start, func() (c net.Conn, err error) {
				err = tb.B.Do(func() error { c, err = net.Dial("tcp", agentAddr); return err })
				return c, err
			}, "--listen", agentAddr, "--ebpf", "on")
			out, stderr, code := measureFrom(t, tb, "--mode", "capacity", "-R", "--json")
			if code != 0 {
				t.Fatalf("measure: exit %d\n%s", code, stderr)
			}
			m := decode[report.CapacityDoc](t, out).Result
			t.Logf("estimate %.2f verdict %v in %v s", m.EstimateBps/1e6, m.Verdict, m.DurationS)
			if m.Verdict != "shaper suspected" {
				t.Errorf("verdict %q, want shaper suspected", m.Verdict)
			}
			// The estimate is the sustained rate: at most the configured one.
			if est, hi := m.EstimateBps/1e6, rate*1500/1514/1e6; est > 1.03*hi || est < 0.8*hi {
				t.Errorf("estimate %.2f outside [0.8, 1.03] × %.2f", est, hi)
			}
		})
	}
}
