package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/probe-dev/probe/cmd/internal/report"
	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/resources"
	"github.com/urfave/cli/v2"
)

func watchCommand() *cli.Command {
	return &cli.Command{
		Name:      "watch",
		Usage:     "run a command (or attach to a process) and report what it costs: CPU, memory, switches, run-queue latency, network",
		UsageText: "probe watch [--interval 100ms] [--report 1s] [--quiet|--json|--json-stream] -- CMD ARGS...\nprobe watch --pid N",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "pid", Usage: "watch this running process instead of starting one"},
			&cli.DurationFlag{Name: "interval", Value: 100 * time.Millisecond, Usage: "sampling interval"},
			&cli.DurationFlag{Name: "report", Value: time.Second, Usage: "a live line every this long, as pidstat prints"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no live lines, only the summary"},
			&cli.BoolFlag{Name: "json", Usage: "print the summary and every sample as JSON (docs/json.md)"},
			&cli.BoolFlag{Name: "json-stream", Usage: "print a JSON object a line: the start, each sample as it is taken, the whole document at the end"},
			&cli.BoolFlag{Name: "loopback", Usage: "show the loopback interface too"},
			ebpfFlag(),
		},
		Action: watch,
	}
}

func watch(c *cli.Context) error {
	args := c.Args().Slice()
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	pid := c.Int("pid")
	if (pid == 0) == (len(args) == 0) {
		return errors.New("give a command after -- or --pid, one of the two")
	}
	if c.Bool("json") && c.Bool("json-stream") {
		return errors.New("--json and --json-stream: choose one")
	}
	if c.Duration("report") <= 0 {
		return fmt.Errorf("--report %v: want a duration above 0", c.Duration("report"))
	}
	cfg := resources.Config{Interval: c.Duration("interval")}
	if mode := c.String("ebpf"); mode != "off" {
		sw, err := collector.NewSchedWatch()
		switch {
		case err != nil && mode == "on":
			return fmt.Errorf("%w; or use --ebpf auto to fall back to /proc", err)
		case err != nil:
			fmt.Fprintf(os.Stderr, "probe: no eBPF scheduler accounting (%v); /proc figures only\n", err)
		default:
			defer sw.Close()
			cfg.Sched = sw
			if !sw.RunQueueKnown() {
				fmt.Fprintln(os.Stderr, "probe: no run-queue latency: the kernel keeps no queueing times (CONFIG_SCHED_INFO off)")
			}
		}
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Lines for people go with the text summary; JSON has its stream.
	o := watchOptions(c, cfg.Sched != nil)
	var live *report.WatchLive
	if c.Bool("json-stream") || !c.Bool("json") && !c.Bool("quiet") {
		live = report.NewWatchLive(os.Stdout, c.Duration("report"), cfg.Sched != nil, c.Bool("json-stream"), o)
		cfg.OnSample = live.Sample
	}
	var p *resources.Process
	if pid == 0 {
		// Held until the eBPF side watches it, so that nothing it does
		// goes uncounted. It shares our terminal and process group: a
		// Ctrl-C reaches it as it would without probe.
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stderr, os.Stderr
		cfg.Name = args[0]
		var err error
		if p, err = resources.Start(cmd, cfg); err != nil {
			return fmt.Errorf("start %s: %w", args[0], err)
		}
	} else {
		cfg.Name = fmt.Sprintf("pid %d", pid)
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil {
			cfg.Name = strings.TrimSpace(string(comm))
		}
		var err error
		if p, err = resources.Attach(pid, cfg); err != nil {
			return err
		}
	}
	select {
	case <-p.Exited():
	case <-ctx.Done():
		// A command of ours is asked to end (a Ctrl-C reached it already)
		// and killed if it does not within 2 s; an attached process is
		// left alone.
		if pid != 0 {
			p.Detach()
		} else {
			p.Stop(2 * time.Second)
		}
	}
	series := p.Wait()
	if cfg.Sched != nil {
		if msg := cfg.Sched.LostWarning(); msg != "" {
			fmt.Fprintln(os.Stderr, "probe:", msg)
		}
	}
	exit, started := p.Exit()
	if started {
		o.Exit, o.ExitText = &exit.Code, exit.String()
	}
	var err error
	if c.Bool("json-stream") {
		err = live.End(series, o)
	} else {
		err = report.Watch(os.Stdout, series, cfg.Sched != nil, o)
	}
	if err != nil {
		return err
	}
	if started && exit.Code != 0 {
		return cli.Exit("", exit.Code) // the command's status is probe's own
	}
	return nil
}

// watchOptions are the flags' say on how to print.
func watchOptions(c *cli.Context, ebpf bool) report.WatchOptions {
	return report.WatchOptions{Start: startOf(nil, ebpf), JSON: c.Bool("json"), Loopback: c.Bool("loopback")}
}
