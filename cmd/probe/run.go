package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/probe-dev/probe/scenario"
	"github.com/urfave/cli/v2"
)

// runCommand is `probe run scenario.yaml`: a scenario's iterations on testbed namespaces
// and remote hosts.
func runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "run a scenario (server and clients on testbed namespaces or, through their agents, on remote hosts; several iterations) and keep every iteration's results (testbed hosts need root)",
		ArgsUsage: "SCENARIO.yaml",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "results", Value: "results", Usage: "`DIR` that gets one folder per iteration"},
		},
		Action: runScenario,
	}
}

func runScenario(c *cli.Context) error {
	file, results, err := runArgs(c.Args().Slice(), c.String("results"))
	if err != nil {
		return err
	}
	s, err := scenario.Load(file)
	if err != nil {
		return err
	}
	// Ctrl-C stops the processes; what was collected so far is written.
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	dirs, err := scenario.Run(ctx, s, results, os.Stderr)
	for _, d := range dirs {
		fmt.Println(d)
	}
	return err
}

// runArgs takes the scenario file and --results also after it: the cli stops
// parsing flags at the first argument, and `probe run scenario.yaml --results DIR`
// is the order people type.
func runArgs(args []string, results string) (file, dir string, err error) {
	dir = results
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--results" || a == "-results":
			if i+1 == len(args) {
				return "", "", errors.New("--results needs a folder")
			}
			dir = args[i+1]
			i++
		case strings.HasPrefix(a, "--results="):
			dir = strings.TrimPrefix(a, "--results=")
		case file == "":
			file = a
		default:
			return "", "", fmt.Errorf("unexpected argument %q: probe run SCENARIO.yaml [--results DIR]", a)
		}
	}
	if file == "" {
		return "", "", errors.New("give a scenario file: probe run SCENARIO.yaml [--results DIR]")
	}
	return file, dir, nil
}
