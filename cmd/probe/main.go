// Command probe is the agent (probe serve), its client (probe measure), and
// the embedded network-namespace testbed (probe testbed).
package main

import (
	"fmt"
	"os"

	"github.com/probe-dev/probe/collector"
	"github.com/urfave/cli/v2"
)

func main() {
	collector.RunIfHeld() // the shim of commands started held (probe watch, probe run)
	if err := app().Run(os.Args); err != nil {
		code := 1
		if ec, ok := err.(cli.ExitCoder); ok {
			code = ec.ExitCode() // e.g. testbed exec passes its command's code on
		}
		if msg := err.Error(); msg != "" {
			fmt.Fprintf(os.Stderr, "probe: %s\n", msg)
		}
		os.Exit(code)
	}
}

func app() *cli.App {
	// -h names the host, as in every measurement tool since ping.
	cli.HelpFlag = &cli.BoolFlag{Name: "help", Usage: "show help"}
	version, _ := buildInfo()
	cmds := []*cli.Command{serveCommand(), measureCommand(), watchCommand(), testbedCommand(), runCommand(), reportCommand(), compareCommand(), monitorCommand(),
		manCommand(), completionCommand()}
	withUsageErrors(cmds)
	return &cli.App{
		Name:                 "probe",
		Usage:                "measure network paths with kernel timestamps",
		Version:              version,
		EnableBashCompletion: true,
		ExitErrHandler:       func(*cli.Context, error) {}, // main prints errors, once
		OnUsageError:         usageError,
		CommandNotFound: func(c *cli.Context, name string) {
			fmt.Fprintf(os.Stderr, "probe: unknown command %q (see probe --help)\n", name)
			os.Exit(1)
		},
		Commands: cmds,
	}
}
