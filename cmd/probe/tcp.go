package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/probe-dev/probe/cmd/internal/report"
	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/probe"
	"github.com/urfave/cli/v2"
)

func tcpFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "parallel", Aliases: []string{"P"}, Value: 1, Usage: "parallel streams, 1..1024"},
		&cli.BoolFlag{Name: "bidir", Usage: "data both ways at once"},
		&cli.DurationFlag{Name: "time", Aliases: []string{"t"}, Value: 10 * time.Second, Usage: "how long to send"},
		&cli.StringFlag{Name: "bytes", Usage: "send this many bytes instead (per direction, over all streams; K, M, G suffixes)"},
		&cli.StringFlag{Name: "write-size", Value: "128K", Usage: "bytes per write"},
		&cli.StringSliceFlag{Name: "sockopt", Aliases: []string{"s"}, Usage: "socket option NAME=VALUE or NUMBER=VALUE on both sides, repeatable (SO_RCVBUF=10000000, TCP_CONGESTION=bbr, 7=65536)"},
		&cli.StringSliceFlag{Name: "getsockopt", Aliases: []string{"g"}, Usage: "read this socket option back on both sides, repeatable"},
		&cli.DurationFlag{Name: "sample", Value: 100 * time.Millisecond, Usage: "TCP_INFO sampling interval"},
		&cli.DurationFlag{Name: "report", Value: time.Second, Usage: "report interval"},
		&cli.StringFlag{Name: "tcp-info", Usage: "TCP_INFO fields to print per interval, field[%label],... (e.g. rtt%RTT:,snd_cwnd)"},
		&cli.BoolFlag{Name: "exclusive", Usage: "ask for an otherwise idle agent"},
	}
}

// parseBytes reads 1500, 128K, 10M, 2G (powers of 1024).
func parseBytes(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("byte count %q: want a number with an optional K, M or G", s)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("byte count %q: over %d bytes", s, int64(math.MaxInt64))
	}
	return n * mult, nil
}

func measureTCP(ctx context.Context, c *cli.Context, cl *probe.Client, start report.Start) error {
	p, fields, err := tcpParams(c)
	if err != nil {
		return err
	}
	if err := p.Check(); err != nil {
		return err
	}
	stop := func() {}
	if p.Bytes == 0 {
		stop = timedProgress("tcp", p.Duration)
	}
	o := report.TCPOptions{Start: start, Agent: cl.AgentAddr().String(), Every: c.Duration("report"),
		Fields: fields, JSON: c.Bool("json"), Plot: c.String("plot")}
	var live func([]dump.TCPSample)
	var stream *report.TCPStream
	if c.Bool("json-stream") {
		stream = report.NewTCPStream(os.Stdout, p, o)
		live = stream.Live
	}
	res, err := cl.TCPLive(ctx, p, live)
	stop()
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "probe: interrupted; reporting what was measured")
	}
	if stream != nil {
		return stream.End(res, o)
	}
	return report.TCP(os.Stdout, res, o)
}

// tcpParams turns the flags into a TCP test (the QUIC mode takes its
// parameters from it too) and the TCP_INFO fields to print.
func tcpParams(c *cli.Context) (probe.TCPParams, []collector.SelectedField, error) {
	p := probe.TCPParams{Streams: c.Int("parallel"), Direction: probe.DirForward, Duration: c.Duration("time"),
		Interval: c.Duration("sample"), SockOpts: c.StringSlice("sockopt"), GetOpts: c.StringSlice("getsockopt"),
		Exclusive: c.Bool("exclusive")}
	switch {
	case c.Bool("bidir") && c.Bool("reverse"):
		return p, nil, fmt.Errorf("--bidir and --reverse: choose one")
	case c.Bool("bidir"):
		p.Direction = probe.DirBidir
	case c.Bool("reverse"):
		p.Direction = probe.DirReverse
	}
	ws, err := parseBytes(c.String("write-size"))
	if err != nil {
		return p, nil, fmt.Errorf("--write-size: %w", err)
	}
	p.WriteSize = int(ws)
	if s := c.String("bytes"); s != "" {
		if p.Bytes, err = parseBytes(s); err != nil {
			return p, nil, fmt.Errorf("--bytes: %w", err)
		}
	}
	fields, err := collector.ParseTCPInfoFields(c.String("tcp-info"))
	if err != nil {
		return p, nil, err
	}
	return p, fields, nil
}
