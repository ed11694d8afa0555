package monitor

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

func testConfig(t *testing.T) *Config {
	t.Helper()
	c, err := ParseConfig([]byte(goodConfig), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func openTestArchive(t *testing.T, c *Config, path string) *Archive {
	t.Helper()
	a, err := OpenArchive(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if err := a.Sync(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	return a
}

// TestAggregateAndExpire stores runs over two hours, aggregates them, and
// checks count, min, mean, max and p95 of a bucket against the values put
// in, and that raw values past the deadline are gone while their
// aggregates stay.
func TestAggregateAndExpire(t *testing.T) {
	c := testConfig(t)
	a := openTestArchive(t, c, filepath.Join(t.TempDir(), "a.db"))
	ctx := context.Background()
	echo := c.Tests[0]
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// One run a minute for 2 h: rtt = minute index of the hour + 1 ms.
	for i := range 120 {
		st := base.Add(time.Duration(i) * time.Minute)
		r := &Run{Scheduled: st, Start: st, End: st.Add(time.Second), State: Finished,
			Values: map[string]float64{"rtt": float64(i%60+1) / 1000, "loss": 0}}
		if err := a.AddRun(ctx, echo, r); err != nil {
			t.Fatal(err)
		}
	}
	a.AddRun(ctx, echo, &Run{Scheduled: base, State: NotStarted, Error: "no slot"})
	// Echo keeps raw values a day: aggregate as of 2 days later.
	n, err := a.Aggregate(ctx, base.Add(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if n != 121 {
		t.Errorf("aggregated %d runs, want 121", n)
	}
	hour, err := a.Aggregated(ctx, "rtt-b", "rtt", time.Hour, base, base.Add(3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(hour) != 2 {
		t.Fatalf("%d hourly aggregates, want 2", len(hour))
	}
	h := hour[1]
	if h.Count != 60 || h.Min != 0.001 || h.Max != 0.060 || !near(h.Value, 0.0305) || h.P95 != 0.057 {
		t.Errorf("hour 2: count %d min %g mean %g max %g p95 %g; want 60, 0.001, 0.0305, 0.06, 0.057", h.Count, h.Min, h.Value, h.Max, h.P95)
	}
	five, _ := a.Aggregated(ctx, "rtt-b", "rtt", 5*time.Minute, base, base.Add(3*time.Hour))
	if len(five) != 24 || five[0].Count != 5 || !near(five[0].Value, 0.003) {
		t.Errorf("5-minute aggregates: %d, first %+v", len(five), five[0])
	}
	raw, _ := a.Raw(ctx, "rtt-b", "rtt", base, base.Add(3*time.Hour))
	if len(raw) != 0 {
		t.Errorf("%d raw values left past the 1-day deadline", len(raw))
	}
	// A second pass finds nothing new and keeps the aggregates.
	if n, _ := a.Aggregate(ctx, base.Add(48*time.Hour)); n != 0 {
		t.Errorf("second pass took up %d runs", n)
	}
	if again, _ := a.Aggregated(ctx, "rtt-b", "rtt", time.Hour, base, base.Add(3*time.Hour)); len(again) != 2 || again[1] != h {
		t.Errorf("aggregates changed after raw values went: %+v", again)
	}
	runs, _ := a.Runs(ctx, RunFilter{Instance: "rtt-b"})
	if len(runs) != 121 || runs[0].State != Finished && runs[0].State != NotStarted {
		t.Errorf("%d runs kept", len(runs))
	}
}

// TestLateRunReaggregates: a run archived after its bucket was aggregated
// is counted in it at the next pass.
func TestLateRunReaggregates(t *testing.T) {
	c := testConfig(t)
	a := openTestArchive(t, c, filepath.Join(t.TempDir(), "a.db"))
	ctx := context.Background()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	add := func(off time.Duration, v float64) {
		st := base.Add(off)
		if err := a.AddRun(ctx, c.Tests[0], &Run{Scheduled: st, Start: st, End: st, State: Finished, Values: map[string]float64{"rtt": v}}); err != nil {
			t.Fatal(err)
		}
	}
	add(time.Minute, 1)
	a.Aggregate(ctx, base.Add(time.Hour))
	add(2*time.Minute, 3)
	a.Aggregate(ctx, base.Add(time.Hour))
	g, _ := a.Aggregated(ctx, "rtt-b", "rtt", 5*time.Minute, base, base.Add(time.Hour))
	if len(g) != 1 || g[0].Count != 2 || g[0].Value != 2 || g[0].Max != 3 {
		t.Errorf("bucket after a late run: %+v", g)
	}
}

func near(a, b float64) bool { return a-b < 1e-12 && b-a < 1e-12 }

// childEnv makes the test binary an archive writer (TestMain).
const childEnv = "PROBE_MONITOR_ARCHIVE_WRITER"

func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		os.Exit(archiveWriter(path))
	}
	os.Exit(m.Run())
}

// archiveWriter archives runs as fast as it can and prints each one's id
// once committed, until killed.
func archiveWriter(path string) int {
	c, err := ParseConfig([]byte(goodConfig), filepath.Dir(path))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	a, err := OpenArchive(path)
	if err == nil {
		err = a.Sync(context.Background(), c)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	w := bufio.NewWriter(os.Stdout)
	for i := 0; ; i++ {
		st := time.Now()
		r := &Run{Scheduled: st, Start: st, End: st, State: Finished,
			Values: map[string]float64{"rtt": float64(i), "rtt_min": float64(i), "jitter": 0, "loss": 0}}
		if err := a.AddRun(context.Background(), c.Tests[0], r); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Fprintln(w, r.ID)
		w.Flush()
	}
}

// TestArchiveSurvivesSIGKILL kills a process in the middle of writing runs
// and checks that the archive opens, passes SQLite's integrity check and
// holds every run the writer saw committed, each with all its values.
func TestArchiveSurvivesSIGKILL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "killed.db")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var committed []int64
	for sc.Scan() && len(committed) < 300 {
		id, err := strconv.ParseInt(sc.Text(), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		committed = append(committed, id)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if len(committed) < 300 {
		t.Fatalf("the writer committed only %d runs before it stopped", len(committed))
	}
	a, err := OpenArchive(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var check string
	if err := a.db.QueryRow(`PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity check: %q, %v", check, err)
	}
	runs, err := a.Runs(context.Background(), RunFilter{})
	if err != nil {
		t.Fatal(err)
	}
	byID := map[int64]Run{}
	for _, r := range runs {
		byID[r.ID] = r
	}
	for _, id := range committed {
		r, ok := byID[id]
		if !ok {
			t.Fatalf("run %d was committed but is not in the archive", id)
		}
		if len(r.Values) != 4 {
			t.Fatalf("run %d has %d of its 4 values", id, len(r.Values))
		}
	}
	// At most the run in flight is lost or half-written: a run is in the
	// archive whole or not at all.
	for _, r := range runs {
		if len(r.Values) != 4 {
			t.Errorf("run %d holds %d values: a partial run survived", r.ID, len(r.Values))
		}
	}
	t.Logf("%d runs committed before SIGKILL, %d in the archive after", len(committed), len(runs))
}
