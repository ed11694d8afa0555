package monitor

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// Options are a monitor's settings beyond its config.
type Options struct {
	Dial   Dialer       // required: how to reach agents
	Logger *slog.Logger // nil: silent
	// OnRun, when set, sees every run once it is archived (tests, benches).
	OnRun func(*Test, *Run)
}

// Monitor runs a config's tests on their schedules and archives the runs.
type Monitor struct {
	cfg     *Config
	arc     *Archive
	opt     Options
	log     *slog.Logger
	slots   *slots
	metrics *metrics
	probes  chan struct{} // bounds /probe requests running at once
}

// lateness is how late past its slip window a run may still be started by
// the scheduler itself (a zero slip would otherwise always be missed).
const lateness = 100 * time.Millisecond

// maxProbes bounds the /probe tests running at once.
const maxProbes = 4

// New returns a monitor of cfg archiving into arc, which Sync has seen cfg.
func New(cfg *Config, arc *Archive, opt Options) *Monitor {
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Monitor{cfg: cfg, arc: arc, opt: opt, log: log, slots: newSlots(), metrics: newMetrics(cfg),
		probes: make(chan struct{}, maxProbes)}
}

// Run schedules every test and keeps the aggregates up to date until ctx
// ends; a run in flight then ends and is archived as failed. Latest values
// come back from the archive first, so /metrics has them after a restart.
func (m *Monitor) Run(ctx context.Context) error {
	if latest, err := m.arc.Latest(ctx); err == nil {
		m.metrics.restore(m.cfg, latest)
	} else {
		m.log.Warn("latest values", "err", err)
	}
	var wg sync.WaitGroup
	for _, t := range m.cfg.Tests {
		wg.Go(func() { m.schedule(ctx, t) })
	}
	wg.Go(func() { m.aggregateLoop(ctx) })
	wg.Wait()
	return nil
}

func (m *Monitor) aggregateLoop(ctx context.Context) {
	tick := time.NewTicker(m.cfg.AggregateEvery)
	defer tick.Stop()
	for {
		n, err := m.arc.Aggregate(ctx, time.Now())
		if err != nil && ctx.Err() == nil {
			m.log.Warn("aggregate", "err", err)
		} else if n > 0 {
			m.log.Debug("aggregated", "runs", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// schedule runs t's runs: the i-th is due at Start + i·Interval and may
// begin anywhere in the Slip after that, at a random point of it with
// SlipRand; it starts once its class lets it, or is archived as not
// started when the slip window closes first.
func (m *Monitor) schedule(ctx context.Context, t *Test) {
	s := t.Schedule
	start := s.Start
	now := time.Now()
	if start.IsZero() {
		start = now
	}
	i := 0
	if late := now.Sub(start) - s.Slip; late > 0 {
		// Runs due while the monitor was not running are not owed.
		i = int((late + s.Interval - 1) / s.Interval)
	}
	for ; s.MaxRuns == 0 || i < s.MaxRuns; i++ {
		nominal := start.Add(time.Duration(i) * s.Interval)
		if !s.Until.IsZero() && nominal.After(s.Until) {
			return
		}
		deadline := nominal.Add(s.Slip)
		if time.Now().After(deadline.Add(lateness)) {
			m.record(t, &Run{Scheduled: nominal, State: NotStarted, Error: "the previous run of this test was still going"})
			continue
		}
		at := nominal
		if s.SlipRand && s.Slip > 0 {
			at = nominal.Add(rand.N(s.Slip))
		}
		if !sleepUntil(ctx, at) {
			return
		}
		release, why := m.slots.acquire(ctx, t.Name, t.Class, t.EndPoints(), deadline)
		if ctx.Err() != nil {
			return
		}
		if release == nil {
			m.record(t, &Run{Scheduled: nominal, State: NotStarted, Error: "no slot in the slip window: " + why})
			continue
		}
		r := m.runOnce(ctx, t, nominal)
		release()
		m.record(t, r)
	}
}

// runOnce runs one test now; the caller holds its slot.
func (m *Monitor) runOnce(ctx context.Context, t *Test, nominal time.Time) *Run {
	rctx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()
	r := &Run{Scheduled: nominal, Start: time.Now()}
	var vals map[string]float64
	var err error
	if t.Source != nil {
		vals, err = measureFrom(rctx, m.opt.Dial, t.Source, t.Agent, t.Type, t.Params)
	} else {
		vals, err = measure(rctx, m.opt.Dial, t.Agent.Address, t.Agent.Key, t.Type, t.Params)
	}
	r.End = time.Now()
	switch {
	case ctx.Err() != nil:
		r.State, r.Error = Failed, "the monitor stopped during the run"
	case rctx.Err() != nil:
		r.State, r.Error = Failed, fmt.Sprintf("timed out after %v", t.Timeout)
	case err != nil:
		r.State, r.Error = Failed, err.Error()
	default:
		r.State = Finished
	}
	r.Values = vals
	return r
}

// record archives r and counts it.
func (m *Monitor) record(t *Test, r *Run) {
	// The archive gets the run even while the monitor stops.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.arc.AddRun(ctx, t, r); err != nil {
		m.log.Error("archive", "test", t.Name, "err", err)
	}
	m.metrics.observe(t, r)
	if r.State != Finished {
		m.log.Info("run", "test", t.Name, "state", r.State, "err", r.Error)
	}
	if m.opt.OnRun != nil {
		m.opt.OnRun(t, r)
	}
}

// sleepUntil waits for t; false when ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}
