package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/probe-dev/probe/monitor"
	"github.com/probe-dev/probe/probe"
	"github.com/urfave/cli/v2"
)

func monitorCommand() *cli.Command {
	return &cli.Command{
		Name:      "monitor",
		Usage:     "run tests on schedules, archive every run, serve /metrics, /probe and web graphs",
		ArgsUsage: "CONFIG.yaml",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "web", Usage: "serve the web graphs on this HOST:PORT (overrides the config's web:)"},
			ebpfFlag(),
		},
		Action: runMonitor,
		Subcommands: []*cli.Command{{
			Name:      "export",
			Usage:     "write the archived runs as CSV or JSON",
			ArgsUsage: "CONFIG.yaml",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "csv", Usage: "csv or json"},
				&cli.StringFlag{Name: "test", Usage: "only this test instance"},
				&cli.DurationFlag{Name: "since", Usage: "only runs scheduled this long ago or later, e.g. 24h"},
			},
			Action: exportMonitor,
		}},
	}
}

func monitorConfig(c *cli.Context) (*monitor.Config, error) {
	if c.NArg() != 1 {
		return nil, errors.New("give one config file: probe monitor CONFIG.yaml")
	}
	return monitor.LoadConfig(c.Args().First())
}

func runMonitor(c *cli.Context) error {
	cfg, err := monitorConfig(c)
	if err != nil {
		return err
	}
	if c.IsSet("web") {
		cfg.Web = c.String("web")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ts, err := openStamper(c.String("ebpf"), log)
	if err != nil {
		return err
	}
	ccfg := probe.ClientConfig{}
	if ts != nil {
		defer ts.Close()
		ccfg.Stamper = ts
	}
	arc, err := monitor.OpenArchive(cfg.Archive)
	if err != nil {
		return err
	}
	defer arc.Close()
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := arc.Sync(ctx, cfg); err != nil {
		return err
	}
	m := monitor.New(cfg, arc, monitor.Options{Dial: monitor.ClientDialer(ccfg), Logger: log})
	errc := make(chan error, 2)
	for _, s := range []struct {
		addr string
		h    http.Handler
		what string
	}{{cfg.Listen, m.Handler(), "metrics"}, {cfg.Web, m.WebHandler(), "web"}} {
		if s.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", s.addr)
		if err != nil {
			return fmt.Errorf("%s: %w", s.what, err)
		}
		srv := &http.Server{Handler: s.h, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10}
		log.Info("serving", "what", s.what, "addr", ln.Addr().String())
		go func() {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s: %w", s.what, err)
			}
		}()
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(sctx)
		}()
	}
	go func() {
		if err := <-errc; err != nil {
			log.Error("server", "err", err)
			stop()
		}
	}()
	return m.Run(ctx)
}

func exportMonitor(c *cli.Context) error {
	cfg, err := monitorConfig(c)
	if err != nil {
		return err
	}
	format, err := monitor.ParseExportFormat(c.String("format"))
	if err != nil {
		return err
	}
	if _, err := os.Stat(cfg.Archive); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	arc, err := monitor.OpenArchive(cfg.Archive)
	if err != nil {
		return err
	}
	defer arc.Close()
	f := monitor.RunFilter{Instance: c.String("test")}
	if d := c.Duration("since"); d > 0 {
		f.From = time.Now().Add(-d)
	}
	return arc.Export(c.Context, os.Stdout, format, f)
}
