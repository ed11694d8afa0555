package main

import (
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
		Name:      "measure",
		Usage:     "measure the path to an agent",
		UsageText: "probe measure -h HOST[:PORT] [--mode echo] [options]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "host", Aliases: []string{"h"}, Required: true, Usage: "agent address, host or host:port"},
			&cli.StringFlag{Name: "mode", Aliases: []string{"m"}, Value: "echo", Usage: "what to measure: echo"},
			&cli.IntFlag{Name: "count", Aliases: []string{"n"}, Value: 100, Usage: "probes to send"},
			&cli.IntFlag{Name: "size", Aliases: []string{"s"}, Value: 64, Usage: "UDP payload bytes per probe"},
			&cli.DurationFlag{Name: "interval", Aliases: []string{"i"}, Value: 10 * time.Millisecond, Usage: "time between probes"},
			&cli.DurationFlag{Name: "wait", Value: time.Second, Usage: "how long to wait for replies after the last probe"},
			&cli.StringFlag{Name: "ts-source", Value: "auto", Usage: "timestamps to compute with: auto (best available), hw, ebpf, sw, user"},
			&cli.StringFlag{Name: "write", Aliases: []string{"w"}, Usage: "write every record to this dump file (msgpack), for estimate -r"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
			keyFileFlag(),
			ebpfFlag(),
		},
		Action: measure,
	}
}

func measure(c *cli.Context) error {
	if c.String("mode") != "echo" {
		return fmt.Errorf("--mode %q: this build measures echo only", c.String("mode"))
	}
	src, err := report.ParseTSSource(c.String("ts-source"))
	if err != nil {
		return err
	}
	p := probe.EchoParams{Count: c.Int("count"), Size: c.Int("size"), Interval: c.Duration("interval")}
	if p.Count < 1 {
		return fmt.Errorf("--count %d: send at least one probe", p.Count)
	}
	key, err := readKey(c)
	if err != nil {
		return err
	}
	ts, err := openStamper(c.String("ebpf"), nil)
	if err != nil {
		return err
	}
	if ts != nil {
		defer ts.Close()
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := probe.ClientConfig{Key: key}
	if ts != nil {
		cfg.Stamper = ts
	}
	cl, err := probe.Dial(ctx, c.String("host"), cfg)
	if err != nil {
		return err
	}
	defer cl.Close()
	res, err := cl.Echo(ctx, p, c.Duration("wait"))
	if err != nil {
		return err
	}
	info := report.EchoInfo{Agent: cl.AgentAddr().String(), Count: p.Count, Size: p.Size, Interval: p.Interval}
	if path := c.String("write"); path != "" {
		if err := writeEchoDump(path, info, res.Records); err != nil {
			return err
		}
	}
	if res.Interrupted {
		fmt.Fprintf(os.Stderr, "probe: interrupted after %d of %d probes; reporting those\n", len(res.Records), p.Count)
	}
	return report.Echo(os.Stdout, info, res.Records, src, c.Bool("json"))
}

func writeEchoDump(path string, info report.EchoInfo, recs []dump.EchoRecord) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write dump: %w", err)
	}
	w, err := dump.NewWriter(f, dump.Header{Mode: "echo", Created: time.Now(), Meta: info.Meta()})
	if err != nil {
		f.Close()
		return err
	}
	for i := range recs {
		if err := w.Write(&dump.Record{Echo: &recs[i]}); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("write dump: %w", err)
	}
	return f.Close()
}
