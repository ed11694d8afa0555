package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
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
		&cli.StringFlag{Name: "perf-server", Usage: "measure against this QUIC perf server (draft-banks-quic-performance, any implementation) at HOST:PORT " +
			"instead of an agent: no control connection, client-side figures only, no datagram pings; trust it with --ca, --pin or --insecure"},
		&cli.StringFlag{Name: "pin", Usage: "trust only the agent certificate with this SHA-256 (sha256:HEX, as the agent logs it), on the control connection and for QUIC; " +
			"default: the control connection's is taken on first use and printed, and QUIC's is the one announced on it"},
		&cli.StringFlag{Name: "ca", Usage: "verify the agent's certificate and name against the CA certificates in this PEM file instead of pinning (with --perf-server, default: the system's roots)"},
		&cli.BoolFlag{Name: "insecure", Usage: "accept any agent certificate"},
		&cli.IntFlag{Name: "pings", Value: 20, Usage: "datagrams echoed before the transfer, for the idle RTT"},
		&cli.DurationFlag{Name: "ping-interval", Value: 10 * time.Millisecond, Usage: "between datagrams, also during the transfer; 0: none"},
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

// quicTest turns the flags into a QUIC test and a way to trust its server.
func quicTest(c *cli.Context) (probe.QUICParams, probe.QUICTrust, error) {
	tp, _, err := tcpParams(c)
	if err != nil {
		return probe.QUICParams{}, probe.QUICTrust{}, err
	}
	p := quicParams(c, tp)
	if err := p.Check(); err != nil {
		return p, probe.QUICTrust{}, err
	}
	trust, err := quicTrust(c)
	return p, trust, err
}

func measureQUIC(ctx context.Context, c *cli.Context, cl *probe.Client, start report.Start) error {
	quicQuiet()
	p, trust, err := quicTest(c)
	if err != nil {
		return err
	}
	stop := func() {}
	if p.Bytes == 0 {
		stop = timedProgress("quic", p.Duration)
	}
	o, stream := quicOutput(c, p, false, cl.AgentAddr().String(), start)
	var live probe.QUICLiveFunc
	if stream != nil {
		live = stream.Live
	}
	res, err := cl.QUICLive(ctx, p, trust, live)
	stop()
	if err != nil {
		return err
	}
	return printQUIC(ctx, res, o, stream)
}

// quicOutput says how to print a QUIC test, and starts its stream with
// --json-stream.
func quicOutput(c *cli.Context, p probe.QUICParams, perf bool, peer string, start report.Start) (report.QUICOptions, *report.QUICStream) {
	o := report.QUICOptions{Start: start, Agent: peer, Every: c.Duration("report"), JSON: c.Bool("json"), Plot: c.String("plot")}
	if !c.Bool("json-stream") {
		return o, nil
	}
	return o, report.NewQUICStream(os.Stdout, p, perf, o)
}

func printQUIC(ctx context.Context, res *probe.QUICResult, o report.QUICOptions, stream *report.QUICStream) error {
	if ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "probe: interrupted; reporting what was measured")
	}
	if stream != nil {
		return stream.End(res, o)
	}
	return report.QUIC(os.Stdout, res, o)
}

// perfRefused are the flags that need a probe agent at the other end,
// and why; --perf-server refuses them rather than ignore them.
var perfRefused = []struct{ flag, name, why string }{
	{"host", "-h", "-h names an agent, --perf-server measures without one; give one of them"},
	{"key-file", "--key-file", "the key authenticates to an agent's control connection, which a perf server lacks"},
	{"exclusive", "--exclusive", "only an agent can be asked to stay otherwise idle"},
	{"pings", "--pings", "datagram pings need an agent to echo them; they are not part of the perf protocol"},
	{"ping-interval", "--ping-interval", "datagram pings need an agent to echo them; they are not part of the perf protocol"},
}

// measurePerf runs the QUIC test against any perf server, without a
// control connection: only the client's side is measured.
func measurePerf(c *cli.Context) error {
	if c.IsSet("mode") && probe.Mode(c.String("mode")) != probe.ModeQUIC {
		return fmt.Errorf("--perf-server measures QUIC only, not --mode %s", c.String("mode"))
	}
	for _, r := range perfRefused {
		if c.IsSet(r.flag) {
			return fmt.Errorf("--perf-server and %s: %s", r.name, r.why)
		}
	}
	quicQuiet()
	p, trust, err := quicTest(c)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	server := c.String("perf-server")
	o, stream := quicOutput(c, p, true, server, startOf(nil, false))
	cfg := probe.PerfConfig{Server: server, Params: p, Trust: trust}
	if stream != nil {
		cfg.Live = stream.Live
	}
	res, err := probe.PerfQUIC(ctx, cfg)
	if err != nil {
		return err
	}
	return printQUIC(ctx, res, o, stream)
}

// measureTCPQUIC runs the TCP test, then the QUIC test of the same
// parameters, on the same control connection, and prints them side by side.
func measureTCPQUIC(ctx context.Context, c *cli.Context, cl *probe.Client, start report.Start) error {
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
		report.TCPOptions{Start: start, Agent: agent, Every: c.Duration("report"), JSON: c.Bool("json"), Plot: c.String("plot")},
		report.QUICOptions{Start: start, Agent: agent, Every: c.Duration("report"), JSON: c.Bool("json")})
}
