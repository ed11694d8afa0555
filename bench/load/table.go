package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// result is what a row's clients saw.
type result struct {
	clients string         // e.g. "88 of 88"
	errors  map[string]int // explained error -> count
	failed  bool           // the row's goal was missed
}

// row is a result with the agent's figures around it.
type row struct {
	name                 string
	result               result
	before, peak, after  figures
	beforeOK, afterAlive bool
}

// measure runs fn, tracking the agent's peak figures, then waits the
// settling time and takes them again.
func (b *bench) measure(ctx context.Context, name string, fn func(context.Context) result) row {
	r := row{name: name}
	r.before, r.beforeOK = b.agent.sample()
	r.peak = r.before
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if f, ok := b.agent.sample(); ok {
					r.peak.rss = max(r.peak.rss, f.rss)
					r.peak.fds = max(r.peak.fds, f.fds)
					r.peak.goroutines = max(r.peak.goroutines, f.goroutines)
				}
			}
		}
	}()
	r.result = fn(ctx)
	close(stop)
	wg.Wait()
	select {
	case <-time.After(b.settle):
	case <-b.agent.done:
	}
	r.after, r.afterAlive = b.agent.sample()
	return r
}

// baseline says whether the agent came back: descriptors exactly, RSS
// within 20 %, no session left.
func (r row) baseline() string {
	switch {
	case !r.afterAlive:
		return "agent died"
	case r.after.fds != r.before.fds:
		return fmt.Sprintf("no: %+d descriptors", r.after.fds-r.before.fds)
	case r.after.sessions > 0:
		return fmt.Sprintf("no: %d sessions left", r.after.sessions)
	case float64(r.after.rss) > 1.2*float64(r.before.rss):
		return fmt.Sprintf("no: RSS %+.0f %%", 100*(float64(r.after.rss)/float64(r.before.rss)-1))
	}
	return "yes"
}

func mib(b int64) string { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) }

func num(n int) string {
	if n < 0 {
		return "?"
	}
	return fmt.Sprint(n)
}

func printTable(w io.Writer, rows []row, alive bool, took time.Duration) {
	fmt.Fprintln(w, "| row | clients | errors, each explained | RSS MiB before / peak / after | descriptors before / peak / after | goroutines before / peak / after | back to baseline |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	unexplained := 0
	for _, r := range rows {
		var errs []string
		for _, k := range slices.Sorted(maps.Keys(r.result.errors)) {
			errs = append(errs, fmt.Sprintf("%d × %s", r.result.errors[k], k))
			if strings.HasPrefix(k, unexplainedPrefix) {
				unexplained += r.result.errors[k]
			}
		}
		e := "none"
		if len(errs) > 0 {
			e = strings.Join(errs, "; ")
		}
		after := func(f func(figures) string) string {
			if !r.afterAlive {
				return "–"
			}
			return f(r.after)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s / %s / %s | %d / %d / %s | %s / %s / %s | %s |\n", r.name, r.result.clients, e,
			mib(r.before.rss), mib(r.peak.rss), after(func(f figures) string { return mib(f.rss) }),
			r.before.fds, r.peak.fds, after(func(f figures) string { return num(f.fds) }),
			num(r.before.goroutines), num(r.peak.goroutines), after(func(f figures) string { return num(f.goroutines) }),
			r.baseline())
	}
	restart := "no agent restart"
	if !alive {
		restart = "the agent died"
	}
	fmt.Fprintf(w, "\n%d unexplained errors; %s; %v in all.\n", unexplained, restart, took.Round(time.Second))
}
