package monitor

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Labels of the latest values. "instance" is what Prometheus names the
// scraped target, so the test instance is "test".
var valueLabels = []string{"test", "type", "source", "destination"}

// metrics is what /metrics shows: the latest value of every instance's
// characteristics and the runs counted by how they ended.
type metrics struct {
	reg                      *prometheus.Registry
	runs, failed, notStarted *prometheus.CounterVec
	lastRun                  *prometheus.GaugeVec
	descs                    map[string]*prometheus.Desc // by metric name
	mu                       sync.Mutex
	latest                   map[string]map[string]float64 // test -> characteristic -> value
	tests                    map[string]*Test
	testsInOrder             []*Test
}

func newMetrics(cfg *Config) *metrics {
	m := &metrics{reg: prometheus.NewRegistry(), descs: map[string]*prometheus.Desc{},
		latest: map[string]map[string]float64{}, tests: map[string]*Test{}, testsInOrder: cfg.Tests}
	lbl := []string{"test", "type"}
	m.runs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "probe_monitor_runs_total",
		Help: "Runs that started, by test instance."}, lbl)
	m.failed = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "probe_monitor_runs_failed_total",
		Help: "Runs that started and ended in an error."}, lbl)
	m.notStarted = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "probe_monitor_runs_not_started_total",
		Help: "Runs that found no slot in their slip window."}, lbl)
	m.lastRun = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "probe_monitor_last_run_timestamp_seconds",
		Help: "When the last run of the test instance ended (Unix time)."}, lbl)
	for _, t := range cfg.Tests {
		m.tests[t.Name] = t
		for _, v := range []*prometheus.CounterVec{m.runs, m.failed, m.notStarted} {
			v.WithLabelValues(t.Name, t.Type.String()) // present at 0 from the start, for rate()
		}
	}
	for _, t := range Types() {
		for _, c := range t.Characteristics() {
			m.descs[c.Metric] = prometheus.NewDesc(c.Metric, c.Help, valueLabels, nil)
		}
	}
	m.reg.MustRegister(m.runs, m.failed, m.notStarted, m.lastRun, latestCollector{m})
	return m
}

func (m *metrics) observe(t *Test, r *Run) {
	l := []string{t.Name, t.Type.String()}
	switch r.State {
	case NotStarted:
		m.notStarted.WithLabelValues(l...).Inc()
		return
	case Failed:
		m.failed.WithLabelValues(l...).Inc()
	}
	m.runs.WithLabelValues(l...).Inc()
	m.lastRun.WithLabelValues(l...).Set(float64(r.End.UnixNano()) / 1e9)
	if len(r.Values) == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.latest[t.Name] == nil {
		m.latest[t.Name] = map[string]float64{}
	}
	for k, v := range r.Values {
		m.latest[t.Name][k] = v
	}
}

// restore takes the latest values the archive holds, for configured tests.
func (m *metrics) restore(cfg *Config, latest map[string]map[string]float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, vals := range latest {
		if m.tests[name] != nil {
			m.latest[name] = vals
		}
	}
}

// latestCollector reads the latest values at each scrape.
type latestCollector struct{ m *metrics }

func (c latestCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.m.descs {
		ch <- d
	}
}

func (c latestCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	for _, t := range c.m.testsInOrder {
		vals := c.m.latest[t.Name]
		for _, ch1 := range t.Type.Characteristics() {
			v, ok := vals[ch1.Name]
			if !ok {
				continue
			}
			ch <- prometheus.MustNewConstMetric(c.m.descs[ch1.Metric], prometheus.GaugeValue, v, t.Name, t.Type.String(), t.From, t.To)
		}
	}
}

// Handler serves /metrics and /probe.
func (m *Monitor) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.metrics.reg, promhttp.HandlerOpts{MaxRequestsInFlight: 8}))
	mux.HandleFunc("GET /probe", m.serveProbe)
	return mux
}

// Bounds of /probe requests.
const (
	maxTargetLen = 255
	// scrapeOffset leaves the scraper time to read the answer.
	scrapeOffset = 500 * time.Millisecond
)

// serveProbe runs a module's test against target and answers with a fresh
// registry, blackbox exporter style: probe_success, probe_duration_seconds
// and the test's figures.
func (m *Monitor) serveProbe(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	target, modName := q.Get("target"), q.Get("module")
	mod := m.cfg.Modules[modName]
	switch {
	case target == "":
		http.Error(w, "target parameter is missing", http.StatusBadRequest)
		return
	case len(target) > maxTargetLen:
		http.Error(w, fmt.Sprintf("target of %d bytes: at most %d", len(target), maxTargetLen), http.StatusBadRequest)
		return
	case modName == "":
		http.Error(w, "module parameter is missing", http.StatusBadRequest)
		return
	case mod == nil:
		http.Error(w, fmt.Sprintf("unknown module %q", truncate(modName, 64)), http.StatusBadRequest)
		return
	}
	addr, key, end, ok := m.resolveTarget(mod, target)
	if !ok {
		http.Error(w, fmt.Sprintf("target %q is not one of the configured agents and module %s does not allow any_target", target, mod.Name), http.StatusBadRequest)
		return
	}
	timeout := mod.Timeout
	if h := r.Header.Get("X-Prometheus-Scrape-Timeout-Seconds"); h != "" {
		if s, err := strconv.ParseFloat(h, 64); err == nil && s > 0 && s < 3600 {
			timeout = min(time.Duration(s*float64(time.Second))-scrapeOffset, maxModuleTimeout)
		}
	}
	if timeout <= 0 {
		http.Error(w, "scrape timeout too short", http.StatusBadRequest)
		return
	}
	select {
	case m.probes <- struct{}{}:
		defer func() { <-m.probes }()
	default:
		http.Error(w, fmt.Sprintf("%d probes already running", maxProbes), http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()

	reg := prometheus.NewRegistry()
	success := prometheus.NewGauge(prometheus.GaugeOpts{Name: "probe_success", Help: "Whether the test succeeded."})
	dur := prometheus.NewGauge(prometheus.GaugeOpts{Name: "probe_duration_seconds", Help: "How long the test took."})
	reg.MustRegister(success, dur)

	t0 := time.Now()
	// On-demand tests keep the class rules too: half the time may go to
	// waiting for a slot.
	release, why := m.slots.acquire(ctx, "probe:"+mod.Name+":"+target, mod.Class, []string{m.cfg.Name, end}, t0.Add(timeout/2))
	var vals map[string]float64
	var err error
	if release == nil {
		err = fmt.Errorf("no slot: %s", why)
	} else {
		vals, err = measure(ctx, m.opt.Dial, addr, key, mod.Type, mod.Params)
		release()
	}
	dur.Set(time.Since(t0).Seconds())
	if err != nil {
		m.log.Info("probe", "module", mod.Name, "target", target, "err", err)
	} else {
		success.Set(1)
	}
	for _, c := range mod.Type.Characteristics() {
		if v, ok := vals[c.Name]; ok {
			g := prometheus.NewGauge(prometheus.GaugeOpts{Name: c.Metric, Help: c.Help})
			g.Set(v)
			reg.MustRegister(g)
		}
	}
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(w, r)
}

// resolveTarget finds the agent a /probe target names: an agent's name or
// address, or with AnyTarget any host. end is the end point it occupies.
func (m *Monitor) resolveTarget(mod *Module, target string) (addr string, key []byte, end string, ok bool) {
	if a := m.cfg.Agents[target]; a != nil {
		return a.Address, a.Key, a.Name, true
	}
	for _, a := range m.cfg.Agents {
		if a.Address == target {
			return a.Address, a.Key, a.Name, true
		}
	}
	if mod.AnyTarget {
		return target, mod.Key, target, true
	}
	return "", nil, "", false
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
