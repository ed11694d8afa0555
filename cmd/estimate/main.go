// Command estimate re-runs the estimator on a dump written by
// `probe measure -w`, offline, optionally with other settings.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/probe-dev/probe/cmd/internal/report"
	"github.com/probe-dev/probe/collector/dump"
	"github.com/urfave/cli/v2"
)

func main() {
	if err := app().Run(os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "estimate: %v\n", err)
		os.Exit(1)
	}
}

func app() *cli.App {
	return &cli.App{
		Name:            "estimate",
		Usage:           "estimate from a probe dump, offline",
		UsageText:       "estimate -r dump.msgpack [--ts-source SOURCE] [--json]",
		HideHelpCommand: true,
		ExitErrHandler:  func(*cli.Context, error) {},
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "read", Aliases: []string{"r"}, Required: true, Usage: "dump file written by probe measure -w"},
			&cli.StringFlag{Name: "ts-source", Value: "auto", Usage: "timestamps to compute with: auto, hw, ebpf, sw, user"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
		},
		Action: estimate,
	}
}

func estimate(c *cli.Context) error {
	src, err := report.ParseTSSource(c.String("ts-source"))
	if err != nil {
		return err
	}
	path := c.String("read")
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := dump.NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	h := r.Header()
	if h.Mode != "echo" {
		return fmt.Errorf("%s: a %q dump; this build estimates echo dumps only", path, h.Mode)
	}
	var recs []dump.EchoRecord
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, dump.ErrTruncated) && len(recs) > 0 {
			// What was read is still a measurement; say what is missing.
			fmt.Fprintf(os.Stderr, "estimate: %s: %v; estimating from the %d records read\n", path, err, len(recs))
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if rec.Echo != nil {
			recs = append(recs, *rec.Echo)
		}
	}
	return report.Echo(os.Stdout, report.EchoInfoFromMeta(h.Meta), recs, src, c.Bool("json"))
}
