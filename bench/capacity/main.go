// Command capacity is the capacity benchmark: it measures the
// embedded testbed's bottleneck with probe at several rates and shapers and
// prints one table: configured and realized rate, the estimate and the
// sustained rate with eBPF timestamps and, from the same trains, with
// user-space ones, their errors, verdicts and durations, and whether each
// case meets its bound. Before it, the side-by-side table (paths.go): probe,
// pathrate 2.4.1 and OB-UDPST on harder paths (cross traffic, a narrow link
// before a loaded tight one, 300 Mbit/s, an unshaped veth). Run as root, from
// the repository: make bench-capacity.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/probe-dev/probe/bench/internal/harness"
	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/testbed"
)

type benchCase struct {
	name   string
	rate   float64 // configured, bit/s of Ethernet frames
	burst  uint32  // tbf bucket, 0: the testbed's one frame
	htb    bool
	quick  bool
	load   bool // both cores kept busy during the run
	shaper bool // the report must flag a shaper
}

var cases = []benchCase{
	{name: "tbf", rate: 10e6}, {name: "tbf", rate: 10e6, quick: true},
	{name: "tbf", rate: 20e6}, {name: "tbf", rate: 20e6, quick: true},
	{name: "tbf", rate: 37e6}, {name: "tbf", rate: 37e6, quick: true},
	{name: "tbf", rate: 50e6}, {name: "tbf", rate: 100e6}, {name: "tbf", rate: 300e6}, {name: "tbf", rate: 500e6},
	{name: "tbf", rate: 100e6, quick: true},
	{name: "tbf+load", rate: 20e6, load: true}, {name: "tbf+load", rate: 100e6, load: true},
	{name: "tbf 15000 B burst", rate: 20e6, burst: 15000, shaper: true},
	{name: "htb", rate: 20e6, htb: true, shaper: true},
}

// result is what the table reads of an estimate, rates in Mbit/s.
type result struct {
	Estimate, Sustained float64
	Lower, Upper        float64 // Upper 0 when unknown
	Verdict             string
	Duration            float64
	Source              string
}

// readResult reads probe's capacity JSON (rates in bit/s, null where not
// measured).
func readResult(b []byte) (result, error) {
	var doc struct {
		Result struct {
			Estimate  float64  `json:"estimate_bps"`
			Lower     float64  `json:"lower_bps"`
			Upper     *float64 `json:"upper_bps"`
			Sustained *float64 `json:"sustained_bps"`
			Verdict   string   `json:"verdict"`
			Duration  float64  `json:"duration_s"`
			Source    string   `json:"ts_source"`
		} `json:"result"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return result{}, err
	}
	r := doc.Result
	out := result{Estimate: r.Estimate / 1e6, Lower: r.Lower / 1e6, Verdict: r.Verdict, Duration: r.Duration, Source: r.Source}
	if r.Upper != nil {
		out.Upper = *r.Upper / 1e6
	}
	if r.Sustained != nil {
		out.Sustained = *r.Sustained / 1e6
	}
	return out, nil
}

// agentPort is where the agent listens in the testbed's namespaces.
var agentPort uint16 = 7323

// tbPrefix starts the testbeds' names, so that runs beside other work can
// keep to namespaces of their own.
var tbPrefix = "h14"

func main() {
	bin := flag.String("bin", "bin", "directory with the probe and estimate binaries")
	only := flag.String("only", "", "run only cases whose name contains this")
	hard := flag.String("paths", "all", "side-by-side paths to run (a name part), \"all\", or \"none\"")
	cases0 := flag.Bool("cases", true, "run the single-bottleneck cases")
	runs := flag.Int("runs", 5, "probe runs per side-by-side path")
	keep := flag.String("keep", "", "keep the probe dumps of the side-by-side paths in this folder")
	port := flag.Uint("port", 7323, "the agent's port in the testbed; cross traffic uses the next ones")
	flag.StringVar(&tbPrefix, "name", tbPrefix, "testbed name prefix: namespaces are probe-PREFIX…-a, -b, -r")
	flag.Parse()
	if *port == 0 || *port > 65000 {
		harness.Fail(fmt.Sprintf("-port %d: want 1..65000", *port))
	}
	agentPort = uint16(*port)
	if os.Geteuid() != 0 {
		harness.Fail("the capacity benchmark needs root (testbed namespaces, tc, eBPF)")
	}
	probeBin, estimateBin := filepath.Join(*bin, "probe"), filepath.Join(*bin, "estimate")
	dir, err := os.MkdirTemp("", "probe-bench")
	if err != nil {
		harness.Fail(err.Error())
	}
	defer os.RemoveAll(dir)

	allOK := true
	if *hard != "none" {
		sel := *hard
		if sel == "all" {
			sel = ""
		}
		allOK = runHardPaths(sel, *runs, probeBin, *keep)
		fmt.Println()
	}
	if !*cases0 {
		if !allOK {
			os.Exit(1)
		}
		return
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "case\tmode\tconfigured\trealized\testimate\tsustained\terr cfg\terr real\tverdict\tduration\tts\t| user est\tuser sust\tuser err\tuser verdict\t| bound\tok\t")
	for _, c := range cases {
		label := fmt.Sprintf("%s %s", c.name, testbed.FormatRate(uint64(c.rate)))
		if *only != "" && !strings.Contains(label, *only) {
			continue
		}
		fmt.Fprintf(os.Stderr, "bench: %s...\n", label)
		row, ok, err := run(c, probeBin, estimateBin, dir)
		if *keep != "" {
			// Keep the case's dump beside the side-by-side ones.
			if data, rerr := os.ReadFile(filepath.Join(dir, "run.msgpack")); rerr == nil {
				os.WriteFile(filepath.Join(*keep, slug(label)+".msgpack"), data, 0o644)
			}
		}
		if err != nil {
			fmt.Fprintf(tw, "%s\t\terror: %v\t\n", label, err)
			allOK = false
			continue
		}
		allOK = allOK && ok
		fmt.Fprintln(tw, row)
	}
	tw.Flush()
	fmt.Println("\nrates in Mbit/s at the IP layer (1500-byte packets); configured = tbf/htb rate × 1500/1514;")
	fmt.Println("realized = a backlogged UDP flood counted by the receiver's interface; user columns re-estimate")
	fmt.Println("the same trains with user-space receive timestamps (estimate -r --ts-source user).")

	t, n, err := bigDump(estimateBin, dir)
	if err != nil {
		fmt.Println("1M-sample dump: error:", err)
		allOK = false
	} else {
		fmt.Printf("\nestimate -r of a %d-sample dump: %.2f s (bound 1 s)\n", n, t.Seconds())
		allOK = allOK && t <= time.Second
	}
	if !allOK {
		os.RemoveAll(dir) // os.Exit skips the deferred removal
		os.Exit(1)
	}
}

func run(c benchCase, probeBin, estimateBin, dir string) (string, bool, error) {
	name := fmt.Sprintf("%sc%d", tbPrefix, os.Getpid()%100000)
	cfg := testbed.Config{Name: name, Rate: uint64(c.rate), Burst: c.burst}
	if c.htb {
		cfg.Rate = 0
	}
	tb, err := testbed.Up(cfg)
	if err != nil {
		return "", false, err
	}
	defer tb.Down()
	if c.htb {
		if err := tb.ShapeHTB(uint64(c.rate)); err != nil {
			return "", false, err
		}
	}
	// 3 s: at 500 Mbit/s a 1 s flood spread ±1 % across runs, 3 s ±0.3 %.
	realized, err := tb.RealizedRate(c.rate, 3*time.Second)
	if err != nil {
		return "", false, err
	}
	configured := c.rate * 1500 / 1514

	agentAddr := netip.AddrPortFrom(tb.A.Addr, agentPort)
	agent, err := harness.Start(context.Background(), harness.Host{TB: tb.A}, "probe agent", harness.Listening("tcp", agentAddr),
		probeBin, "serve", "--listen", agentAddr.String(), "--ebpf", "on")
	if err != nil {
		return "", false, err
	}
	defer agent.Stop()
	// A measurement started the moment the agent listens read 500 Mbit/s
	// ~0.8 % lower on average (6 paired runs); let it settle, as before.
	time.Sleep(300 * time.Millisecond)

	if c.load {
		for range 2 {
			burn := exec.Command("sh", "-c", "while :; do :; done")
			if err := burn.Start(); err != nil {
				return "", false, err
			}
			defer func() { burn.Process.Kill(); burn.Wait() }()
		}
	}
	dumpPath := filepath.Join(dir, "run.msgpack")
	args := []string{"measure", "-h", netip.AddrPortFrom(tb.A.Addr, agentPort).String(), "--mode", "capacity", "-R", "--json", "--ebpf", "on", "-w", dumpPath}
	if c.quick {
		args = append(args, "--quick")
	}
	measure := exec.Command(probeBin, args...)
	var out, errb bytes.Buffer
	measure.Stdout, measure.Stderr = &out, &errb
	if err := tb.B.Start(measure); err != nil {
		return "", false, err
	}
	if err := measure.Wait(); err != nil {
		return "", false, fmt.Errorf("measure: %v: %s", err, strings.TrimSpace(errb.String()))
	}
	e, err := readResult(out.Bytes())
	if err != nil {
		return "", false, fmt.Errorf("measure output: %v", err)
	}
	var u result
	userOut, err := exec.Command(estimateBin, "-r", dumpPath, "--json", "--ts-source", "user").Output()
	if err == nil {
		u, err = readResult(userOut)
	}
	if err != nil {
		u.Verdict = "no estimate"
	}

	cfgM, realM := configured/1e6, realized/1e6
	errCfg := 100 * (e.Estimate - cfgM) / cfgM
	errReal := 100 * (e.Sustained - realM) / realM
	var bound string
	var ok bool
	switch {
	case c.shaper:
		bound = "shaper flagged, estimate ±3 % of realized"
		ok = e.Verdict == "shaper suspected" && math.Abs(e.Estimate-realM)/realM <= 0.03
	case c.rate <= 40e6 && c.quick:
		bound, ok = "±5 % of configured", math.Abs(errCfg) <= 5
	case c.rate <= 40e6:
		bound, ok = "±2 % of configured", math.Abs(errCfg) <= 2
	default:
		bound = "sustained ±2 % of realized, estimate in [realized, configured] ±2 %"
		ok = math.Abs(errReal) <= 2 && e.Estimate >= realM*0.98 && e.Estimate <= cfgM*1.02
	}
	switch {
	case c.quick && e.Duration > 3:
		bound, ok = bound+"; quick ≤ 3 s", false
	case !c.quick && c.rate >= 20e6 && e.Duration > 20:
		bound, ok = bound+"; full ≤ 20 s", false
	}
	mode := "full"
	if c.quick {
		mode = "quick"
	}
	userErr := math.NaN()
	if u.Estimate > 0 {
		userErr = 100 * (u.Estimate - cfgM) / cfgM
	}
	row := fmt.Sprintf("%s %s\t%s\t%.2f\t%.2f\t%.2f\t%.2f\t%+.2f %%\t%+.2f %%\t%s\t%.1f s\t%s\t| %.2f\t%.2f\t%+.1f %%\t%s\t| %s\t%v\t",
		c.name, testbed.FormatRate(uint64(c.rate)), mode, cfgM, realM, e.Estimate, e.Sustained, errCfg, errReal,
		e.Verdict, e.Duration, e.Source, u.Estimate, u.Sustained, userErr, u.Verdict, bound, ok)
	return row, ok, nil
}

// bigDump writes a capacity dump of a million preliminary and Phase I
// samples at 100 Mbit/s with timestamp noise, and times estimate -r on it.
func bigDump(estimateBin, dir string) (time.Duration, int, error) {
	path := filepath.Join(dir, "big.msgpack")
	f, err := os.Create(path)
	if err != nil {
		return 0, 0, err
	}
	w, err := dump.NewWriter(f, dump.Header{Mode: dump.ModeCapacity, Created: time.Now(), Meta: map[string]string{"size": "1500"}})
	if err != nil {
		return 0, 0, err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const samples = 1_000_000
	t := int64(1e9)
	for i := range samples {
		phase, size, n := dump.PhaseOne, 600+900*(i%40)/39, 2
		if i < 400 {
			phase, size, n = dump.PhasePrelim, 1500, 4+i%7
		}
		tr := dump.Train{ID: uint32(i + 1), Phase: phase, Size: size, Tx: make([]dump.Stamps, n), Rx: make([]dump.Stamps, n)}
		for k := range n {
			t += int64(float64(8*(size+14))/100e6*1e9) + int64(rng.NormFloat64()*200)
			tr.Rx[k][dump.SourceEBPF] = t
			tr.Rx[k][dump.SourceUser] = t + 20_000
		}
		t += 1e6
		if err := w.Write(&dump.Record{Train: &tr}); err != nil {
			return 0, 0, err
		}
	}
	w.Write(&dump.Record{End: &dump.End{Duration: time.Second}})
	if err := w.Flush(); err != nil {
		return 0, 0, err
	}
	f.Close()
	start := time.Now()
	out, err := exec.Command(estimateBin, "-r", path, "-f", "%be\n").CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("%v: %s", err, out)
	}
	return time.Since(start), samples, nil
}
