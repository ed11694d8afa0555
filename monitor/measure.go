package monitor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/probe-dev/probe/estimator"
	"github.com/probe-dev/probe/probe"
)

// Dialer opens a control connection to an agent; probe.Dial with the
// monitor's client settings is the real one.
type Dialer func(ctx context.Context, addr string, key []byte) (*probe.Client, error)

// ClientDialer dials with base, which carries every client setting (trust,
// eBPF stamper, timeouts), and the agent's own key.
func ClientDialer(base probe.ClientConfig) Dialer {
	return func(ctx context.Context, addr string, key []byte) (*probe.Client, error) {
		cfg := base
		cfg.Key = key
		return probe.Dial(ctx, addr, cfg)
	}
}

// measure runs one test of type t with p against the agent at addr and
// returns its characteristics' values, or ctx's error as soon as it ends:
// some client calls still wait for replies a while after, and a scrape or a
// schedule must not.
func measure(ctx context.Context, dial Dialer, addr string, key []byte, t TestType, p Params) (map[string]float64, error) {
	type result struct {
		v   map[string]float64
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := measureNow(ctx, dial, addr, key, t, p)
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func measureNow(ctx context.Context, dial Dialer, addr string, key []byte, t TestType, p Params) (map[string]float64, error) {
	cl, err := dial(ctx, addr, key)
	if err != nil {
		return nil, err
	}
	// A client call blocked on the agent ends when ctx does.
	stop := context.AfterFunc(ctx, func() { cl.Close() })
	defer func() {
		if stop() {
			cl.Close()
		}
	}()
	switch t {
	case TypeEcho:
		return measureEcho(ctx, cl, p)
	case TypeCapacity:
		return measureCapacity(ctx, cl, p)
	case TypeTCP:
		return measureTCP(ctx, cl, p)
	case TypeQUIC:
		return measureQUIC(ctx, cl, p)
	case TypeLink:
		return measureLink(ctx, cl, p)
	}
	return nil, fmt.Errorf("no test of type %s", t)
}

func measureEcho(ctx context.Context, cl *probe.Client, p Params) (map[string]float64, error) {
	res, err := cl.Echo(ctx, probe.EchoParams{Count: p.Count, Size: p.Size, Interval: p.Interval}, probe.EchoOptions{Wait: p.Wait})
	if err != nil {
		return nil, err
	}
	if res.Interrupted {
		return nil, fmt.Errorf("interrupted after %d of %d probes", len(res.Records), p.Count)
	}
	s, err := estimator.EchoStats(res.Point, res.Records, estimator.AutoSource)
	out := map[string]float64{}
	if s.Sent > 0 {
		out["loss"] = float64(s.Lost()) / float64(s.Sent)
	}
	rtt := s.Kernel
	if rtt.N == 0 {
		rtt = s.User // no kernel stamps on both ends: user space is still a figure
		err = nil
	}
	if rtt.N > 0 {
		out["rtt"], out["rtt_min"] = rtt.Median.Seconds(), rtt.Min.Seconds()
		out["jitter"] = s.RoundTrip.Jitter.Seconds()
	}
	if err != nil && s.Received == 0 {
		// Everything lost is a measurement: loss 1, no RTT.
		return out, nil
	}
	return out, err
}

func measureCapacity(ctx context.Context, cl *probe.Client, p Params) (map[string]float64, error) {
	res, err := cl.Capacity(ctx, probe.CapacityConfig{Quick: !p.Full, Reverse: p.Reverse, Source: estimator.AutoSource})
	if err != nil {
		return nil, err
	}
	if res.Interrupted {
		return nil, errors.New("interrupted before its last phase")
	}
	est, err := estimator.EstimateCapacity(res.Trains, estimator.CapacityOptions{Source: estimator.AutoSource})
	if err != nil {
		return nil, err
	}
	if est.Verdict == estimator.VerdictNone {
		return nil, fmt.Errorf("no estimate from %d trains", len(res.Trains))
	}
	return map[string]float64{"capacity": est.Estimate, "sustained": est.Sustained}, nil
}

func direction(reverse bool) probe.Direction {
	if reverse {
		return probe.DirReverse
	}
	return probe.DirForward
}

func measureTCP(ctx context.Context, cl *probe.Client, p Params) (map[string]float64, error) {
	res, err := cl.TCP(ctx, probe.TCPParams{Streams: p.Streams, Direction: direction(p.Reverse), Duration: p.Duration,
		WriteSize: 128 << 10, Interval: 100 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	// The receiver's count over its own elapsed time; the sender's
	// retransmissions.
	recv, send := res.Agent, res.Client
	if p.Reverse {
		recv, send = res.Client, res.Agent
	}
	rt := estimator.TCPTotal(recv.Streams, recv.Elapsed)
	st := estimator.TCPTotal(send.Streams, send.Elapsed)
	if rt.Errors > 0 && rt.Received == 0 {
		return nil, fmt.Errorf("%d of %d streams failed and nothing arrived", rt.Errors, p.Streams)
	}
	return map[string]float64{"throughput": rt.RecvRate, "retransmits": float64(st.Retrans)}, nil
}

func measureQUIC(ctx context.Context, cl *probe.Client, p Params) (map[string]float64, error) {
	res, err := cl.QUIC(ctx, probe.QUICParams{Streams: p.Streams, Direction: direction(p.Reverse), Duration: p.Duration,
		WriteSize: 64 << 10, Interval: 100 * time.Millisecond}, probe.QUICTrust{})
	if err != nil {
		return nil, err
	}
	recv, send := res.Agent, res.Client
	if p.Reverse {
		recv, send = res.Client, res.Agent
	}
	rt := estimator.QUICTotal(recv.Streams, recv.Conn, recv.Elapsed)
	st := estimator.QUICTotal(send.Streams, send.Conn, send.Elapsed)
	if rt.Errors > 0 && rt.Received == 0 {
		return nil, fmt.Errorf("%d of %d streams failed and nothing arrived", rt.Errors, p.Streams)
	}
	return map[string]float64{"throughput": rt.RecvRate, "loss": st.LossRate}, nil
}

// measureLink reads the agent's counters Period apart: the interface's rates
// over that time as the agent's own clock counts it.
func measureLink(ctx context.Context, cl *probe.Client, p Params) (map[string]float64, error) {
	c0, err := cl.Counters(ctx)
	if err != nil {
		return nil, err
	}
	i0, ok := c0.Iface(p.Iface)
	if !ok {
		return nil, fmt.Errorf("the agent has no interface %s", p.Iface)
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(p.Period):
	}
	c1, err := cl.Counters(ctx)
	if err != nil {
		return nil, err
	}
	i1, ok := c1.Iface(p.Iface)
	if !ok {
		return nil, fmt.Errorf("interface %s went away", p.Iface)
	}
	dt := c1.Time.Sub(c0.Time).Seconds()
	if dt <= 0 {
		return nil, fmt.Errorf("the agent's counter times do not advance (%v, %v)", c0.Time, c1.Time)
	}
	if i1.RxBytes < i0.RxBytes || i1.TxBytes < i0.TxBytes {
		return nil, fmt.Errorf("counters of %s went back (interface reset?)", p.Iface)
	}
	return map[string]float64{"rx": float64(8*(i1.RxBytes-i0.RxBytes)) / dt, "tx": float64(8*(i1.TxBytes-i0.TxBytes)) / dt}, nil
}

// describe is p as the archive shows it: the parameters t reads.
func (p Params) describe(t TestType) string {
	switch t {
	case TypeEcho:
		return fmt.Sprintf("count=%d size=%d interval=%v wait=%v", p.Count, p.Size, p.Interval, p.Wait)
	case TypeCapacity:
		return fmt.Sprintf("full=%v reverse=%v", p.Full, p.Reverse)
	case TypeTCP, TypeQUIC:
		return fmt.Sprintf("streams=%d duration=%v reverse=%v", p.Streams, p.Duration, p.Reverse)
	case TypeLink:
		return fmt.Sprintf("interface=%s period=%v", p.Iface, p.Period)
	}
	return ""
}
