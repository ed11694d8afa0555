package monitor

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/probe-dev/probe/probe"
)

// startAgent runs a probe agent on loopback for the test's lifetime.
func startAgent(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- probe.NewServer(probe.ServerConfig{}).Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return ln.Addr().String()
}

// liveConfig: two agents on loopback; exclusive TCP tests to both, a normal
// echo test to each, a background link test, all every second.
func liveConfig(t *testing.T, a1, a2 string) *Config {
	t.Helper()
	y := fmt.Sprintf(`
name: mon
aggregate_every: 1s
agents: {a1: "%s", a2: "%s"}
tests:
  - {name: rtt-a1, type: echo, to: a1, schedule: {interval: 1s, slip: 800ms, max_runs: 4}, params: {count: 20, interval: 1ms, wait: 300ms}}
  - {name: rtt-a2, type: echo, to: a2, schedule: {interval: 1s, slip: 800ms, max_runs: 4}, params: {count: 20, interval: 1ms, wait: 300ms}}
  - {name: tcp-a1, type: tcp, to: a1, schedule: {interval: 2s, slip: 1500ms, max_runs: 2}, params: {duration: 300ms}}
  - {name: tcp-a2, type: tcp, to: a2, schedule: {interval: 2s, slip: 1500ms, max_runs: 2}, params: {duration: 300ms}}
  - {name: load-a1, type: link, to: a1, schedule: {interval: 1s, slip: 0s, max_runs: 2}, params: {interface: lo, period: 500ms}}
modules:
  echo: {type: echo, params: {count: 10, interval: 1ms, wait: 300ms}}
`, a1, a2)
	c, err := ParseConfig([]byte(y), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestMonitorLive runs a monitor against two real agents on loopback and
// checks the archive: every test ran and measured, no exclusive run
// overlapped another exclusive or a normal run on a shared end point, and
// /metrics and /probe answer as Prometheus expects.
func TestMonitorLive(t *testing.T) {
	// One agent under two names: two agents in one process lose a whole echo
	// session now and then when both run one at once (not seen across
	// processes); the monitor sees two end points either way.
	a := startAgent(t)
	c := liveConfig(t, a, a)
	arc := openTestArchive(t, c, filepath.Join(t.TempDir(), "m.db"))
	// The monitor stops once every test has archived its runs, or at a
	// deadline that a slow machine does not reach.
	want := 0
	for _, t := range c.Tests {
		want += t.Schedule.MaxRuns
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var mu sync.Mutex
	got := 0
	m := New(c, arc, Options{Dial: ClientDialer(probe.ClientConfig{Timeout: 5 * time.Second}), OnRun: func(*Test, *Run) {
		mu.Lock()
		defer mu.Unlock()
		if got++; got == want {
			cancel()
		}
	}})
	m.Run(ctx)

	runs, err := arc.Runs(context.Background(), RunFilter{})
	if err != nil {
		t.Fatal(err)
	}
	byTest := map[string][]Run{}
	for _, r := range runs {
		byTest[r.Instance] = append(byTest[r.Instance], r)
	}
	for _, tst := range c.Tests {
		rs := byTest[tst.Name]
		if len(rs) != tst.Schedule.MaxRuns {
			t.Errorf("%s: %d runs archived, want %d", tst.Name, len(rs), tst.Schedule.MaxRuns)
		}
		finished := 0
		for _, r := range rs {
			if r.State == Finished {
				finished++
			}
			if r.State == Failed {
				t.Errorf("%s: run failed: %s", tst.Name, r.Error)
			}
		}
		if finished == 0 {
			t.Errorf("%s: no finished run", tst.Name)
		}
	}
	for _, r := range byTest["rtt-a1"] {
		if r.State == Finished && (r.Values["rtt"] <= 0 || r.Values["rtt"] > 0.01 || r.Values["loss"] != 0) {
			t.Errorf("echo over loopback: %v", r.Values)
		}
	}
	for _, r := range byTest["tcp-a1"] {
		if r.State == Finished && r.Values["throughput"] < 1e8 {
			t.Errorf("tcp over loopback: %v", r.Values)
		}
	}
	for _, r := range byTest["load-a1"] {
		if r.State == Finished && r.Values["rx"] <= 0 {
			t.Errorf("link load of lo while tests ran: %v", r.Values)
		}
	}
	for _, r := range runs {
		t.Logf("%s %v sched %v %v..%v %v %s", r.Instance, r.State, r.Scheduled.Format("05.000"), r.Start.Format("05.000"), r.End.Format("05.000"), r.Values, r.Error)
	}
	if n := Overlaps(c, runs); len(n) > 0 {
		t.Errorf("class rules broken: %v", n)
	}

	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	body := get(t, srv.URL+"/metrics", 200)
	for _, re := range []string{
		`probe_rtt_seconds\{destination="a1",source="mon",test="rtt-a1",type="echo"\} [0-9.e-]+`,
		`probe_tcp_throughput_bits_per_second\{destination="a2",source="mon",test="tcp-a2",type="tcp"\} [0-9.e+]+`,
		`probe_link_receive_bits_per_second\{destination="a1",source="mon",test="load-a1",type="link"\}`,
		`probe_monitor_runs_total\{test="rtt-a1",type="echo"\} [1-4]`,
		`probe_monitor_runs_failed_total\{test="tcp-a1",type="tcp"\} 0`,
		`probe_monitor_runs_not_started_total\{test="rtt-a2",type="echo"\} [0-9]`,
	} {
		if !regexp.MustCompile(re).MatchString(body) {
			t.Errorf("/metrics lacks %s", re)
		}
	}
	get(t, srv.URL+"/probe?module=echo", 400)
	get(t, srv.URL+"/probe?target=a1", 400)
	get(t, srv.URL+"/probe?target=a1&module=nope", 400)
	get(t, srv.URL+"/probe?target=203.0.113.9&module=echo", 400) // not an agent
	body = get(t, srv.URL+"/probe?target=a1&module=echo", 200)
	if !strings.Contains(body, "probe_success 1") || !regexp.MustCompile(`probe_rtt_seconds [0-9.e-]+`).MatchString(body) {
		t.Errorf("/probe answered:\n%s", body)
	}
	if strings.Contains(body, "probe_monitor_runs_total") {
		t.Error("/probe's registry must be its own, not /metrics'")
	}
}

// TestProbeTimeout: the scrape timeout header bounds the test; a test that
// cannot finish in it fails fast with probe_success 0.
func TestProbeTimeout(t *testing.T) {
	a := startAgent(t)
	c, err := ParseConfig([]byte(fmt.Sprintf(`
agents: {a: "%s"}
modules:
  slow: {type: echo, params: {count: 1000, interval: 10ms}}
`, a)), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	arc := openTestArchive(t, c, filepath.Join(t.TempDir(), "m.db"))
	m := New(c, arc, Options{Dial: ClientDialer(probe.ClientConfig{})})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/probe?target=a&module=slow", nil)
	req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", "1.5")
	t0 := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(t0)
	if took > 2*time.Second || !strings.Contains(string(b), "probe_success 0") {
		t.Errorf("a 10 s test under a 1.5 s scrape timeout took %v and said:\n%s", took, b)
	}
	m2 := regexp.MustCompile(`probe_duration_seconds ([0-9.e-]+)`).FindStringSubmatch(string(b))
	if m2 == nil {
		t.Fatal("no probe_duration_seconds")
	}
	if d, _ := strconv.ParseFloat(m2[1], 64); d < 0.9 || d > 1.3 {
		t.Errorf("probe_duration_seconds %g, want the 1 s left after the offset", d)
	}
}

func get(t *testing.T, url string, code int) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != code {
		t.Errorf("GET %s: %d, want %d: %s", url, resp.StatusCode, code, b)
	}
	return string(b)
}
