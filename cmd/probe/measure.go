package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/probe-dev/probe/cmd/internal/report"
	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/probe"
	"github.com/urfave/cli/v2"
)

func measureCommand() *cli.Command {
	return &cli.Command{
		Name:  "measure",
		Usage: "measure the path to an agent",
		UsageText: "probe measure -h HOST[:PORT] [--mode echo|capacity|tcp|quic|tcp,quic] [options]\n" +
			"probe measure --mode quic --perf-server HOST:PORT [--ca FILE|--pin sha256:HEX|--insecure] [options]",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "host", Aliases: []string{"h"}, Usage: "agent address, host or host:port (required but with --perf-server)"},
			&cli.StringFlag{Name: "mode", Aliases: []string{"m"}, Value: "echo", Usage: "what to measure: echo, capacity, tcp, quic, or tcp,quic (both, one after the other, side by side)"},
			&cli.StringFlag{Name: "ts-source", Value: "auto", Usage: "timestamps to compute with: auto (best available), hw, ebpf, sw, user"},
			&cli.StringFlag{Name: "write", Aliases: []string{"w"}, Usage: "write every record to this dump file (msgpack), for estimate -r"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
			keyFileFlag(),
			ebpfFlag(),

			&cli.IntFlag{Name: "count", Aliases: []string{"n"}, Value: 100, Usage: "echo: probes per measurement"},
			&cli.DurationFlag{Name: "duration", Aliases: []string{"d"}, Usage: "echo: probes per measurement as a duration at --interval (isochronous: -i 1ms -d 10s)"},
			&cli.IntFlag{Name: "size", Aliases: []string{"l"}, Value: 64, Usage: "echo: UDP payload bytes per probe, udpmon's length (the first of a sweep)"},
			&cli.IntFlag{Name: "size-to", Usage: "echo: sweep payload sizes up to this (with --size-step)"},
			&cli.IntFlag{Name: "size-step", Usage: "echo: payload size increment of a sweep"},
			&cli.DurationFlag{Name: "interval", Aliases: []string{"i"}, Value: 10 * time.Millisecond, Usage: "echo: wait between probes, 0 for back to back (the first of a sweep)"},
			&cli.DurationFlag{Name: "interval-to", Usage: "echo: sweep waits up to this (with --interval-step)"},
			&cli.DurationFlag{Name: "interval-step", Usage: "echo: wait increment of a sweep"},
			&cli.IntFlag{Name: "measurements", Value: 1, Usage: "echo: how many times to run the sweep"},
			&cli.DurationFlag{Name: "wait", Value: 2 * time.Second, Usage: "echo: longest wait for replies after the last probe (it ends 200 ms after the last reply)"},
			&cli.IntFlag{Name: "rcvbuf", Usage: "echo: socket receive buffer, bytes, both ends"},
			&cli.IntFlag{Name: "sndbuf", Usage: "echo: socket send buffer, bytes, both ends"},
			&cli.IntFlag{Name: "dscp", Usage: "echo: DSCP of probes and replies, 0..63"},
			&cli.BoolFlag{Name: "no-gso", Usage: "echo: send back-to-back probes and replies one datagram per send, not in UDP GSO batches (keeps per-probe software transmit stamps)"},
			&cli.IntFlag{Name: "ttl", Usage: "echo: IP TTL of probes and replies"},
			&cli.UintFlag{Name: "udp-port", Usage: "echo: this host's UDP port (default: any)"},
			&cli.BoolFlag{Name: "csv", Usage: "echo: print CSV, a row per measurement"},

			&cli.BoolFlag{Name: "reverse", Aliases: []string{"R"}, Usage: "capacity, tcp: the agent sends, this host receives (capacity: this host sends)"},
			&cli.BoolFlag{Name: "quick", Usage: "capacity: preliminary trains and a short check of the sustained rate only"},
			&cli.BoolFlag{Name: "all-phases", Usage: "capacity: run Phase I (packet sizes 600 B to the MTU) even on an easy path"},
			&cli.Float64Flag{Name: "budget", Value: 0.1, Usage: "capacity: average probing rate as a fraction of the estimate"},
			&cli.IntFlag{Name: "ip-size", Value: 1500, Usage: "capacity: full-size packets, IP bytes"},
			&cli.IntFlag{Name: "max-train", Value: 50, Usage: "capacity: longest train to try"},
			&cli.Float64Flag{Name: "bin-width", Aliases: []string{"b"}, Usage: "capacity: histogram bin width, Mbit/s (default: from the preliminary trains)"},
			&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Usage: "capacity: print through this format: " + report.FormatTokens},
			&cli.StringFlag{Name: "plot", Usage: "capacity: histogram .png/.svg; echo: a directory of plots; tcp, quic: rate, cwnd and RTT over time, .png/.svg"},
		}, append(tcpFlags(), quicFlags()...)...),
		Action: measure,
	}
}

func measure(c *cli.Context) error {
	mode := c.String("mode")
	switch mode {
	case "echo", "capacity", "tcp", "quic", "tcp,quic", "quic,tcp":
	default:
		return fmt.Errorf("--mode %q: want echo, capacity, tcp, quic or tcp,quic", mode)
	}
	if c.IsSet("perf-server") {
		return measurePerf(c)
	}
	if !c.IsSet("host") {
		return errors.New(`flag "host" not set: give -h HOST, or --mode quic --perf-server HOST:PORT`)
	}
	src, err := report.ParseTSSource(c.String("ts-source"))
	if err != nil {
		return err
	}
	key, err := readKey(c)
	if err != nil {
		return err
	}
	ts, err := openStamper(c.String("ebpf"), nil)
	if err != nil {
		return err
	}
	cfg := probe.ClientConfig{Key: key, RequireStamper: c.String("ebpf") == "on"}
	if ts != nil {
		defer ts.Close()
		cfg.Stamper = ts
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	cl, err := probe.Dial(ctx, c.String("host"), cfg)
	if err != nil {
		return err
	}
	defer cl.Close()
	switch mode {
	case "capacity":
		return measureCapacity(ctx, c, cl, src)
	case "tcp":
		return measureTCP(ctx, c, cl)
	case "quic":
		return measureQUIC(ctx, c, cl)
	case "tcp,quic", "quic,tcp":
		return measureTCPQUIC(ctx, c, cl)
	}
	return measureEcho(ctx, c, cl, src)
}

func measureCapacity(ctx context.Context, c *cli.Context, cl *probe.Client, src dump.Source) error {
	cfg := probe.CapacityConfig{
		Reverse: c.Bool("reverse"), Quick: c.Bool("quick"), AllPhases: c.Bool("all-phases"), Budget: c.Float64("budget"),
		Size: c.Int("ip-size"), MaxTrain: c.Int("max-train"), Source: src,
	}
	here := cl.LocalAddr().String()
	info := report.CapacityInfo{From: cl.AgentAddr().String(), To: here, Path: "agent -> client", Size: cfg.Size, Quick: cfg.Quick}
	if cfg.Reverse {
		info.From, info.To, info.Path = here, cl.AgentAddr().String(), "client -> agent"
	}
	var w *dump.Writer
	if path := c.String("write"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("write dump: %w", err)
		}
		defer f.Close()
		if w, err = dump.NewWriter(f, dump.Header{Mode: "capacity", Created: time.Now(), Meta: info.Meta()}); err != nil {
			return err
		}
		// Each train reaches the file as soon as it is measured, so that the
		// dump holds everything up to a crash or Ctrl-C.
		cfg.OnTrain = func(t *dump.Train) error {
			if err := w.Write(&dump.Record{Train: t}); err != nil {
				return err
			}
			return w.Flush()
		}
	}
	prog := newProgress()
	cfg.OnProgress = prog.update
	res, err := cl.Capacity(ctx, cfg)
	prog.stop()
	if res != nil {
		info.Duration, info.Interrupted = res.Duration, res.Interrupted
		if w != nil {
			w.Write(&dump.Record{End: &dump.End{Duration: res.Duration, Interrupted: res.Interrupted}})
			if ferr := w.Flush(); ferr != nil && err == nil {
				err = fmt.Errorf("write dump: %w", ferr)
			}
		}
	}
	if err != nil {
		return err
	}
	if res.Interrupted {
		fmt.Fprintf(os.Stderr, "probe: interrupted after %d trains; estimating from those\n", len(res.Trains))
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(os.Stderr, "probe: %s\n", w)
	}
	return printCapacity(c, info, res.Trains, src)
}

// printCapacity estimates from trains and prints the report the flags ask
// for; estimate -r shares it, so both print the same.
func printCapacity(c *cli.Context, info report.CapacityInfo, trains []dump.Train, src dump.Source) error {
	est, err := report.EstimateCapacity(trains, src, c.Float64("bin-width"))
	if err != nil {
		return err
	}
	return report.Capacity(os.Stdout, c.String("format"), c.Bool("json"), c.String("plot"), info, est)
}
