package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/probe-dev/probe/cmd/internal/report"
	"github.com/probe-dev/probe/probe"
	"github.com/urfave/cli/v2"
)

// The QUIC mode shares the TCP mode's flags (-P, --bidir, --reverse, -t,
// --bytes, --write-size, --sample, --report, --exclusive, --plot, --json)
// and adds these.
func quicFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "pin", Usage: "quic: trust only the agent certificate with this SHA-256 (sha256:HEX, as the agent logs it); default: the one the agent announces on the control connection"},
		&cli.StringFlag{Name: "ca", Usage: "quic: verify the agent's certificate and name against the CA certificates in this PEM file instead of pinning"},
		&cli.BoolFlag{Name: "insecure", Usage: "quic: accept any agent certificate"},
		&cli.IntFlag{Name: "pings", Value: 20, Usage: "quic: datagrams echoed before the transfer, for the idle RTT"},
		&cli.DurationFlag{Name: "ping-interval", Value: 10 * time.Millisecond, Usage: "quic: between datagrams, also during the transfer; 0: none"},
	}
}

// quicQuiet stops quic-go's own buffer warning: probe raises the buffers
// itself and says what limited them, once.
func quicQuiet() { os.Setenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING", "true") }

func quicTrust(c *cli.Context) (probe.QUICTrust, error) {
	var t probe.QUICTrust
	n := 0
	if s := c.String("pin"); s != "" {
		sum, err := probe.ParseFingerprint(s)
		if err != nil {
			return t, fmt.Errorf("--pin: %w", err)
		}
		t.Pin = sum
		n++
	}
	if path := c.String("ca"); path != "" {
		pool, err := probe.LoadCA(path)
		if err != nil {
			return t, err
		}
		t.CA = pool
		n++
	}
	if c.Bool("insecure") {
		t.Insecure = true
		n++
	}
	if n > 1 {
		return t, fmt.Errorf("--pin, --ca and --insecure: choose one")
	}
	return t, nil
}

// quicParams turns the flags into a QUIC test, the TCP test's twin.
func quicParams(c *cli.Context, tp probe.TCPParams) probe.QUICParams {
	return probe.QUICParams{Streams: tp.Streams, Direction: tp.Direction, Duration: tp.Duration, Bytes: tp.Bytes,
		WriteSize: tp.WriteSize, Interval: tp.Interval, Pings: c.Int("pings"), PingEvery: c.Duration("ping-interval"),
		Exclusive: tp.Exclusive}
}

func measureQUIC(ctx context.Context, c *cli.Context, cl *probe.Client) error {
	quicQuiet()
	tp, _, err := tcpParams(c)
	if err != nil {
		return err
	}
	p := quicParams(c, tp)
	if err := p.Check(); err != nil {
		return err
	}
	trust, err := quicTrust(c)
	if err != nil {
		return err
	}
	res, err := cl.QUIC(ctx, p, trust)
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "probe: interrupted; reporting what was measured")
	}
	return report.QUIC(os.Stdout, res, report.QUICOptions{Agent: cl.AgentAddr().String(), Every: c.Duration("report"),
		JSON: c.Bool("json"), Plot: c.String("plot")})
}

// measureTCPQUIC runs the TCP test, then the QUIC test of the same
// parameters, on the same control connection, and prints them side by side.
func measureTCPQUIC(ctx context.Context, c *cli.Context, cl *probe.Client) error {
	quicQuiet()
	tp, _, err := tcpParams(c)
	if err != nil {
		return err
	}
	qp := quicParams(c, tp)
	if err := tp.Check(); err != nil {
		return err
	}
	if err := qp.Check(); err != nil {
		return err
	}
	trust, err := quicTrust(c)
	if err != nil {
		return err
	}
	tres, err := cl.TCP(ctx, tp)
	if err != nil {
		return fmt.Errorf("tcp: %w", err)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted during the tcp test")
	}
	qres, err := cl.QUIC(ctx, qp, trust)
	if err != nil {
		return fmt.Errorf("quic: %w", err)
	}
	agent := cl.AgentAddr().String()
	return report.TCPBesideQUIC(os.Stdout, tres, qres,
		report.TCPOptions{Agent: agent, Every: c.Duration("report"), JSON: c.Bool("json"), Plot: c.String("plot")},
		report.QUICOptions{Agent: agent, Every: c.Duration("report"), JSON: c.Bool("json")})
}
