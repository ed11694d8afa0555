package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/probe"
	"github.com/urfave/cli/v2"
)

func serveCommand() *cli.Command {
	d, dc := probe.DefaultLimits(), probe.DefaultConnLimits()
	return &cli.Command{
		Name:  "serve",
		Usage: "run the agent: answer measurement sessions from clients",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Aliases: []string{"l"}, Value: fmt.Sprintf(":%d", probe.DefaultPort), Usage: "control address"},
			keyFileFlag(),
			&cli.BoolFlag{Name: "allow-run", Usage: "let clients with the key run commands here (the remote hosts of probe run scenarios); needs --key-file"},
			ebpfFlag(),
			&cli.IntFlag{Name: "max-sessions", Value: d.MaxSessions, Usage: "concurrent sessions, whole agent"},
			&cli.DurationFlag{Name: "max-duration", Value: d.MaxDuration, Usage: "longest session"},
			&cli.IntFlag{Name: "max-packets", Value: d.MaxPackets, Usage: "most packets in one session"},
			&cli.IntFlag{Name: "max-rate", Value: d.MaxRate, Usage: "most packets per second in one session"},
			&cli.Int64Flag{Name: "max-bytes", Value: d.MaxBytes, Usage: "tcp and quic: most stream bytes in one session, both ways"},
			&cli.IntFlag{Name: "max-conns", Value: dc.MaxConns, Usage: "connections open at once, all clients: control and QUIC perf (--quic-perf)"},
			&cli.IntFlag{Name: "max-conns-per-source", Value: dc.MaxConnsPerSource, Usage: "connections open at once from one IP address, control and QUIC perf"},
			&cli.IntFlag{Name: "max-preauth", Value: dc.MaxPreAuth, Usage: "connections in their handshake at once (control: until authenticated; QUIC perf: until the QUIC handshake completes)"},
			&cli.IntFlag{Name: "preauth-frame", Value: dc.PreAuthFrame, Usage: "largest frame read before the handshake ends, bytes"},
			&cli.DurationFlag{Name: "handshake-timeout", Value: dc.HandshakeTimeout, Usage: "from connect to authenticated"},
			&cli.DurationFlag{Name: "idle-timeout", Value: dc.IdleTimeout, Usage: "close a control connection without a session for this long"},
			&cli.IntFlag{Name: "max-sessions-per-client", Value: dc.MaxSessionsPerSource, Usage: "sessions running at once for one IP address"},
			&cli.DurationFlag{Name: "session-start-timeout", Value: dc.SessionStartTimeout, Usage: "end a session its client has not started (no probe, stream or start) this long after it opened"},
			&cli.DurationFlag{Name: "write-timeout", Value: dc.WriteTimeout, Usage: "close a control connection whose client has not taken a frame for this long"},
			&cli.StringSliceFlag{Name: "allow-sockopt", Usage: "let clients set these socket options too, NAME,... (beyond " + strings.Join(probe.SafeSockOpts, ",") + ", held to the system's limits)"},
			&cli.StringFlag{Name: "cert", Usage: "certificate (PEM) of the control connection and QUIC sessions; default: a self-signed one made at start"},
			&cli.StringFlag{Name: "key", Usage: "the --cert's private key (PEM)"},
			&cli.StringFlag{Name: "quic-perf", Usage: "quic: also answer any QUIC perf client (draft-banks-quic-performance) on this UDP address, e.g. :4433, " +
				"each connection held to one session's limits; off by default, as no control connection vouches for them"},
		},
		Action: func(c *cli.Context) error {
			key, err := readKey(c)
			if err != nil {
				return err
			}
			if c.Bool("allow-run") && key == nil {
				return errors.New("--allow-run needs --key-file: the agent runs commands only for clients that hold its key")
			}
			cfg := probe.ServerConfig{
				Key: key,
				Limits: probe.Limits{
					MaxSessions: c.Int("max-sessions"), MaxDuration: c.Duration("max-duration"),
					MaxPackets: c.Int("max-packets"), MaxRate: c.Int("max-rate"), MaxBytes: c.Int64("max-bytes"),
				},
				Conn: probe.ConnLimits{
					MaxConns: c.Int("max-conns"), MaxConnsPerSource: c.Int("max-conns-per-source"), MaxPreAuth: c.Int("max-preauth"),
					PreAuthFrame: c.Int("preauth-frame"), HandshakeTimeout: c.Duration("handshake-timeout"), IdleTimeout: c.Duration("idle-timeout"),
					MaxSessionsPerSource: c.Int("max-sessions-per-client"), SessionStartTimeout: c.Duration("session-start-timeout"),
					WriteTimeout: c.Duration("write-timeout"),
				},
				AllowSockOpts: sockOptNames(c.StringSlice("allow-sockopt")),
				Logger:        slog.New(slog.NewTextHandler(os.Stderr, nil)),
				// Run sessions account with eBPF unless --ebpf off.
				AllowRun: c.Bool("allow-run"), RunSched: c.String("ebpf") != "off",
			}
			if err := probe.CheckSockOptNames(cfg.AllowSockOpts); err != nil {
				return fmt.Errorf("--allow-sockopt: %w", err)
			}
			if cfg.QUICCert, err = quicCert(c); err != nil {
				return err
			}
			quicQuiet()
			ts, err := openStamper(c.String("ebpf"), cfg.Logger)
			if err != nil {
				return err
			}
			if ts != nil {
				defer ts.Close() // detaches every program
				cfg.Stamper = ts
			}
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			ln, err := net.Listen("tcp", c.String("listen"))
			if err != nil {
				return fmt.Errorf("listen on %s: %w", c.String("listen"), err)
			}
			srv := probe.NewServer(cfg)
			sum, err := srv.QUICFingerprint()
			if err != nil {
				return err
			}
			cfg.Logger.Info("agent listening", "addr", ln.Addr().String(), "ebpf", ts != nil, "auth", len(key) > 0, "run", cfg.AllowRun,
				"quic_cert", probe.FormatFingerprint(sum))
			if addr := c.String("quic-perf"); addr != "" {
				udp, warns, err := probe.ListenQUIC(addr)
				if err != nil {
					return err
				}
				for _, w := range warns {
					cfg.Logger.Warn(w)
				}
				// Perf clients have no control connection, so no key proof:
				// say so, whatever --key-file says.
				cfg.Logger.Warn("answering QUIC perf clients without authentication: --quic-perf bypasses --key-file; "+
					"each address is validated with a QUIC Retry before the agent answers it",
					"addr", udp.LocalAddr().String(), "key_file_set", len(key) > 0)
				go func() {
					if err := srv.ServePerf(ctx, udp); err != nil {
						cfg.Logger.Error("QUIC perf server", "err", err)
					}
				}()
			}
			go logState(ctx, srv, cfg.Logger)
			err = srv.Serve(ctx, ln)
			cfg.Logger.Info("agent stopped")
			return err
		},
	}
}

// logState logs what the agent holds on every SIGUSR1, for an operator (or
// a benchmark) to watch it without stopping it.
func logState(ctx context.Context, srv *probe.Server, log *slog.Logger) {
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	for {
		select {
		case <-ctx.Done():
			return
		case <-usr1:
			st := srv.Stats()
			log.Info("agent state", "goroutines", runtime.NumGoroutine(), "conns", st.Conns, "preauth", st.PreAuth, "sessions", st.Sessions)
		}
	}
}

// sockOptNames splits NAME,NAME lists as repeated flags give them.
func sockOptNames(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, n := range strings.Split(v, ",") {
			if n = strings.TrimSpace(n); n != "" {
				out = append(out, n)
			}
		}
	}
	return out
}

// quicCert loads --cert and --key; nil when neither is given.
func quicCert(c *cli.Context) (*tls.Certificate, error) {
	cert, key := c.String("cert"), c.String("key")
	switch {
	case cert == "" && key == "":
		return nil, nil
	case cert == "" || key == "":
		return nil, fmt.Errorf("--cert and --key go together")
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, fmt.Errorf("load --cert/--key: %w", err)
	}
	return &pair, nil
}

func keyFileFlag() cli.Flag {
	return &cli.StringFlag{Name: "key-file", EnvVars: []string{"PROBE_KEY_FILE"},
		Usage: "pre-shared key file: sessions are authenticated with HMAC-SHA256"}
}

func readKey(c *cli.Context) ([]byte, error) {
	path := c.String("key-file")
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	if len(b) < 16 {
		return nil, fmt.Errorf("key file %s holds %d bytes; use at least 16 (e.g. head -c 32 /dev/urandom > %s)", path, len(b), path)
	}
	return b, nil
}

func ebpfFlag() cli.Flag {
	return &cli.StringFlag{Name: "ebpf", Value: "auto",
		Usage: "eBPF timestamps: auto (use when the kernel allows, say so otherwise), on (required), off"}
}

// openStamper loads the TC timestamper as the --ebpf mode asks; nil means
// software timestamps only.
func openStamper(mode string, log *slog.Logger) (*collector.Timestamper, error) {
	switch mode {
	case "off":
		return nil, nil
	case "auto", "on":
	default:
		return nil, fmt.Errorf("--ebpf %q: want auto, on or off", mode)
	}
	ts, err := collector.NewTimestamper()
	if err == nil {
		return ts, nil
	}
	if mode == "on" {
		return nil, fmt.Errorf("%w; or use --ebpf auto to fall back to software timestamps", err)
	}
	if log != nil {
		log.Warn("eBPF timestamps off, software timestamps only", "reason", err)
	}
	return nil, nil
}
