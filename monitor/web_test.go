package monitor

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"math"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

const webConfig = `
name: mon
agents: {b1: 192.0.2.1, b2: 192.0.2.2, b3: 192.0.2.3}
tests:
  - {name: rtt-b1, type: echo, to: b1, schedule: {interval: 5m}}
  - {name: rtt-b2, type: echo, to: b2, schedule: {interval: 5m}}
  - {name: rtt-b3, type: echo, to: b3, schedule: {interval: 5m}}
  - {name: tcp-b1, type: tcp, to: b1, schedule: {interval: 1h}}
`

// synthRTT is a day's swing around base with a spike every 40th run.
func synthRTT(base float64, seed uint64) func(time.Time) map[string]float64 {
	r := rand.New(rand.NewPCG(seed, 1))
	i := 0
	return func(t time.Time) map[string]float64 {
		i++
		day := math.Sin(2 * math.Pi * float64(t.Unix()%86400) / 86400)
		rtt := base * (1 + 0.3*day + 0.05*r.Float64())
		if i%40 == 0 {
			rtt *= 6
		}
		return map[string]float64{"rtt": rtt, "rtt_min": rtt * 0.9, "jitter": rtt * 0.05 * r.Float64(), "loss": 0.002 * r.Float64()}
	}
}

// webArchive is 30 days of 5-minute echo runs for three instances up to
// now, aggregated, served by a monitor's web handler.
func webArchive(t testing.TB, days int) (*Monitor, *Archive, *httptest.Server) {
	t.Helper()
	c, err := ParseConfig([]byte(webConfig), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a, err := OpenArchive(filepath.Join(t.TempDir(), "web.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	ctx := context.Background()
	if err := a.Sync(ctx, c); err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(5 * time.Minute)
	for i, tst := range c.Tests[:3] {
		if _, err := a.AddSynthetic(ctx, tst, now.Add(-time.Duration(days)*24*time.Hour), now, 5*time.Minute, synthRTT(0.010*float64(i+1), uint64(i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Aggregate(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	m := New(c, a, Options{})
	srv := httptest.NewServer(m.WebHandler())
	t.Cleanup(srv.Close)
	return m, a, srv
}

var seriesRE = regexp.MustCompile(`data-unit="([a-z_]+)" data-series="([^"]*)"`)

func plotted(t *testing.T, page string) map[string][]Series {
	t.Helper()
	out := map[string][]Series{}
	for _, m := range seriesRE.FindAllStringSubmatch(page, -1) {
		var s []Series
		if err := json.Unmarshal([]byte(html.UnescapeString(m[2])), &s); err != nil {
			t.Fatal(err)
		}
		out[m[1]] = s
	}
	return out
}

// TestWebGraphMatchesArchive checks that the week graph plots, for each
// instance and characteristic, exactly the hourly means the archive holds
// (read here with SQL of its own), that the SVG draws a line with as many
// vertices, and that the p95 cut leaves out exactly the values above it.
func TestWebGraphMatchesArchive(t *testing.T) {
	_, a, srv := webArchive(t, 8)
	q := "/graph?type=echo&i=rtt-b1&i=rtt-b2&c=rtt&c=jitter&c=loss&scale=week"
	page := get(t, srv.URL+q, 200)
	graphs := plotted(t, page)
	if len(graphs) != 2 || len(graphs["seconds"]) != 4 || len(graphs["ratio"]) != 2 {
		t.Fatalf("graphs by unit: %d seconds, %d ratio series", len(graphs["seconds"]), len(graphs["ratio"]))
	}
	from := time.Now().Add(-7*24*time.Hour - time.Hour)
	for _, s := range append(graphs["seconds"], graphs["ratio"]...) {
		rows, err := a.db.Query(`SELECT g.t_ns / 1000000000, g.mean FROM aggregations g, instances i, characteristics c
			WHERE g.instance_id = i.id AND g.characteristic_id = c.id AND c.test_type_id = i.test_type_id
			AND i.name = ? AND c.name = ? AND g.period_ns = ? AND g.t_ns > ? ORDER BY g.t_ns`,
			s.Instance, s.Char, int64(time.Hour), from.UnixNano())
		if err != nil {
			t.Fatal(err)
		}
		var ts []int64
		var vs []float64
		for rows.Next() {
			var tt int64
			var v float64
			rows.Scan(&tt, &v)
			ts, vs = append(ts, tt), append(vs, v)
		}
		rows.Close()
		if s.Source != "1h0m0s" || len(s.V) < 160 || len(s.V) > 170 {
			t.Errorf("%s %s: %d points from %s, want the ~169 hourly aggregates", s.Instance, s.Char, len(s.V), s.Source)
		}
		// The page's range starts at a bucket holding values after now-7d.
		for len(ts) > len(s.T) {
			ts, vs = ts[1:], vs[1:]
		}
		for i := range s.V {
			if i >= len(ts) || s.T[i] != ts[i] || s.V[i] != vs[i] {
				t.Fatalf("%s %s point %d: plotted (%d, %g), archive (%v, %v)", s.Instance, s.Char, i, s.T[i], s.V[i], ts[i:i+1], vs[i:i+1])
			}
		}
	}
	// Each line of the SVG is one path; gonum writes "M x y L x y ...".
	lines := 0
	for _, p := range regexp.MustCompile(`d="M[^"]*"`).FindAllString(page, -1) {
		if n := strings.Count(p, "L"); n >= 159 && n <= 169 {
			lines++
		}
	}
	if lines != 6 {
		t.Errorf("%d SVG paths with one vertex per point, want 6 lines", lines)
	}

	cut := plotted(t, get(t, srv.URL+q+"&cut=1", 200))
	for i, s := range graphs["seconds"] {
		c := cut["seconds"][i]
		sorted := append([]float64(nil), s.V...)
		p95 := nearestRank(sortFloats(sorted), 95)
		above := 0
		for _, v := range s.V {
			if v > p95 {
				above++
			}
		}
		if c.Cut != above || len(c.V) != len(s.V)-above || above == 0 {
			t.Errorf("%s %s: cut %d, %d left of %d; %d values are above p95 %g", s.Instance, s.Char, c.Cut, len(c.V), len(s.V), above, p95)
		}
		for _, v := range c.V {
			if v > p95 {
				t.Errorf("%s %s: %g plotted above p95 %g", s.Instance, s.Char, v, p95)
			}
		}
	}
}

func sortFloats(v []float64) []float64 {
	for i := 1; i < len(v); i++ {
		for j := i; j > 0 && v[j] < v[j-1]; j-- {
			v[j], v[j-1] = v[j-1], v[j]
		}
	}
	return v
}

// TestWebRefusesBadQueries: every parameter is checked before the archive
// is asked anything.
func TestWebRefusesBadQueries(t *testing.T) {
	_, _, srv := webArchive(t, 1)
	many := strings.Repeat("&i=rtt-b1", 1) + strings.Repeat("&i=x", 11)
	for _, q := range []string{
		"/graph?type=echo&i=rtt-b1&c=rtt&scale=year",
		"/graph?type=ping&i=rtt-b1&c=rtt&scale=day",
		"/graph?type=echo&i=rtt-b1'%20OR%201=1--&c=rtt&scale=day",
		"/graph?type=echo&i=tcp-b1&c=rtt&scale=day", // another type's instance
		"/graph?type=echo&i=rtt-b1&c=throughput&scale=day",
		"/graph?type=echo&c=rtt&scale=day",
		"/graph?type=echo&c=rtt&scale=day" + many,
		"/graph?type=echo&i=rtt-b1&c=rtt&scale=day&x=" + strings.Repeat("a", 5000),
		"/type?type=nope",
	} {
		get(t, srv.URL+q, 400)
	}
	get(t, srv.URL+"/nothing", 404)
}

// TestWebScreenshots renders every page in headless Chromium and keeps the
// screenshots (in $PROBE_SCREENSHOTS when set) for a person to look at; it
// checks each is a sizeable PNG and that the month page of 30 days of
// 5-minute data for three instances renders in under a second.
func TestWebScreenshots(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("no chromium in PATH (Debian: apt-get install -y chromium)")
	}
	if testing.Short() {
		t.Skip("-short: Chromium takes seconds per page")
	}
	_, _, srv := webArchive(t, 30)
	dir := os.Getenv("PROBE_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	all := "type=echo&i=rtt-b1&i=rtt-b2&i=rtt-b3&c=rtt&c=jitter&c=loss"
	for _, p := range []struct{ name, path string }{
		{"1-types", "/"},
		{"2-echo-instances", "/type?type=echo"},
		{"3-graph-day", "/graph?" + all + "&scale=day"},
		{"4-graph-hour", "/graph?" + all + "&scale=hour"},
		{"5-graph-month-cut", "/graph?" + all + "&scale=month&cut=1"},
		{"6-graph-week-enlarged", "/graph?" + all + "&scale=week&unit=seconds"},
	} {
		file := filepath.Join(dir, p.name+".png")
		t0 := time.Now()
		out, err := exec.Command(chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
			"--screenshot="+file, "--window-size=1280,900", srv.URL+p.path).CombinedOutput()
		took := time.Since(t0)
		if err != nil {
			t.Fatalf("%s: %v\n%s", p.name, err, out)
		}
		st, err := os.Stat(file)
		if err != nil || st.Size() < 10_000 {
			t.Errorf("%s: screenshot of %v bytes: %v", p.name, st, err)
		}
		t.Logf("%s: %v (%s)", p.name, took.Round(time.Millisecond), file)
	}
	fmt.Fprint(os.Stderr)
}
