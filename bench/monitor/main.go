// Command monitor is the monitor's benchmark, in three parts:
//
//   - classes: three agents in a star of network namespaces and a monitor
//     (bin/probe monitor) in a fourth, six test instances of each class
//     every 10 to 30 s for -d; from the archive's start and end times, the
//     overlaps the class rules forbid (want 0), and the runs not started and
//     why. The monitor is stopped with SIGKILL.
//   - archive: runs archived per second (a transaction each), 30 days of
//     5-minute runs for 10 instances filled and aggregated, and the month
//     page of all ten rendered: the server's time, and the page's own
//     times inside headless Chromium (Navigation Timing, first frame) beside
//     those of a near-empty page; -shot keeps a screenshot of it.
//   - probe: /probe?module=echo on loopback against probe measure on the
//     same path, alternating: duration and median RTT.
//
// Run as root from the repository: make bench-monitor (or go run
// ./bench/monitor -d 5m -only classes).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/probe-dev/probe/bench/internal/harness"
	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/monitor"
	"github.com/probe-dev/probe/probe"
	"github.com/probe-dev/probe/testbed"
)

var shotPath *string

func main() {
	dur := flag.Duration("d", 10*time.Minute, "classes: how long the monitor runs")
	only := flag.String("only", "", "run one part: classes, archive or probe")
	bin := flag.String("probe", "bin/probe", "the probe binary")
	shotPath = flag.String("shot", "", "archive: write a screenshot of the month page to this PNG")
	flag.Parse()
	ctx := context.Background()
	parts := []struct {
		name string
		fn   func(context.Context, string, time.Duration) error
	}{{"classes", classes}, {"archive", archive}, {"probe", probeVsMeasure}}
	for _, p := range parts {
		if *only != "" && *only != p.name {
			continue
		}
		fmt.Printf("== %s\n", p.name)
		if err := p.fn(ctx, *bin, *dur); err != nil {
			harness.Fail(fmt.Sprintf("%s: %v", p.name, err))
		}
	}
}

func classes(ctx context.Context, bin string, dur time.Duration) error {
	hosts := []string{"mon", "a1", "a2", "a3"}
	star, err := testbed.UpStar(testbed.StarConfig{Name: "h16mon", Hosts: hosts})
	if err != nil {
		return err
	}
	defer star.Down()
	dir, err := os.MkdirTemp("", "h16-bench-monitor-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "name: mon\narchive: %s\nlisten: %s:9470\naggregate_every: 30s\nagents:\n", filepath.Join(dir, "monitor.db"), star.Hosts[0].Addr)
	for _, h := range star.Hosts[1:] {
		fmt.Fprintf(&cfg, "  %s: %s:7323\n", h.Name, h.Addr)
		a, err := harness.Start(ctx, harness.Host{TB: h}, "agent "+h.Name, harness.Listening("tcp", netipPort(h.Addr.String(), 7323)),
			bin, "serve", "--listen", h.Addr.String()+":7323")
		if err != nil {
			return err
		}
		defer a.Stop()
	}
	r := rand.New(rand.NewPCG(16, 16))
	every := func() string { return fmt.Sprintf("%ds", 10+r.IntN(21)) }
	cfg.WriteString("tests:\n")
	for _, h := range hosts[1:] {
		for k := 1; k <= 2; k++ {
			fmt.Fprintf(&cfg, "  - {name: tcp-%s-%d, type: tcp, to: %s, schedule: {interval: %s}, params: {duration: 2s}}\n", h, k, h, every())
			fmt.Fprintf(&cfg, "  - {name: rtt-%s-%d, type: echo, to: %s, schedule: {interval: %s}, params: {count: 100, interval: 5ms, wait: 500ms}}\n", h, k, h, every())
			fmt.Fprintf(&cfg, "  - {name: load-%s-%d, type: link, to: %s, schedule: {interval: %s}, params: {interface: veth0, period: 2s}}\n", h, k, h, every())
		}
	}
	cfgPath := filepath.Join(dir, "monitor.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o644); err != nil {
		return err
	}
	mon, err := harness.Start(ctx, harness.Host{TB: star.Hosts[0]}, "monitor", harness.Listening("tcp", netipPort(star.Hosts[0].Addr.String(), 9470)),
		bin, "monitor", "--ebpf", "off", cfgPath)
	if err != nil {
		return err
	}
	fmt.Printf("monitor in namespace %s, agents in %s, %s, %s; running %v\n", star.Hosts[0].NS, star.Hosts[1].NS, star.Hosts[2].NS, star.Hosts[3].NS, dur)
	time.Sleep(dur)
	mon.Stop() // SIGKILL: the archive keeps every committed run

	c, err := monitor.LoadConfig(cfgPath)
	if err != nil {
		return err
	}
	arc, err := monitor.OpenArchive(c.Archive)
	if err != nil {
		return err
	}
	defer arc.Close()
	runs, err := arc.Runs(ctx, monitor.RunFilter{})
	if err != nil {
		return err
	}
	class := map[string]monitor.Class{}
	for _, t := range c.Tests {
		class[t.Name] = t.Class
	}
	type tally struct{ finished, failed, notStarted int }
	by := map[monitor.Class]*tally{monitor.Exclusive: {}, monitor.Normal: {}, monitor.Background: {}}
	reasons := map[string]int{}
	failures := map[string]int{}
	names := regexp.MustCompile(`(tcp|rtt|load)-a[0-9]-[0-9]`)
	for _, r := range runs {
		t := by[class[r.Instance]]
		switch r.State {
		case monitor.Finished:
			t.finished++
		case monitor.Failed:
			t.failed++
			failures[r.Error]++
		case monitor.NotStarted:
			t.notStarted++
			reasons[fmt.Sprintf("%s: %s", class[r.Instance], names.ReplaceAllString(r.Error, "$1-*"))]++
		}
	}
	allLost, echoes := 0, 0
	for _, r := range runs {
		if v, ok := r.Values["loss"]; ok && strings.HasPrefix(r.Instance, "rtt-") {
			echoes++
			if v == 1 {
				allLost++
			}
		}
	}
	fmt.Printf("echo runs with every probe lost: %d of %d\n", allLost, echoes)
	for _, cl := range []monitor.Class{monitor.Exclusive, monitor.Normal, monitor.Background} {
		t := by[cl]
		fmt.Printf("%-10s finished %4d  failed %3d  not started %3d\n", cl, t.finished, t.failed, t.notStarted)
	}
	for _, k := range sortedKeys(reasons) {
		fmt.Printf("  not started, %s: %d\n", k, reasons[k])
	}
	for _, k := range sortedKeys(failures) {
		fmt.Printf("  failed: %s: %d\n", k, failures[k])
	}
	bad := monitor.Overlaps(c, runs)
	fmt.Printf("overlaps the class rules forbid (exclusive with exclusive or normal on a shared end point): %d\n", len(bad))
	for _, o := range bad {
		fmt.Println("  ", o)
	}
	// Overlaps the rules allow, to show that tests did run side by side.
	nn, bg := 0, 0
	for i, a := range runs {
		for _, b := range runs[i+1:] {
			if a.Start.IsZero() || b.Start.IsZero() || !a.Start.Before(b.End) || !b.Start.Before(a.End) {
				continue
			}
			ca, cb := class[a.Instance], class[b.Instance]
			switch {
			case ca == monitor.Normal && cb == monitor.Normal:
				nn++
			case ca == monitor.Background || cb == monitor.Background:
				bg++
			}
		}
	}
	fmt.Printf("allowed overlaps: normal with normal %d, background with anything %d\n", nn, bg)
	if len(bad) > 0 {
		return fmt.Errorf("%d forbidden overlaps", len(bad))
	}
	return nil
}

func sortedKeys(m map[string]int) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func netipPort(addr string, port int) netip.AddrPort {
	return netip.MustParseAddrPort(net.JoinHostPort(addr, strconv.Itoa(port)))
}

func archive(ctx context.Context, bin string, _ time.Duration) error {
	dir, err := os.MkdirTemp("", "h16-bench-archive-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var cfg strings.Builder
	cfg.WriteString("agents: {b: 192.0.2.1}\ntests:\n")
	for i := range 10 {
		fmt.Fprintf(&cfg, "  - {name: rtt-%02d, type: echo, to: b, schedule: {interval: 5m}}\n", i)
	}
	c, err := monitor.ParseConfig([]byte(cfg.String()), dir)
	if err != nil {
		return err
	}
	arc, err := monitor.OpenArchive(c.Archive)
	if err != nil {
		return err
	}
	defer arc.Close()
	if err := arc.Sync(ctx, c); err != nil {
		return err
	}
	// Runs one transaction each, as the scheduler archives them.
	vals := map[string]float64{"rtt": 0.01, "rtt_min": 0.009, "jitter": 0.001, "loss": 0}
	t0 := time.Now()
	n := 0
	old := t0.Add(-60 * 24 * time.Hour)
	for time.Since(t0) < 3*time.Second {
		st := old.Add(time.Duration(n) * time.Second)
		if err := arc.AddRun(ctx, c.Tests[n%10], &monitor.Run{Scheduled: st, Start: st, End: st, State: monitor.Finished, Values: vals}); err != nil {
			return err
		}
		n++
	}
	fmt.Printf("AddRun (one transaction, synchronous=FULL, 4 values): %.0f runs/s (%d in %v)\n", float64(n)/time.Since(t0).Seconds(), n, time.Since(t0).Round(time.Millisecond))

	now := time.Now().Truncate(5 * time.Minute)
	t0 = time.Now()
	total := 0
	for i, t := range c.Tests {
		r := rand.New(rand.NewPCG(uint64(i), 1))
		k, err := arc.AddSynthetic(ctx, t, now.Add(-30*24*time.Hour), now, 5*time.Minute, func(ts time.Time) map[string]float64 {
			v := 0.005 * float64(i+1) * (1 + 0.2*r.Float64())
			return map[string]float64{"rtt": v, "rtt_min": v * 0.9, "jitter": v * 0.05, "loss": 0.001 * r.Float64()}
		})
		if err != nil {
			return err
		}
		total += k
	}
	fmt.Printf("filled 30 days of 5-minute runs for 10 instances: %d runs, %d per instance and characteristic in %v\n", total, total/10, time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	agg, err := arc.Aggregate(ctx, time.Now())
	if err != nil {
		return err
	}
	fmt.Printf("aggregated %d runs (5m, 1h, 1d) in %v\n", agg, time.Since(t0).Round(time.Millisecond))

	m := monitor.New(c, arc, monitor.Options{})
	srv := httptest.NewServer(m.WebHandler())
	defer srv.Close()
	q := "/graph?type=echo&c=rtt&scale=month"
	for _, t := range c.Tests {
		q += "&i=" + t.Name
	}
	var renders []float64
	size := 0
	for range 5 {
		t0 := time.Now()
		resp, err := http.Get(srv.URL + q)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		renders = append(renders, time.Since(t0).Seconds())
		size = len(b)
		if resp.StatusCode != 200 {
			return fmt.Errorf("month page: %d: %s", resp.StatusCode, b)
		}
	}
	fmt.Printf("month page, 10 instances, rtt from 1-hour aggregates: server render %.0f ms median of 5 (%d bytes of HTML and SVG)\n", harness.Median(renders)*1e3, size)
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		fmt.Println("no chromium: the page's time in a browser not measured")
		return nil
	}
	// Chromium takes seconds to start here, so its wall time says nothing
	// about the page: the page's own times are read inside the browser.
	var monthCold, monthWarm, trivialCold, trivialWarm []browserTiming
	for range 5 {
		a, err := browserLoad(ctx, chromium, m.WebHandler(), q)
		if err != nil {
			return err
		}
		b, err := browserLoad(ctx, chromium, m.WebHandler(), "/")
		if err != nil {
			return err
		}
		monthCold, monthWarm = append(monthCold, a[0]), append(monthWarm, a[1])
		trivialCold, trivialWarm = append(trivialCold, b[0]), append(trivialWarm, b[1])
	}
	fmt.Println("in headless Chromium, a fresh browser for each page, 5 runs alternating (median, min–max);")
	fmt.Println("cold: the browser's first page; warm: the same page loaded again in that browser:")
	for _, row := range []struct {
		name string
		ts   []browserTiming
	}{{"month page, cold", monthCold}, {"month page, warm", monthWarm}, {"types page, cold", trivialCold}, {"types page, warm", trivialWarm}} {
		fmt.Printf("  %-26s response %s ms, DOM complete %s ms, load event end %s ms, first frame after load %s ms\n", row.name,
			spread(row.ts, func(t browserTiming) float64 { return t.ResponseEnd }),
			spread(row.ts, func(t browserTiming) float64 { return t.DOMComplete }),
			spread(row.ts, func(t browserTiming) float64 { return t.LoadEnd }),
			spread(row.ts, func(t browserTiming) float64 { return t.Painted }))
	}
	if *shotPath != "" {
		out, err := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
			"--user-data-dir="+filepath.Join(dir, "chromium-shot"), "--screenshot="+*shotPath, "--window-size=1280,1000", srv.URL+q).CombinedOutput()
		if err != nil {
			return fmt.Errorf("chromium screenshot: %v: %s", err, out)
		}
		fmt.Printf("month page screenshot: %s\n", *shotPath)
	}
	return nil
}

// browserTiming is one page load as the browser's Navigation
// Timing saw it, in milliseconds from the page's navigation start: the
// request (server render included) up to the response's last byte, the
// parsed document, the load event's end, and the first frame the wrapper saw
// after the load (layout and paint of the SVG).
type browserTiming struct {
	ResponseEnd float64 `json:"response_end"`
	DOMComplete float64 `json:"dom_complete"`
	LoadEnd     float64 `json:"load_end"`
	Painted     float64 `json:"painted"`
}

// timingPage loads the page twice, each time in a new same-origin iframe,
// reads its timing entries after two animation frames (the second runs after
// the first frame that drew the loaded page) and posts both loads' back. The
// wrapper adds nothing to the page's own timeline, which starts at the
// iframe's navigation.
const timingPage = `<!doctype html><html><body style="margin:0"><script>
const page = new URLSearchParams(location.search).get('page');
const out = [];
function load() {
  const f = document.createElement('iframe');
  f.style.cssText = 'width:1280px;height:1000px;border:0';
  f.onload = () => {
    const w = f.contentWindow;
    requestAnimationFrame(() => requestAnimationFrame(() => {
      const now = w.performance.now();
      const n = w.performance.getEntriesByType('navigation')[0];
      out.push({response_end: n.responseEnd, dom_complete: n.domComplete, load_end: n.loadEventEnd, painted: now});
      f.remove();
      if (out.length < 2) {
        load();
      } else {
        fetch('/bench/result', {method: 'POST', body: JSON.stringify(out)});
      }
    }));
  };
  f.src = page;
  document.body.appendChild(f);
}
load();
</script></body></html>`

// browserLoad starts a headless Chromium with a fresh profile on the timing
// page for path (served by web) and returns what it posts: the first load's
// timing and the second's.
func browserLoad(ctx context.Context, chromium string, web http.Handler, path string) ([]browserTiming, error) {
	got := make(chan []browserTiming, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /bench/timing", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, timingPage)
	})
	mux.HandleFunc("POST /bench/result", func(w http.ResponseWriter, r *http.Request) {
		var t []browserTiming
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&t); err == nil && len(t) == 2 {
			select {
			case got <- t:
			default:
			}
		}
	})
	mux.Handle("/", web)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	prof, err := os.MkdirTemp("", "h16-chromium-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(prof)
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
		"--no-first-run", "--user-data-dir="+prof, "--window-size=1280,1000",
		srv.URL+"/bench/timing?page="+url.QueryEscape(path))
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	select {
	case t := <-got:
		return t, nil
	case <-time.After(2 * time.Minute):
		return nil, fmt.Errorf("chromium posted no timing for %s in 2 minutes", path)
	}
}

// spread is the median of f over ts and its range, in milliseconds.
func spread(ts []browserTiming, f func(browserTiming) float64) string {
	var xs []float64
	for _, t := range ts {
		xs = append(xs, f(t))
	}
	return fmt.Sprintf("%.0f (%.0f–%.0f)", harness.Median(xs), slices.Min(xs), slices.Max(xs))
}

func probeVsMeasure(ctx context.Context, bin string, _ time.Duration) error {
	addr, err := harness.FreeAddr()
	if err != nil {
		return err
	}
	agent, err := harness.Start(ctx, harness.Host{}, "agent", harness.Listening("tcp", addr), bin, "serve", "--listen", addr.String())
	if err != nil {
		return err
	}
	defer agent.Stop()
	dir, err := os.MkdirTemp("", "h16-bench-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	c, err := monitor.ParseConfig([]byte(fmt.Sprintf("agents: {a: \"%s\"}\nmodules:\n  echo: {type: echo, params: {count: 20, interval: 10ms}}\n", addr)), dir)
	if err != nil {
		return err
	}
	arc, err := monitor.OpenArchive(c.Archive)
	if err != nil {
		return err
	}
	defer arc.Close()
	if err := arc.Sync(ctx, c); err != nil {
		return err
	}
	ccfg := probe.ClientConfig{}
	stamps := "software timestamps on the monitor's side"
	if ts, err := collector.NewTimestamper(); err == nil {
		defer ts.Close()
		ccfg.Stamper = ts
		stamps = "eBPF timestamps on both sides"
	}
	m := monitor.New(c, arc, monitor.Options{Dial: monitor.ClientDialer(ccfg)})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	num := func(body, name string) float64 {
		mm := regexp.MustCompile(`(?m)^` + name + ` ([0-9.e+-]+)$`).FindStringSubmatch(body)
		if mm == nil {
			return -1
		}
		v, _ := strconv.ParseFloat(mm[1], 64)
		return v
	}
	var pDur, pRTT, mDur, mRTT []float64
	for range 5 {
		resp, err := http.Get(srv.URL + "/probe?target=a&module=echo")
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if num(string(b), "probe_success") != 1 {
			return fmt.Errorf("/probe failed:\n%s", b)
		}
		pDur, pRTT = append(pDur, num(string(b), "probe_duration_seconds")), append(pRTT, num(string(b), "probe_rtt_seconds"))

		t0 := time.Now()
		out, err := exec.Command(bin, "measure", "-h", addr.String(), "-n", "20", "-i", "10ms", "--json").Output()
		if err != nil {
			return fmt.Errorf("probe measure: %v", err)
		}
		mDur = append(mDur, time.Since(t0).Seconds())
		var r struct {
			Measurements []struct {
				RTT struct {
					MedianUs float64 `json:"median_us"`
					Source   string  `json:"source"`
				} `json:"rtt"`
			} `json:"measurements"`
		}
		if err := json.Unmarshal(out, &r); err != nil || len(r.Measurements) != 1 {
			return fmt.Errorf("probe measure --json: %v, %d measurements", err, len(r.Measurements))
		}
		mRTT = append(mRTT, r.Measurements[0].RTT.MedianUs/1e6)
	}
	fmt.Printf("echo, 20 probes every 10 ms on loopback, medians of 5 alternating rounds (%s):\n", stamps)
	fmt.Printf("  /probe?module=echo   probe_duration_seconds %.3f s, probe_rtt_seconds %.2f µs\n", harness.Median(pDur), harness.Median(pRTT)*1e6)
	fmt.Printf("  probe measure --json wall time %.3f s (process start included), rtt median %.2f µs\n", harness.Median(mDur), harness.Median(mRTT)*1e6)
	return nil
}
