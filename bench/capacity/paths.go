package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/probe-dev/probe/bench/internal/harness"
	"github.com/probe-dev/probe/testbed"
)

// hardPath is one path of the side-by-side table: probe, pathrate and
// OB-UDPST on the same namespaces.
type hardPath struct {
	name   string
	router bool
	rate   float64    // narrow link, bit/s of frames; 0: unshaped
	tight  float64    // >0: the narrow link is a's egress, this tbf is r's egress to b
	cross  [][]string // iperf3 client arguments, one flow each, from r to b
}

var hardPaths = []hardPath{
	{name: "single tbf 50", rate: 50e6},
	{name: "tbf 50, cross at bottleneck", router: true, rate: 50e6,
		cross: [][]string{{"-u", "-b", "20M"}, {"-u", "-b", "10M", "-l", "400"}}},
	{name: "narrow 30 ≠ tight 100+40", router: true, rate: 30e6, tight: 100e6,
		cross: [][]string{{"-u", "-b", "40M"}}},
	{name: "tbf 300", rate: 300e6},
	{name: "unshaped veth"},
}

// peers are the other tools' binaries; empty when not available.
type peers struct{ pathrateSnd, pathrateRcv, udpst string }

// findPeers looks for pathrate 2.4.1 and OB-UDPST on PATH, or where
// PROBE_BENCH_PATHRATE (the folder holding pathrate_snd and pathrate_rcv)
// and PROBE_BENCH_UDPST (the udpst binary) point.
func findPeers() peers {
	var p peers
	look := func(env, dir, name string) string {
		if v := os.Getenv(env); v != "" {
			if dir != "" {
				v = filepath.Join(v, name)
			}
			if _, err := os.Stat(v); err == nil {
				return v
			}
		}
		if v, err := exec.LookPath(name); err == nil {
			return v
		}
		return ""
	}
	p.pathrateSnd = look("PROBE_BENCH_PATHRATE", "dir", "pathrate_snd")
	p.pathrateRcv = look("PROBE_BENCH_PATHRATE", "dir", "pathrate_rcv")
	p.udpst = look("PROBE_BENCH_UDPST", "", "udpst")
	return p
}

// toolRun is one run of one tool on a path.
type toolRun struct {
	estimate, lower, upper float64 // Mbit/s; 0: none
	verdict                string
	secs                   float64
	load                   float64 // bytes a sent / (rate × time)
	err                    string
}

type pathResult struct {
	path              hardPath
	configured        float64 // Mbit/s at the IP layer, 0 when unshaped
	realized          []float64
	full, quick       []toolRun
	pathrate, udpstRs toolRun
}

func runHardPaths(only string, runs int, probeBin, keep string) bool {
	pe := findPeers()
	allOK := true
	for i, p := range hardPaths {
		if only != "" && !strings.Contains(p.name, only) {
			continue
		}
		fmt.Fprintf(os.Stderr, "bench: path %s...\n", p.name)
		// A name per path: a testbed whose namespaces could not be
		// removed must not stop the next path.
		r, err := runHardPath(p, fmt.Sprintf("%sp%d%c", tbPrefix, os.Getpid()%10000, 'a'+i), runs, probeBin, pe, keep)
		if err != nil {
			fmt.Printf("%s: error: %v\n", p.name, err)
			allOK = false
			continue
		}
		// Each path's rows as soon as it is done: a long run shows progress.
		allOK = printHard([]pathResult{r}) && allOK
	}
	fmt.Println("\nrates in Mbit/s at the IP layer; truth floods: 3 backlogged UDP floods of 3 s without cross traffic;")
	fmt.Println("load = bytes a sent during the run / (path rate × run time); error = distance outside [realized, configured].")
	fmt.Printf("peers: pathrate %s, udpst %s\n", orNA(pe.pathrateRcv), orNA(pe.udpst))
	return allOK
}

func upPath(p hardPath, name string) (*testbed.Testbed, error) {
	cfg := testbed.Config{Name: name, Router: p.router}
	if p.tight == 0 {
		cfg.Rate = uint64(p.rate)
	}
	tb, err := testbed.Up(cfg)
	if err != nil {
		return nil, err
	}
	if p.tight > 0 {
		err = tb.ShapeIface(tb.A, tb.A.Ifname, uint64(p.rate), 0, 0)
		if err == nil {
			err = tb.ShapeIface(tb.R, "veth1", uint64(p.tight), 0, 0)
		}
	}
	if err != nil {
		tb.Down()
		return nil, err
	}
	return tb, nil
}

func runHardPath(p hardPath, name string, runs int, probeBin string, pe peers, keep string) (pathResult, error) {
	res := pathResult{path: p, configured: p.rate * 1500 / 1514 / 1e6}
	tb, err := upPath(p, name)
	if err != nil {
		return res, err
	}
	defer tb.Down()
	flood := p.rate
	if flood == 0 {
		flood = 10e9 // as fast as the flood's sender goes
	}
	// Truth floods run without cross traffic: capacity is what the narrow
	// link carries, not what is left of it.
	for range 3 {
		r, err := tb.RealizedRate(flood, 3*time.Second)
		if err != nil {
			return res, err
		}
		res.realized = append(res.realized, r/1e6)
	}
	ctx := context.Background()
	agentAddr := netip.AddrPortFrom(tb.A.Addr, agentPort)
	agent, err := harness.Start(ctx, harness.Host{TB: tb.A}, "probe agent", harness.Listening("tcp", agentAddr),
		probeBin, "serve", "--listen", agentAddr.String(), "--ebpf", "on")
	if err != nil {
		return res, err
	}
	defer agent.Stop()
	time.Sleep(300 * time.Millisecond)

	rate := res.configured * 1e6
	if rate == 0 {
		rate = harness.Median(res.realized) * 1e6
	}
	// withCross runs fn under the path's cross traffic, bounded by limit.
	withCross := func(limit time.Duration, fn func() toolRun) toolRun {
		var cs []*testbed.Cross
		for i, args := range p.cross {
			c, err := testbed.CrossTraffic(ctx, tb.R, tb.B, int(agentPort)+1+i, limit+2*time.Second, args...)
			if err != nil {
				for _, c := range cs {
					c.Stop()
				}
				return toolRun{err: err.Error()}
			}
			cs = append(cs, c)
		}
		if len(cs) > 0 {
			time.Sleep(time.Second) // let the flows reach their rate
		}
		b0, _, _ := tb.A.TxCounters()
		start := time.Now()
		r := fn()
		wall := time.Since(start).Seconds()
		b1, _, _ := tb.A.TxCounters()
		for _, c := range cs {
			c.Stop()
		}
		if r.secs == 0 {
			r.secs = wall
		}
		r.load = float64(8*(b1-b0)) / (rate * wall)
		return r
	}
	for i := range runs {
		for _, quick := range []bool{false, true} {
			if quick && i >= 3 {
				continue
			}
			dump := ""
			if keep != "" {
				q := "full"
				if quick {
					q = "quick"
				}
				dump = filepath.Join(keep, fmt.Sprintf("%s-%s-%d.msgpack", slug(p.name), q, i))
			}
			r := withCross(60*time.Second, func() toolRun { return runProbe(tb, probeBin, quick, dump) })
			if quick {
				res.quick = append(res.quick, r)
			} else {
				res.full = append(res.full, r)
			}
		}
	}
	if pe.pathrateRcv != "" {
		res.pathrate = withCross(100*time.Second, func() toolRun { return runPathrate(tb, pe, 100*time.Second) })
	} else {
		res.pathrate.err = "not available"
	}
	if pe.udpst != "" {
		res.udpstRs = withCross(20*time.Second, func() toolRun { return runUDPST(tb, pe) })
	} else {
		res.udpstRs.err = "not available"
	}
	return res, nil
}

func slug(s string) string {
	return strings.Trim(regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(strings.ToLower(s), "-"), "-")
}

func runProbe(tb *testbed.Testbed, probeBin string, quick bool, dumpPath string) toolRun {
	args := []string{"measure", "-h", netip.AddrPortFrom(tb.A.Addr, agentPort).String(), "--mode", "capacity", "-R", "--json", "--ebpf", "on"}
	if quick {
		args = append(args, "--quick")
	}
	if dumpPath != "" {
		args = append(args, "-w", dumpPath)
	}
	out, err := harness.Run(context.Background(), harness.Host{TB: tb.B}, 60*time.Second, probeBin, args...)
	if err != nil {
		return toolRun{err: err.Error()}
	}
	e, err := readResult(out)
	if err != nil {
		return toolRun{err: fmt.Sprintf("measure output: %v", err)}
	}
	return toolRun{estimate: e.Estimate, lower: e.Lower, upper: e.Upper, verdict: e.Verdict, secs: e.Duration}
}

var pathrateRE = regexp.MustCompile(`Final capacity estimate :\s*([0-9.]+) Mbps\s+to\s+([0-9.]+) Mbps`)

// runPathrate runs a fresh pathrate sender in a (it loops forever) and the
// receiver in b, within limit.
func runPathrate(tb *testbed.Testbed, pe peers, limit time.Duration) toolRun {
	ctx, cancel := context.WithTimeout(context.Background(), limit+5*time.Second)
	defer cancel()
	snd := exec.CommandContext(ctx, pe.pathrateSnd, "-q")
	if err := tb.A.Start(snd); err != nil {
		return toolRun{err: err.Error()}
	}
	defer func() { snd.Process.Kill(); snd.Wait() }()
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	out, err := harness.Run(ctx, harness.Host{TB: tb.B}, limit, pe.pathrateRcv, "-s", tb.A.Addr.String())
	r := toolRun{secs: time.Since(start).Seconds()}
	if m := pathrateRE.FindSubmatch(out); m != nil {
		r.lower, _ = strconv.ParseFloat(string(m[1]), 64)
		r.upper, _ = strconv.ParseFloat(string(m[2]), 64)
		r.estimate = (r.lower + r.upper) / 2
		return r
	}
	// Where it got to: pathrate's last line says which phase it was in.
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	r.err = fmt.Sprintf("no result in %.0f s (last: %q)", r.secs, shorten(strings.TrimSpace(lines[len(lines)-1])))
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		r.err = fmt.Sprintf("no result (%v)", shorten(err.Error()))
	}
	return r
}

var udpstRE = regexp.MustCompile(`"MaxL3Rate"\s*:\s*([0-9.]+)`)
var udpstTextRE = regexp.MustCompile(`Maximum Mbps\(L3/IP\)[^0-9]*([0-9.]+)`)

// runUDPST runs a one-test OB-UDPST server in a and a 5 s downstream test
// (a to b) from b.
func runUDPST(tb *testbed.Testbed, pe peers) toolRun {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := exec.CommandContext(ctx, pe.udpst, "-1", "-T", tb.A.Addr.String())
	if err := tb.A.Start(srv); err != nil {
		return toolRun{err: err.Error()}
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	out, err := harness.Run(ctx, harness.Host{TB: tb.B}, 20*time.Second, pe.udpst, "-d", "-T", "-s", "-t", "5", tb.A.Addr.String())
	r := toolRun{secs: time.Since(start).Seconds()}
	m := udpstTextRE.FindSubmatch(out)
	if m == nil {
		m = udpstRE.FindSubmatch(out)
	}
	if m != nil {
		r.estimate, _ = strconv.ParseFloat(string(m[1]), 64)
		return r
	}
	r.err = "no result"
	if err != nil {
		r.err = fmt.Sprintf("no result (%v)", shorten(err.Error()))
	}
	return r
}

func shorten(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

// bracket is the truth: [realized, configured] at the IP layer; unshaped,
// [realized, ∞).
func (r pathResult) bracket() (lo, hi float64) {
	lo = minOf(r.realized)
	if r.configured == 0 {
		return lo, math.Inf(1)
	}
	return min(lo, r.configured), r.configured
}

// errPct is how far v lies outside the bracket, in % of its nearest edge; 0
// inside.
func errPct(v, lo, hi float64) float64 {
	switch {
	case v < lo:
		return 100 * (v - lo) / lo
	case v > hi:
		return 100 * (v - hi) / hi
	}
	return 0
}

func minOf(x []float64) float64 {
	m := math.Inf(1)
	for _, v := range x {
		m = min(m, v)
	}
	return m
}

func maxOf(x []float64) float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = max(m, v)
	}
	return m
}

func printHard(results []pathResult) bool {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "path\ttruth [realized, configured]\ttool\testimate\tinterval\tverdict\ttime\tload\terror vs bracket\tgoal\t")
	allOK := true
	for _, r := range results {
		lo, hi := r.bracket()
		truth := fmt.Sprintf("[%.2f, %.2f] floods %.2f–%.2f", lo, hi, minOf(r.realized), maxOf(r.realized))
		if r.configured == 0 {
			truth = fmt.Sprintf("≥ %.0f (floods %.0f–%.0f)", lo, minOf(r.realized), maxOf(r.realized))
		}
		row := func(tool string, t toolRun, goal string, ok bool) {
			if t.err != "" {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\t\t%.1f s\t%.3f\t\t%s\t\n", r.path.name, truth, tool, t.err, t.secs, t.load, goal)
				return
			}
			iv := ""
			if t.upper > 0 || t.lower > 0 {
				iv = fmt.Sprintf("[%.2f, %.2f]", t.lower, t.upper)
				if t.upper == 0 {
					iv = fmt.Sprintf("≥ %.2f", t.lower)
				}
			}
			e := errPct(t.estimate, lo, hi)
			mark := ""
			if goal != "" {
				mark = fmt.Sprintf("%s: %v", goal, ok)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f\t%s\t%s\t%.1f s\t%.3f\t%+.1f %%\t%s\t\n", r.path.name, truth, tool, t.estimate, iv, t.verdict, t.secs, t.load, e, mark)
		}
		for i, t := range r.full {
			goal, ok := probeGoal(r, t, false)
			allOK = allOK && ok
			row(fmt.Sprintf("probe full #%d", i+1), t, goal, ok)
		}
		fmt.Fprintf(tw, "%s\t%s\tprobe full spread\t%s\t%s\t\t\t\t\t\t\n", r.path.name, truth, spread(r.full), coverage(r, r.full))
		for i, t := range r.quick {
			goal, ok := probeGoal(r, t, true)
			allOK = allOK && ok
			row(fmt.Sprintf("probe quick #%d", i+1), t, goal, ok)
		}
		row("pathrate 2.4.1", r.pathrate, "", true)
		row("OB-UDPST 9.0.0", r.udpstRs, "", true)
	}
	tw.Flush()
	return allOK
}

func orNA(s string) string {
	if s == "" {
		return "not available"
	}
	return s
}

func spread(rs []toolRun) string {
	var v []float64
	for _, r := range rs {
		if r.err == "" && r.estimate > 0 {
			v = append(v, r.estimate)
		}
	}
	if len(v) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f–%.2f (median %.2f)", minOf(v), maxOf(v), harness.Median(v))
}

// coverage counts the runs whose interval meets the truth bracket.
func coverage(r pathResult, rs []toolRun) string {
	lo, hi := r.bracket()
	n, k := 0, 0
	for _, t := range rs {
		if t.err != "" {
			continue
		}
		n++
		up := t.upper
		if up == 0 {
			up = math.Inf(1)
		}
		if t.lower <= hi && up >= lo {
			k++
		}
	}
	return fmt.Sprintf("interval meets truth %d/%d", k, n)
}

// probeGoal is the goal a probe run is held to.
func probeGoal(r pathResult, t toolRun, quick bool) (string, bool) {
	if t.err != "" {
		return "runs", false
	}
	lo, hi := r.bracket()
	if r.configured == 0 {
		return "lower bound ≤ realized, ≤ 3 s", t.verdict == "lower bound only" && t.estimate <= hi && t.secs <= 3
	}
	noShaper := t.verdict != "shaper suspected"
	if quick {
		in := t.estimate >= 0.97*lo && t.estimate <= 1.03*hi
		return "quick: in [0.97 realized, 1.03 configured] or lower bound, ≤ 3 s",
			noShaper && t.secs <= 3 && (in || t.verdict == "lower bound only" && t.estimate <= hi)
	}
	return "in [0.97 realized, 1.03 configured], ≤ 20 s, no shaper",
		noShaper && t.secs <= 20 && t.estimate >= 0.97*lo && t.estimate <= 1.03*hi
}
