package probe

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/estimator"
	"github.com/probe-dev/probe/probe/internal/wire"
)

// CapacityConfig configures a capacity measurement (docs/capacity.md).
type CapacityConfig struct {
	Reverse   bool        // the client sends, the agent receives
	Quick     bool        // preliminary trains and a short Phase II only
	AllPhases bool        // Phase I even on an easy path (for its histogram and overhead fit)
	Budget    float64     // average probing rate as a fraction of the estimate; default 0.1
	Size      int         // full-size packets, IP bytes; default 1500
	MaxTrain  int         // longest train tried; default 50
	Source    dump.Source // receiver timestamps for the estimates between phases: estimator.AutoSource picks
	// OnTrain sees every train as soon as it is measured (to stream a dump).
	OnTrain func(*dump.Train) error
	// OnProgress is told after every batch how far the run is.
	OnProgress func(Progress)
}

// Progress is how far a capacity run is.
type Progress struct {
	Fraction float64
	Phase    dump.Phase
	Estimate float64 // bit/s, best so far; 0 before the first
}

// CapacityResult is what a capacity run measured.
type CapacityResult struct {
	Trains      []dump.Train
	Started     time.Time
	Duration    time.Duration
	MaxTrain    int
	Interrupted bool     // ctx ended before the last phase
	Warnings    []string // e.g. no eBPF timestamps for this session
	// Local and Agent are the session's UDP ends.
	Local, Agent netip.AddrPort
}

// Phase plans: how many trains of which length, and each phase's share of
// the progress bar.
const (
	calibrateTrains = 5
	calibrateLen    = 10
	prelimRepeats   = 5 // trains per length prelimMinLen..10
	phaseOneSizes   = 40
	phaseOneRepeats = 8
	// A train's sample is its median gap, which ignores the gaps a token
	// bucket's slack compresses at the head of a burst only while they are
	// under half the train: one gap for full-size packets, up to three for
	// 600 B ones behind a one-frame bucket.
	prelimMinLen    = 4
	phaseOneMinLen  = 7
	phaseTwoTrains  = 10
	minPhaseOneSize = 600
	maxLossyInARow  = 30 // abort after 30 consecutive lost trains (docs/capacity.md)
	maxBatchTime    = time.Second
	// Phase I ends this long after the run began, whatever of its plan is
	// left: its rounds visit every size, so an early end leaves fewer
	// repeats, not fewer sizes. A noise floor that reads cross traffic's
	// jitter (hundreds of µs on a quiet host with paced cross traffic)
	// makes its trains long, and a full run took 19 s of its 20.
	phaseOneUntil = 13 * time.Second
)

// senderCheckTrains long trains are sent when the short ones all arrived as
// fast as they left: enough for the shaper test.
const senderCheckTrains = 3

var errTooLossy = errors.New("30 trains in a row lost packets: the path is too lossy for packet trains")

// capDriver runs the phases from the client.
type capDriver struct {
	c       *Client
	cfg     CapacityConfig
	end     *capacityEnd
	res     *CapacityResult
	nextID  uint32
	rate    float64 // best estimate so far, bit/s, for the probing budget
	lossy   int     // trains in a row that lost packets
	hdr     int
	phase   dump.Phase
	done    float64 // progress of finished phases
	weight  float64 // this phase's share
	planned int     // trains planned in this phase
	ran     int
}

// Capacity measures the bottleneck capacity of the path from the agent to
// this client (from this client to the agent with Reverse). When ctx ends it
// stops after the batch in flight and returns what was measured.
func (c *Client) Capacity(ctx context.Context, cfg CapacityConfig) (*CapacityResult, error) {
	if cfg.Budget == 0 {
		cfg.Budget = 0.1
	}
	if cfg.Size == 0 {
		cfg.Size = 1500
	}
	if cfg.MaxTrain == 0 {
		cfg.MaxTrain = 50
	}
	switch {
	case cfg.Budget <= 0 || cfg.Budget > 1:
		return nil, fmt.Errorf("budget %g: want a fraction in (0, 1]", cfg.Budget)
	case cfg.MaxTrain < 10 || cfg.MaxTrain > MaxTrainLen:
		return nil, fmt.Errorf("longest train %d: want 10..%d", cfg.MaxTrain, MaxTrainLen)
	}
	if err := c.fc.Write(&wire.Message{Open: &wire.Open{Mode: wire.ModeCapacity, Capacity: &wire.CapacityParams{Reverse: cfg.Reverse}}}); err != nil {
		return nil, err
	}
	m, err := c.expect("opened")
	if err != nil {
		return nil, err
	}
	agent := netip.AddrPortFrom(c.AgentAddr(), m.Opened.Port)
	hdr := ipOverhead(agent.Addr())
	if cfg.Size < hdr+collector.ProbeHeaderLen+minPhaseOneSize/10 || cfg.Size > 65535 {
		return nil, fmt.Errorf("packet size %d: want %d..65535 IP bytes", cfg.Size, hdr+collector.ProbeHeaderLen+60)
	}
	uc, err := c.dialUDP(ctx, agent, 0)
	if err != nil {
		return nil, err
	}
	var warnings []string
	end, err := newCapacityEnd(uc, m.Opened.Session, m.Opened.Port, agent.Addr(), netip.AddrPort{}, c.cfg.Stamper)
	if err != nil && c.cfg.Stamper != nil && !c.cfg.RequireStamper {
		warnings = append(warnings, ebpfFallback(err))
		end, err = newCapacityEnd(uc, m.Opened.Session, m.Opened.Port, agent.Addr(), netip.AddrPort{}, nil)
	}
	if err != nil {
		uc.Close()
		return nil, fmt.Errorf("eBPF timestamps: %w", err)
	}
	defer end.close()

	d := &capDriver{c: c, cfg: cfg, end: end, hdr: hdr, nextID: 1,
		res: &CapacityResult{Started: time.Now(), MaxTrain: cfg.MaxTrain, Warnings: warnings, Local: uc.LocalAddr(), Agent: agent}}
	runErr := d.run(ctx)
	d.res.Duration = time.Since(d.res.Started)
	if ctx.Err() != nil {
		d.res.Interrupted, runErr = true, nil
	}
	// End the session whatever happened, so the agent frees it at once.
	c.conn.SetDeadline(time.Now().Add(c.cfg.Timeout))
	defer c.conn.SetDeadline(time.Time{})
	if err := c.fc.Write(&wire.Message{Finish: &wire.Finish{}}); err == nil {
		c.expect("done")
	}
	return d.res, runErr
}

func (d *capDriver) run(ctx context.Context) error {
	if err := d.hello(ctx); err != nil {
		return err
	}
	quick, full := d.cfg.Quick, d.cfg.Size

	// Each phase's share of the progress bar; quick runs three phases.
	w := map[dump.Phase]float64{dump.PhaseCalibrate: 0.05, dump.PhaseMaxLen: 0.05, dump.PhasePrelim: 0.2, dump.PhaseOne: 0.45, dump.PhaseTwo: 0.25}
	if quick {
		w = map[dump.Phase]float64{dump.PhaseCalibrate: 0.1, dump.PhasePrelim: 0.4, dump.PhaseTwo: 0.5}
	}
	d.begin(dump.PhaseCalibrate, w[dump.PhaseCalibrate], calibrateTrains)
	if err := d.runPlan(ctx, d.repeat(calibrateTrains, calibrateLen, full)); err != nil {
		return err
	}
	d.rate = roughRate(d.res.Trains)

	maxLen := min(d.cfg.MaxTrain, 32)
	if !quick {
		d.begin(dump.PhaseMaxLen, w[dump.PhaseMaxLen], 3)
		var err error
		if maxLen, err = d.findMaxLen(ctx); err != nil {
			return err
		}
	}
	d.res.MaxTrain = maxLen

	reps := prelimRepeats
	if quick {
		reps = 2
	}
	d.begin(dump.PhasePrelim, w[dump.PhasePrelim], (11-prelimMinLen)*reps)
	var plan []wire.TrainSpec
	for n := prelimMinLen; n <= min(10, maxLen); n++ {
		plan = append(plan, d.repeat(reps, n, full)...)
	}
	if err := d.runPlan(ctx, plan); err != nil {
		return err
	}
	est, err := estimator.EstimateCapacity(d.res.Trains, estimator.CapacityOptions{Source: d.cfg.Source})
	if err == nil && est.PrelimMean > 0 {
		d.rate = est.PrelimMean
	}
	easy := err == nil && est.Verdict == estimator.VerdictEasyPath
	if err == nil && est.SenderLimited {
		// The path took every train as fast as it left. So does a bucket
		// that holds a short train (tbf with a 15000 B bucket); a few long
		// trains outlast it, and a path faster than the sender passes
		// those unspread too (docs/capacity.md, limits).
		d.begin(dump.PhaseTwo, 0, senderCheckTrains)
		if err := d.runPlan(ctx, d.repeat(senderCheckTrains, maxLen, full)); err != nil {
			return err
		}
		est, err = estimator.EstimateCapacity(d.res.Trains, estimator.CapacityOptions{Source: d.cfg.Source})
		if err != nil || est.SenderLimited {
			return nil
		}
		if est.Sustained > 0 {
			d.rate = est.Sustained
		}
	}

	if !quick && (!easy || d.cfg.AllPhases) {
		d.begin(dump.PhaseOne, w[dump.PhaseOne], phaseOneSizes*phaseOneRepeats)
		n := phaseOneLen(est.NoiseFloor, d.rate, maxLen)
		plan = plan[:0]
		for _, size := range phaseOneSizeSteps(minPhaseOneSize, full, phaseOneSizes) {
			plan = append(plan, d.repeat(phaseOneRepeats, n, size)...)
		}
		// Interleave sizes, so that a change of the path's load during the
		// phase touches every size alike.
		plan = interleave(plan, phaseOneRepeats)
		if err := d.runPlanUntil(ctx, plan, d.res.Started.Add(phaseOneUntil)); err != nil {
			return err
		}
	}

	// More long trains where they are cheap: at high rates a late qdisc timer
	// costs a short train's tail a lot, and averaging more tails steadies ADR.
	// As many as about a second of probing at the budget allows, 10 to 40.
	trains := phaseTwoTrains
	if perSecond := d.cfg.Budget * d.rate / float64(8*maxLen*full); perSecond > phaseTwoTrains {
		trains = min(int(perSecond), 4*phaseTwoTrains)
	}
	if quick {
		// Five, not three: the shaper test needs most of them to agree,
		// and three compressed heads happen by chance under cross traffic.
		trains = 5
	}
	// The last phase takes what is left of the bar: an easy path skips
	// Phase I.
	d.begin(dump.PhaseTwo, 1-d.done-d.weight, trains)
	return d.runPlan(ctx, d.repeat(trains, maxLen, full))
}

// hello tells the agent where to send trains, and checks the path both
// ways: the agent answers a hello with its port's nonce, and a hello that
// carries it confirms the port.
func (d *capDriver) hello(ctx context.Context) error {
	buf := make([]byte, collector.ProbeHeaderLen)
	var sent uint32
	for range 20 {
		collector.ProbeHeader{Session: d.end.id, Seq: sent, Kind: collector.KindHello}.Put(buf)
		if _, _, err := d.end.conn.Send(buf, netip.AddrPort{}); err != nil {
			return fmt.Errorf("hello to the agent: %w", err)
		}
		deadline := time.Now().Add(50 * time.Millisecond)
		for time.Now().Before(deadline) {
			a := d.end.recv.answered()
			if a.pinned {
				return nil
			}
			if a.nonce != 0 && a.nonce != sent {
				sent = a.nonce // confirm it at once
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			time.Sleep(time.Millisecond)
		}
	}
	return errors.New("no answer from the agent over UDP within 1 s (a firewall?)")
}

func (d *capDriver) begin(p dump.Phase, weight float64, planned int) {
	d.done += d.weight
	d.phase, d.weight, d.planned, d.ran = p, weight, planned, 0
}

// repeat plans count trains of n packets of size bytes.
func (d *capDriver) repeat(count, n, size int) []wire.TrainSpec {
	plan := make([]wire.TrainSpec, count)
	for i := range plan {
		plan[i] = wire.TrainSpec{N: n, Size: size}
	}
	return plan
}

// findMaxLen grows trains up to the configured maximum until they lose
// packets (docs/capacity.md): three lossy trains at one length end the search.
func (d *capDriver) findMaxLen(ctx context.Context) (int, error) {
	best := calibrateLen
	for _, n := range []int{16, 32, d.cfg.MaxTrain} {
		if n <= best || n > d.cfg.MaxTrain {
			continue
		}
		ok := false
		for range 3 {
			trains, err := d.batch(ctx, d.repeat(1, n, d.cfg.Size))
			if err != nil {
				return best, err
			}
			if trains[0].Received() == n {
				ok = true
				break
			}
		}
		if !ok {
			break
		}
		best = n
	}
	return best, nil
}

// runPlan runs the plan in batches, retrying trains that lost packets.
func (d *capDriver) runPlan(ctx context.Context, plan []wire.TrainSpec) error {
	return d.runPlanUntil(ctx, plan, time.Time{})
}

// runPlanUntil is runPlan that starts no batch after until (zero: none).
func (d *capDriver) runPlanUntil(ctx context.Context, plan []wire.TrainSpec, until time.Time) error {
	for len(plan) > 0 {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !until.IsZero() && time.Now().After(until) {
			return nil
		}
		n := d.batchLen(plan)
		trains, err := d.batch(ctx, plan[:n])
		if err != nil {
			return err
		}
		var retry []wire.TrainSpec
		for i, t := range trains {
			if t.Received() < len(t.Tx) && d.phase != dump.PhaseMaxLen {
				retry = append(retry, wire.TrainSpec{N: plan[i].N, Size: plan[i].Size})
			}
		}
		plan = append(retry, plan[n:]...)
	}
	return nil
}

// batchLen is how many planned trains go in the next batch: at most
// maxBatchPackets packets and about maxBatchTime of probing.
func (d *capDriver) batchLen(plan []wire.TrainSpec) int {
	pkts := 0
	var t time.Duration
	for i, sp := range plan {
		pkts += sp.N
		t += d.spacing(sp)
		if i > 0 && (pkts > maxBatchPackets || t > maxBatchTime) {
			return i
		}
	}
	return len(plan)
}

// spacing is the time a train's bytes take at the probing budget: trains
// follow each other no faster, so the average probing rate stays under
// Budget × the estimate (docs/capacity.md).
func (d *capDriver) spacing(sp wire.TrainSpec) time.Duration {
	rate := d.rate
	if rate <= 0 {
		rate = 10e6 // before any estimate: a cautious guess
	}
	bits := float64(8 * sp.N * sp.Size)
	return max(time.Duration(bits/(d.cfg.Budget*rate)*1e9), time.Millisecond)
}

// batch sends specs (assigning IDs and start times), collects both ends'
// timestamps, and records the trains.
func (d *capDriver) batch(ctx context.Context, specs []wire.TrainSpec) ([]dump.Train, error) {
	var at time.Duration
	for i := range specs {
		specs[i].ID, specs[i].At = d.nextID, at
		d.nextID++
		at += d.spacing(specs[i])
	}
	last := specs[len(specs)-1]
	drain := time.Duration(float64(8*last.N*last.Size) / max(d.rate, 1e6) * 1e9)
	wait := min(max(3*drain, 20*time.Millisecond), 2*time.Second)

	var tx map[uint32][]dump.Stamps
	var rx []wire.RecvTrain
	c := d.c
	c.conn.SetDeadline(time.Now().Add(at + wait + c.cfg.Timeout))
	defer c.conn.SetDeadline(time.Time{})
	if d.cfg.Reverse {
		var err error
		if tx, err = d.end.send.send(ctx, specs); err != nil && ctx.Err() == nil {
			return nil, err
		}
		if err := c.fc.Write(&wire.Message{Collect: &wire.Collect{Trains: specs, Wait: wait}}); err != nil {
			return nil, err
		}
		m, err := c.expect("trains_received")
		if err != nil {
			return nil, err
		}
		rx = m.TrainsReceived.Trains
	} else {
		if err := c.fc.Write(&wire.Message{SendTrains: &wire.SendTrains{Trains: specs}}); err != nil {
			return nil, err
		}
		m, err := c.expect("trains_sent")
		if err != nil {
			return nil, err
		}
		tx = make(map[uint32][]dump.Stamps, len(specs))
		for _, t := range m.TrainsSent.Trains {
			tx[t.ID] = t.Tx
		}
		if rx, err = d.end.recv.collect(ctx, specs, wait); err != nil {
			return nil, err
		}
	}
	if len(rx) != len(specs) {
		return nil, fmt.Errorf("agent returned %d trains of %d", len(rx), len(specs))
	}
	trains := make([]dump.Train, len(specs))
	for i, sp := range specs {
		t := dump.Train{ID: sp.ID, Phase: d.phase, Size: sp.Size, Tx: tx[sp.ID], Rx: rx[i].Rx, Dups: rx[i].Dups}
		if len(t.Tx) != sp.N || len(t.Rx) != sp.N {
			return nil, fmt.Errorf("train %d: %d sent and %d received stamps for %d packets", sp.ID, len(t.Tx), len(t.Rx), sp.N)
		}
		if t.Received() < sp.N {
			d.lossy++
		} else {
			d.lossy = 0
		}
		trains[i] = t
		d.res.Trains = append(d.res.Trains, t)
		if d.cfg.OnTrain != nil {
			if err := d.cfg.OnTrain(&d.res.Trains[len(d.res.Trains)-1]); err != nil {
				return nil, err
			}
		}
		if d.lossy >= maxLossyInARow {
			return nil, errTooLossy
		}
	}
	d.ran += len(specs)
	if d.cfg.OnProgress != nil {
		frac := d.done + d.weight*min(1, float64(d.ran)/float64(max(d.planned, 1)))
		d.cfg.OnProgress(Progress{Fraction: min(frac, 1), Phase: d.phase, Estimate: d.rate})
	}
	return trains, nil
}

// roughRate is the median whole-train rate of complete trains, for the
// probing budget before the estimator has anything to say.
func roughRate(trains []dump.Train) float64 {
	var rates []float64
	for _, t := range trains {
		for _, src := range dump.Preference {
			first, last := t.Rx[0][src], t.Rx[len(t.Rx)-1][src]
			if t.Received() == len(t.Rx) && first != 0 && last > first {
				rates = append(rates, float64(8*t.Size*(len(t.Rx)-1))/(float64(last-first)/1e9))
				break
			}
		}
	}
	if len(rates) == 0 {
		return 0
	}
	slices.Sort(rates)
	return rates[len(rates)/2]
}

// phaseOneLen is the Phase I train length: phaseOneMinLen packets, or enough
// for the train's dispersion to dwarf the noise floor at the estimated rate.
func phaseOneLen(noise time.Duration, rate float64, maxLen int) int {
	n := phaseOneMinLen
	if noise > 0 && rate > 0 {
		gap := float64(8*minPhaseOneSize) / rate * 1e9 // ns, smallest packets
		for n < maxLen && float64(n-1)*gap < 10*float64(noise) {
			n++
		}
	}
	return n
}

// phaseOneSizeSteps spreads count sizes evenly over [lo, hi].
func phaseOneSizeSteps(lo, hi, count int) []int {
	if hi <= lo {
		return []int{hi}
	}
	sizes := make([]int, count)
	for i := range sizes {
		sizes[i] = lo + (hi-lo)*i/(count-1)
	}
	return sizes
}

// interleave turns runs of per repeated specs into rounds that visit each
// run once.
func interleave(plan []wire.TrainSpec, per int) []wire.TrainSpec {
	runs := len(plan) / per
	out := make([]wire.TrainSpec, 0, len(plan))
	for r := range per {
		for k := range runs {
			out = append(out, plan[k*per+r])
		}
	}
	return out
}
