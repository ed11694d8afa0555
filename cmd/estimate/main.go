// Command estimate re-runs the estimator on a dump written by
// `probe measure -w`, offline, optionally with other settings.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/probe-dev/probe/cmd/internal/report"
	"github.com/probe-dev/probe/collector/dump"
	"github.com/urfave/cli/v2"
)

func main() {
	// estimate reads a dump once and keeps nearly all of it: collecting
	// garbage only costs time until the heap nears a limit.
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(2 << 30)
	if err := app().Run(os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "estimate: %v\n", err)
		os.Exit(1)
	}
}

func app() *cli.App {
	return &cli.App{
		Name:            "estimate",
		Usage:           "estimate from a probe dump, offline",
		UsageText:       "estimate -r dump.msgpack [-b BINWIDTH] [--ts-source SOURCE] [-f FORMAT] [--json] [--plot FILE]",
		HideHelpCommand: true,
		ExitErrHandler:  func(*cli.Context, error) {},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return fmt.Errorf("%w (see estimate --help)", err)
		},
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "read", Aliases: []string{"r"}, Required: true, Usage: "dump file written by probe measure -w"},
			&cli.StringFlag{Name: "ts-source", Value: "auto", Usage: "timestamps to compute with: auto, hw, ebpf, sw, user"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
			&cli.BoolFlag{Name: "csv", Usage: "echo: print CSV, a row per measurement"},
			&cli.Float64Flag{Name: "bin-width", Aliases: []string{"b"}, Usage: "capacity: histogram bin width, Mbit/s (default: from the preliminary trains)"},
			&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Usage: "capacity: print through this format: " + strings.ReplaceAll(report.FormatTokens, "\n", " ")},
			&cli.StringFlag{Name: "plot", Usage: "capacity: draw the dispersion histogram to this .png or .svg; echo: draw plots into this directory"},
		},
		Action: estimate,
	}
}

// dumpFlagModes are the flags that apply to one kind of dump only; given
// for another, they are an error rather than ignored.
var dumpFlagModes = map[string]dump.Mode{"csv": dump.ModeEcho, "bin-width": dump.ModeCapacity, "format": dump.ModeCapacity}

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
	for name, mode := range dumpFlagModes {
		if c.IsSet(name) && h.Mode != mode {
			return fmt.Errorf("%s: --%s does not apply to a %s dump (it is for %s)", path, name, h.Mode, mode)
		}
	}
	var points []report.EchoMeasurement
	var trains []dump.Train
	if st, err := f.Stat(); err == nil {
		// A train record takes ~40 bytes: size the slice once rather than
		// copying a million trains as it grows.
		trains = make([]dump.Train, 0, st.Size()/40)
	}
	var end *dump.End
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, dump.ErrTruncated) && len(points)+len(trains) > 0 {
			// What was read is still a measurement; say what is missing.
			fmt.Fprintf(os.Stderr, "estimate: %s: %v; estimating from the records read\n", path, err)
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		switch {
		case rec.Point != nil:
			points = append(points, report.EchoMeasurement{Point: *rec.Point})
		case rec.Echo != nil:
			if len(points) == 0 { // a dump of one measurement without its point
				info := report.EchoInfoFromMeta(h.Meta)
				points = append(points, report.EchoMeasurement{Point: dump.EchoPoint{Size: info.Size, Wait: info.Interval, Count: info.Count, IPHeader: 28}})
			}
			last := &points[len(points)-1]
			last.Records = append(last.Records, *rec.Echo)
		case rec.Train != nil:
			trains = append(trains, *rec.Train)
		case rec.End != nil:
			end = rec.End
		}
	}
	switch h.Mode {
	case dump.ModeEcho:
		format := "text"
		if c.Bool("json") {
			format = "json"
		} else if c.Bool("csv") {
			format = "csv"
		}
		info := report.EchoInfoFromMeta(h.Meta)
		if info.Start.Time == "" {
			info.Start.Time = h.Created.UTC().Format(time.RFC3339Nano)
		}
		return report.Echo(os.Stdout, info, points, src, format, c.String("plot"))
	case dump.ModeCapacity:
		info := report.CapacityInfoFromMeta(h.Meta)
		if info.Start.Time == "" {
			info.Start.Time = h.Created.UTC().Format(time.RFC3339Nano)
		}
		if end == nil {
			fmt.Fprintf(os.Stderr, "estimate: %s: the run was cut short (no closing record); estimating from its %d trains\n", path, len(trains))
		} else {
			info.Duration, info.Interrupted = end.Duration, end.Interrupted
		}
		est, err := report.EstimateCapacity(trains, src, c.Float64("bin-width"))
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		return report.Capacity(os.Stdout, c.String("format"), c.Bool("json"), c.String("plot"), info, est)
	}
	return fmt.Errorf("%s: a %q dump; this build reads echo and capacity dumps", path, h.Mode)
}
