package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
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
		Flags: categorise(append([]cli.Flag{
			&cli.StringFlag{Name: "host", Aliases: []string{"h"}, Usage: "agent address, host or host:port (required but with --perf-server)"},
			&cli.StringFlag{Name: "mode", Aliases: []string{"m"}, Value: "echo", Usage: "what to measure: echo, capacity, tcp, quic, or tcp,quic (both, one after the other, side by side)"},
			&cli.StringFlag{Name: "ts-source", Value: "auto", Usage: "timestamps to compute with: auto (best available), hw, ebpf, sw, user"},
			&cli.StringFlag{Name: "write", Aliases: []string{"w"}, Usage: "write every record to this dump file (msgpack), for estimate -r"},
			&cli.StringFlag{Name: "pcap", Usage: "write every probe packet at its kernel timestamps to this nanosecond pcap file (payload zeroed): echo probes and replies as the client saw them, capacity trains as they left and arrived"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON (docs/json.md)"},
			&cli.BoolFlag{Name: "json-stream", Usage: "print a JSON object a line as the run goes, as iperf3's --json-stream: the start, each echo measurement or tcp/quic report interval, the end"},
			keyFileFlag(),
			ebpfFlag(),

			&cli.IntFlag{Name: "count", Aliases: []string{"n"}, Value: 100, Usage: "probes per measurement"},
			&cli.DurationFlag{Name: "duration", Aliases: []string{"d"}, Usage: "probes per measurement as a duration at --interval (isochronous: -i 1ms -d 10s)"},
			&cli.IntFlag{Name: "size", Aliases: []string{"l"}, Value: 64, Usage: "UDP payload bytes per probe, udpmon's length (the first of a sweep)"},
			&cli.IntFlag{Name: "size-to", Usage: "sweep payload sizes up to this (with --size-step)"},
			&cli.IntFlag{Name: "size-step", Usage: "payload size increment of a sweep"},
			&cli.DurationFlag{Name: "interval", Aliases: []string{"i"}, Value: 10 * time.Millisecond, Usage: "wait between probes, 0 for back to back (the first of a sweep)"},
			&cli.DurationFlag{Name: "interval-to", Usage: "sweep waits up to this (with --interval-step)"},
			&cli.DurationFlag{Name: "interval-step", Usage: "wait increment of a sweep"},
			&cli.IntFlag{Name: "measurements", Value: 1, Usage: "how many times to run the sweep"},
			&cli.DurationFlag{Name: "wait", Value: 2 * time.Second, Usage: "longest wait for replies after the last probe (it ends 200 ms after the last reply)"},
			&cli.IntFlag{Name: "rcvbuf", Usage: "socket receive buffer, bytes, both ends"},
			&cli.IntFlag{Name: "sndbuf", Usage: "socket send buffer, bytes, both ends"},
			&cli.IntFlag{Name: "dscp", Usage: "DSCP of probes and replies, 0..63"},
			&cli.BoolFlag{Name: "no-gso", Usage: "send back-to-back probes and replies one datagram per send, not in UDP GSO batches (keeps per-probe software transmit stamps)"},
			&cli.IntFlag{Name: "ttl", Usage: "IP TTL of probes and replies"},
			&cli.UintFlag{Name: "udp-port", Usage: "this host's UDP port (default: any)"},
			&cli.BoolFlag{Name: "csv", Usage: "print CSV, a row per measurement"},

			&cli.BoolFlag{Name: "reverse", Aliases: []string{"R"}, Usage: "reverse, as iperf3's -R: the agent sends and this host receives; without it this host sends"},
			&cli.BoolFlag{Name: "quick", Usage: "preliminary trains and a short check of the sustained rate only"},
			&cli.BoolFlag{Name: "all-phases", Usage: "run Phase I (packet sizes 600 B to the MTU) even on an easy path"},
			&cli.Float64Flag{Name: "budget", Value: 0.1, Usage: "average probing rate as a fraction of the estimate"},
			&cli.IntFlag{Name: "ip-size", Value: 1500, Usage: "full-size packets, IP bytes"},
			&cli.IntFlag{Name: "max-train", Value: 50, Usage: "longest train to try"},
			&cli.Float64Flag{Name: "bin-width", Aliases: []string{"b"}, Usage: "histogram bin width, Mbit/s (default: from the preliminary trains)"},
			&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Usage: "print through this format: " + strings.ReplaceAll(report.FormatTokens, "\n", " ")},
			&cli.StringFlag{Name: "plot", Usage: "capacity: the histogram, .png/.svg; echo: a directory of plots; tcp, quic: rates, cwnd and RTT over time, .png/.svg"},
		}, append(tcpFlags(), quicFlags()...)...), measureFlagModes),
		Action: measure,
	}
}

func measure(c *cli.Context) error {
	mode, err := parseMode(c.String("mode"))
	if err != nil {
		return err
	}
	if c.IsSet("perf-server") && !c.IsSet("mode") {
		mode = modeQUIC // implied
	}
	if err := checkFlags(c, measureFlagModes, mode); err != nil {
		return err
	}
	if c.Bool("json") && c.Bool("json-stream") {
		return errors.New("--json and --json-stream: choose one")
	}
	if mode == modeTCP|modeQUIC && c.Bool("json-stream") {
		return errors.New("--json-stream does not apply to --mode tcp,quic (it is for echo, tcp and quic, one at a time)")
	}
	if err := report.CheckPlotPath(c.String("plot"), mode == modeEcho); err != nil {
		return err
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
	trust, err := quicTrust(c)
	if err != nil {
		return err
	}
	cfg := probe.ClientConfig{Key: key, Trust: trust, RequireStamper: c.String("ebpf") == "on"}
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
	start := startOf(cl, ts != nil)
	switch mode {
	case modeCapacity:
		err = measureCapacity(ctx, c, cl, src, start)
	case modeTCP:
		err = measureTCP(ctx, c, cl, start)
	case modeQUIC:
		err = measureQUIC(ctx, c, cl, start)
	case modeTCP | modeQUIC:
		err = measureTCPQUIC(ctx, c, cl, start)
	default:
		err = measureEcho(ctx, c, cl, src, start)
	}
	// Said after the report, so that an error stays the one line on stderr.
	if err == nil && !cl.Verified() && !trust.Insecure {
		fmt.Fprintf(os.Stderr, "probe: the agent's certificate is %s, trusted on first use: check it against the agent's log and pin it with --pin, or use --key-file\n",
			probe.FormatFingerprint(cl.AgentFingerprint()))
	}
	return err
}

func measureCapacity(ctx context.Context, c *cli.Context, cl *probe.Client, src dump.Source, start report.Start) error {
	cfg := probe.CapacityConfig{
		// -R is iperf3's: the agent sends. probe's own Reverse is the
		// other way round, from the agent's trains.
		Reverse: !c.Bool("reverse"), Quick: c.Bool("quick"), AllPhases: c.Bool("all-phases"), Budget: c.Float64("budget"),
		Size: c.Int("ip-size"), MaxTrain: c.Int("max-train"), Source: src,
	}
	here := cl.LocalAddr().String()
	info := report.CapacityInfo{Start: start, From: cl.AgentAddr().String(), To: here, Path: report.AgentToClient, Size: cfg.Size, Quick: cfg.Quick}
	if cfg.Reverse {
		info.From, info.To, info.Path = here, cl.AgentAddr().String(), report.ClientToAgent
	}
	var w *dump.Writer
	if path := c.String("write"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("write dump: %w", err)
		}
		defer f.Close()
		if w, err = dump.NewWriter(f, dump.Header{Mode: dump.ModeCapacity, Created: time.Now(), Meta: info.Meta()}); err != nil {
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
	pcap, closePcap, err := openPcap(c)
	if err != nil {
		return err
	}
	defer closePcap()
	prog := newProgress()
	cfg.OnProgress = prog.update
	res, err := cl.Capacity(ctx, cfg)
	prog.stop()
	if res != nil && pcap != nil {
		from, to := res.Agent, res.Local
		if cfg.Reverse {
			from, to = to, from
		}
		for i := range res.Trains {
			if perr := pcap.Train(from, to, &res.Trains[i]); perr != nil && err == nil {
				err = perr
			}
		}
	}
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
