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
	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/resources"
	"github.com/urfave/cli/v2"
)

func watchCommand() *cli.Command {
	return &cli.Command{
		Name:      "watch",
		Usage:     "run a command (or attach to a process) and report what it costs: CPU, memory, switches, run-queue latency, network",
		UsageText: "probe watch [--interval 100ms] [--json] -- CMD ARGS...\nprobe watch --pid N",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "pid", Usage: "watch this running process instead of starting one"},
			&cli.DurationFlag{Name: "interval", Value: 100 * time.Millisecond, Usage: "sampling interval"},
			&cli.BoolFlag{Name: "json", Usage: "print the summary and every sample as JSON (docs/json.md)"},
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
	if err := printWatch(c, series, exit, started, cfg.Sched != nil); err != nil {
		return err
	}
	if started && exit.Code != 0 {
		return cli.Exit("", exit.Code) // the command's status is probe's own
	}
	return nil
}

// printWatch prints the summary; exited says the command was ours and ended
// with exit.
func printWatch(c *cli.Context, series dump.ResourceSeries, exit resources.Exit, exited, ebpf bool) error {
	o := report.WatchOptions{Start: startOf(nil, ebpf), JSON: c.Bool("json"), Loopback: c.Bool("loopback")}
	if exited {
		o.Exit, o.ExitText = &exit.Code, exit.String()
	}
	return report.Watch(os.Stdout, series, ebpf, o)
}
