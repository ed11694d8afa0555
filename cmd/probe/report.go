package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/probe-dev/probe/cmd/internal/report"
	"github.com/urfave/cli/v2"
)

func reportCommand() *cli.Command {
	return &cli.Command{
		Name:      "report",
		Usage:     "aggregate a scenario's iterations: mean, sample standard deviation and n of every resource metric, per role",
		UsageText: `probe report [--json|--csv] [--plot DIR] [--loopback] "results/NAME_iter*" | results/`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print as JSON (docs/json.md), with every iteration's value"},
			&cli.BoolFlag{Name: "csv", Usage: "print as CSV, a row per role and metric"},
			&cli.StringFlag{Name: "plot", Usage: "draw bars with error bars into this folder (PNG and SVG)"},
			&cli.BoolFlag{Name: "loopback", Usage: "include the lo interface's rates"},
		},
		Action: func(c *cli.Context) error {
			args, err := interspersed(c)
			if err != nil {
				return err
			}
			if len(args) == 0 {
				return errors.New(`give the iteration folders: probe report "results/NAME_iter*", or a results folder`)
			}
			if c.Bool("json") && c.Bool("csv") {
				return errors.New("--json and --csv: choose one")
			}
			s, err := report.LoadScenario(args...)
			if err != nil {
				return err
			}
			return report.ResourceReport(os.Stdout, s, report.ReportOptions{ScenarioOptions: report.ScenarioOptions{Loopback: c.Bool("loopback")},
				JSON: c.Bool("json"), CSV: c.Bool("csv"), PlotDir: c.String("plot")})
		},
	}
}

func compareCommand() *cli.Command {
	return &cli.Command{
		Name:      "compare",
		Usage:     "compare two scenarios metric by metric: improvement % (positive: A is better) and Welch's p",
		UsageText: `probe compare [--json|--csv] [--plot DIR] [--loopback] "results/A_iter*" "results/B_iter*"`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print as JSON (docs/json.md)"},
			&cli.BoolFlag{Name: "csv", Usage: "print as CSV"},
			&cli.StringFlag{Name: "plot", Usage: "draw bars with error bars and CPU, memory and network over time into this folder (PNG and SVG)"},
			&cli.BoolFlag{Name: "loopback", Usage: "include the lo interface's rates"},
		},
		Action: func(c *cli.Context) error {
			args, err := interspersed(c)
			if err != nil {
				return err
			}
			if len(args) != 2 {
				return fmt.Errorf(`give two quoted patterns or folders (unquoted, the shell expands a pattern), got %d: probe compare "results/A_iter*" "results/B_iter*"`, len(args))
			}
			if c.Bool("json") && c.Bool("csv") {
				return errors.New("--json and --csv: choose one")
			}
			a, err := report.LoadScenario(args[0])
			if err != nil {
				return err
			}
			b, err := report.LoadScenario(args[1])
			if err != nil {
				return err
			}
			return report.ResourceCompare(os.Stdout, a, b, report.CompareOptions{ScenarioOptions: report.ScenarioOptions{Loopback: c.Bool("loopback")},
				JSON: c.Bool("json"), CSV: c.Bool("csv"), PlotDir: c.String("plot")})
		},
	}
}

// interspersed takes the command's flags also after its arguments
// (probe report "results/x*" --csv), which urfave/cli leaves as arguments,
// and returns the arguments alone.
func interspersed(c *cli.Context) ([]string, error) {
	var args []string
	rest := c.Args().Slice()
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--" {
			return append(args, rest[i+1:]...), nil
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			args = append(args, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := findFlag(c, name)
		if f == nil {
			return nil, fmt.Errorf("flag provided but not defined: %s (see probe %s --help)", a, c.Command.Name)
		}
		if _, isBool := f.(*cli.BoolFlag); isBool && !hasValue {
			value = "true"
		} else if !hasValue {
			if i+1 >= len(rest) {
				return nil, fmt.Errorf("%s needs a value", a)
			}
			i++
			value = rest[i]
		}
		if err := c.Set(f.Names()[0], value); err != nil {
			return nil, fmt.Errorf("%s: %w", a, err)
		}
	}
	return args, nil
}
