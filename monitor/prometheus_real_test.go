package monitor

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/probe-dev/probe/probe"
)

// freePort is a loopback port nobody listened on a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestRealPrometheus has a real Prometheus scrape the monitor's /metrics and,
// blackbox style, its /probe, and reads the figures back from Prometheus's
// HTTP API: the RTT it stored is one the archive holds, and the on-demand
// probe succeeded.
func TestRealPrometheus(t *testing.T) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("no prometheus binary in PATH (Debian: apt-get install -y prometheus)")
	}
	agent := startAgent(t)
	c, err := ParseConfig([]byte(fmt.Sprintf(`
name: mon
agents: {a: "%s"}
tests:
  - {name: rtt-a, type: echo, to: a, schedule: {interval: 1s, slip: 200ms}, params: {count: 10, interval: 1ms, wait: 200ms}}
modules:
  echo: {type: echo, params: {count: 10, interval: 1ms, wait: 200ms}}
`, agent)), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	arc := openTestArchive(t, c, filepath.Join(t.TempDir(), "m.db"))
	m := New(c, arc, Options{Dial: ClientDialer(probe.ClientConfig{})})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: m.Handler()}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	dir := t.TempDir()
	promAddr := freePort(t)
	conf := fmt.Sprintf(`
global: {scrape_interval: 1s, scrape_timeout: 900ms}
scrape_configs:
  - job_name: monitor
    static_configs: [{targets: ["%[1]s"]}]
  - job_name: probe
    metrics_path: /probe
    params: {module: [echo]}
    static_configs: [{targets: [a]}]
    relabel_configs:
      - {source_labels: [__address__], target_label: __param_target}
      - {source_labels: [__param_target], target_label: instance}
      - {target_label: __address__, replacement: "%[1]s"}
`, ln.Addr())
	os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(conf), 0o644)
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	log, _ := os.Create(filepath.Join(dir, "prometheus.log"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	query := func(q string) (float64, bool) {
		resp, err := http.Get("http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return 0, false
		}
		defer resp.Body.Close()
		var r struct {
			Status string
			Data   struct {
				Result []struct {
					Value [2]any
				}
			}
		}
		if json.NewDecoder(resp.Body).Decode(&r) != nil || r.Status != "success" || len(r.Data.Result) != 1 {
			return 0, false
		}
		s, _ := r.Data.Result[0].Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		return v, err == nil
	}
	deadline := time.Now().Add(45 * time.Second)
	var rtt, success, runs float64
	var ok1, ok2, ok3 bool
	for time.Now().Before(deadline) && !(ok1 && ok2 && ok3) {
		time.Sleep(500 * time.Millisecond)
		rtt, ok1 = query(`probe_rtt_seconds{job="monitor",test="rtt-a",source="mon",destination="a"}`)
		success, ok2 = query(`probe_success{job="probe",instance="a"}`)
		runs, ok3 = query(`probe_monitor_runs_total{job="monitor",test="rtt-a"}`)
	}
	if !ok1 || !ok2 || !ok3 {
		b, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
		t.Fatalf("Prometheus has no answer after 45 s (rtt %v, success %v, runs %v); its log:\n%s", ok1, ok2, ok3, b)
	}
	if success != 1 || runs < 1 {
		t.Errorf("probe_success %g, runs %g", success, runs)
	}
	archived, err := arc.Runs(context.Background(), RunFilter{Instance: "rtt-a"})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range archived {
		found = found || r.Values["rtt"] == rtt
	}
	if !found || rtt <= 0 || rtt > 0.01 {
		t.Errorf("Prometheus holds rtt %g s, not among the %d archived runs' values", rtt, len(archived))
	}
	t.Logf("Prometheus: probe_rtt_seconds %g (archived), probe_success %g, runs %g", rtt, success, runs)
}
