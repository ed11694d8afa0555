package main

import (
	"errors"
	"os"

	"github.com/probe-dev/probe/cmd/internal/report"
	"github.com/urfave/cli/v2"
)

func reportCommand() *cli.Command {
	return &cli.Command{
		Name:      "report",
		Usage:     "aggregate a scenario's iterations: mean, sample standard deviation and n of every resource metric, per role",
		UsageText: `probe report [--json] "results/NAME_iter*"`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print as JSON, with every iteration's value"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return errors.New(`give the iteration folders: probe report "results/NAME_iter*"`)
			}
			s, err := report.LoadScenario(c.Args().Slice()...)
			if err != nil {
				return err
			}
			return report.ResourceReport(os.Stdout, s, c.Bool("json"))
		},
	}
}

func compareCommand() *cli.Command {
	return &cli.Command{
		Name:      "compare",
		Usage:     "compare two scenarios metric by metric: improvement % (positive: A is better) and Welch's p",
		UsageText: `probe compare [--csv] [--plot DIR] "results/A_iter*" "results/B_iter*"`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "csv", Usage: "print as CSV"},
			&cli.StringFlag{Name: "plot", Usage: "draw bars with error bars and CPU, memory and network over time into this folder (PNG and SVG)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 2 {
				return errors.New(`give two quoted patterns (unquoted, the shell expands them): probe compare "results/A_iter*" "results/B_iter*"`)
			}
			a, err := report.LoadScenario(c.Args().Get(0))
			if err != nil {
				return err
			}
			b, err := report.LoadScenario(c.Args().Get(1))
			if err != nil {
				return err
			}
			return report.ResourceCompare(os.Stdout, a, b, report.CompareOptions{CSV: c.Bool("csv"), PlotDir: c.String("plot")})
		},
	}
}
