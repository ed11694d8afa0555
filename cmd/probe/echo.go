package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/probe-dev/probe/cmd/internal/report"
	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/probe"
	"github.com/urfave/cli/v2"
)

// echoSweep turns the echo flags into the measurements to run: every size
// with every wait, the whole sweep --measurements times.
func echoSweep(c *cli.Context) ([]probe.EchoParams, error) {
	sizes, err := steps("size", c.Int("size"), c.Int("size-to"), c.Int("size-step"))
	if err != nil {
		return nil, err
	}
	waits, err := steps("interval", c.Duration("interval"), c.Duration("interval-to"), c.Duration("interval-step"))
	if err != nil {
		return nil, err
	}
	reps := c.Int("measurements")
	if reps < 1 {
		return nil, fmt.Errorf("--measurements %d: run at least one", reps)
	}
	count := c.Int("count")
	if d := c.Duration("duration"); d > 0 {
		if waits[0] <= 0 || len(waits) > 1 {
			return nil, fmt.Errorf("--duration %v needs one --interval above 0 (isochronous: -i 1ms -d 10s)", d)
		}
		count = int(d / waits[0])
	}
	if count < 1 {
		return nil, fmt.Errorf("--count %d: send at least one probe", count)
	}
	base := probe.EchoParams{Count: count, RcvBuf: c.Int("rcvbuf"), SndBuf: c.Int("sndbuf"), DSCP: c.Int("dscp"), TTL: c.Int("ttl"), NoGSO: c.Bool("no-gso")}
	switch {
	case base.DSCP < 0 || base.DSCP > 63:
		return nil, fmt.Errorf("--dscp %d: want 0..63", base.DSCP)
	case base.TTL < 0 || base.TTL > 255:
		return nil, fmt.Errorf("--ttl %d: want 1..255", base.TTL)
	case base.RcvBuf < 0 || base.SndBuf < 0:
		return nil, fmt.Errorf("socket buffers must not be negative")
	}
	var points []probe.EchoParams
	for range reps {
		for _, size := range sizes {
			for _, wait := range waits {
				p := base
				p.Size, p.Interval = size, wait
				points = append(points, p)
			}
		}
	}
	return points, nil
}

// steps expands from, from+step, ... to; to 0 means from alone.
func steps[T int | time.Duration](name string, from, to, step T) ([]T, error) {
	switch {
	case from < 0:
		return nil, fmt.Errorf("--%s %v: must not be negative", name, from)
	case to == 0:
		return []T{from}, nil
	case to < from:
		return nil, fmt.Errorf("--%s-to %v is below --%s %v", name, to, name, from)
	case step <= 0:
		return nil, fmt.Errorf("--%s-to needs a --%s-step above 0", name, name)
	case (to-from)/step > 10000:
		return nil, fmt.Errorf("--%s sweep of %d steps: at most 10000", name, (to-from)/step+1)
	}
	var out []T
	for v := from; v <= to; v += step {
		out = append(out, v)
	}
	return out, nil
}

func measureEcho(ctx context.Context, c *cli.Context, cl *probe.Client, src dump.Source, start report.Start) error {
	params, err := echoSweep(c)
	if err != nil {
		return err
	}
	info := report.EchoInfo{Start: start, Agent: cl.AgentAddr().String(), Count: params[0].Count, Size: params[0].Size, Interval: params[0].Interval}
	var w *dump.Writer
	if path := c.String("write"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("write dump: %w", err)
		}
		defer f.Close()
		if w, err = dump.NewWriter(f, dump.Header{Mode: dump.ModeEcho, Created: time.Now(), Meta: info.Meta()}); err != nil {
			return err
		}
	}
	pcap, closePcap, err := openPcap(c)
	if err != nil {
		return err
	}
	defer closePcap()
	opts := probe.EchoOptions{Wait: c.Duration("wait"), LocalPort: uint16(c.Uint("udp-port"))}
	var total time.Duration
	for _, p := range params {
		total += time.Duration(p.Count) * p.Interval
	}
	stop := timedProgress("echo", total)
	defer stop()
	var stream *report.EchoStream
	if c.Bool("json-stream") {
		stream = report.NewEchoStream(os.Stdout, info, src)
	}
	var points []report.EchoMeasurement
	for i, p := range params {
		if ctx.Err() != nil {
			break
		}
		res, err := cl.Echo(ctx, p, opts)
		if err != nil {
			return err
		}
		res.Point.Index = i
		points = append(points, report.EchoMeasurement{Point: res.Point, Records: res.Records})
		if pcap != nil {
			if err := pcap.Point(res.Local, res.Agent, res.Records, p.Size); err != nil {
				return err
			}
		}
		if stream != nil {
			if err := stream.Point(points[len(points)-1]); err != nil {
				return err
			}
		}
		if w != nil {
			// Each measurement reaches the file as soon as it ends.
			if err := writeEchoPoint(w, res.Point, res.Records); err != nil {
				return err
			}
		}
		if res.Interrupted {
			fmt.Fprintf(os.Stderr, "probe: interrupted after %d of %d probes; reporting what was measured\n", len(res.Records), p.Count)
		}
		for _, w := range res.Warnings {
			fmt.Fprintf(os.Stderr, "probe: %s\n", w)
		}
	}
	stop()
	if stream != nil {
		return stream.End(points, c.String("plot"))
	}
	return report.Echo(os.Stdout, info, points, src, echoFormat(c), c.String("plot"))
}

// openPcap opens the --pcap file, when one is given; close closes it.
func openPcap(c *cli.Context) (p *report.Pcap, close func(), err error) {
	path := c.String("pcap")
	if path == "" {
		return nil, func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, nil, fmt.Errorf("pcap: %w", err)
	}
	if p, err = report.NewPcap(f); err != nil {
		f.Close()
		return nil, nil, err
	}
	return p, func() { f.Close() }, nil
}

func echoFormat(c *cli.Context) string {
	switch {
	case c.Bool("json"):
		return "json"
	case c.Bool("csv"):
		return "csv"
	}
	return "text"
}

func writeEchoPoint(w *dump.Writer, p dump.EchoPoint, recs []dump.EchoRecord) error {
	if err := w.Write(&dump.Record{Point: &p}); err != nil {
		return err
	}
	for i := range recs {
		if err := w.Write(&dump.Record{Echo: &recs[i]}); err != nil {
			return err
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write dump: %w", err)
	}
	return nil
}
