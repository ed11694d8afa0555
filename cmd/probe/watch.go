package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/estimator"
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
			&cli.BoolFlag{Name: "json", Usage: "print the summary and every sample as JSON"},
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
	if err := printWatch(c, series, exit, started); err != nil {
		return err
	}
	if started && exit.Code != 0 {
		return cli.Exit("", exit.Code) // the command's status is probe's own
	}
	return nil
}

// printWatch prints the summary; exited says the command was ours and ended
// with exit.
func printWatch(c *cli.Context, series dump.ResourceSeries, exit resources.Exit, exited bool) error {
	s := estimator.SummariseResources(series)
	if c.Bool("json") {
		var code *int
		if exited {
			code = &exit.Code
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Summary  estimator.ResourceSummary `json:"summary"`
			ExitCode *int                      `json:"exit_code,omitempty"`
			Series   dump.ResourceSeries       `json:"series"`
		}{s, code, series})
	}
	ended := ""
	if exited {
		ended = ", " + exit.String()
	}
	fmt.Printf("%s (pid %d)%s, %d samples over %.2f s\n", series.Name, series.PID, ended, len(series.Samples), s.Duration.Seconds())
	fmt.Printf("CPU       average %.1f %%, peak %.1f %% over %v (100 %% = one core; %s); user %.3f s, system %.3f s; on CPU %.3f s (eBPF)\n",
		s.AvgCPU, s.PeakCPU, s.PeakWindow.Round(time.Millisecond), cpuSource(s.CPUSource), s.User.Seconds(), s.System.Seconds(), s.OnCPU.Seconds())
	fmt.Printf("memory    RSS average %.1f MiB, peak %.1f MiB\n", float64(s.AvgRSS)/(1<<20), float64(max(s.PeakRSS, s.MaxRSS))/(1<<20))
	fmt.Printf("switches  voluntary %d, involuntary %d; run-queue latency p50 %v, p99 %v\n",
		s.Voluntary, s.Involuntary, s.RunQueueP50, s.RunQueueP99)
	names := slices.Sorted(maps.Keys(s.Net))
	for _, n := range names {
		ifc := s.Net[n]
		if ifc.Rx.Packets+ifc.Tx.Packets == 0 {
			continue
		}
		fmt.Printf("net %-8s rx %.0f pkt/s (peak %.0f), %.0f B/s (peak %.0f); tx %.0f pkt/s (peak %.0f), %.0f B/s (peak %.0f)\n",
			n, ifc.Rx.AvgPktRate, ifc.Rx.PeakPktRate, ifc.Rx.AvgByteRate, ifc.Rx.PeakByteRate,
			ifc.Tx.AvgPktRate, ifc.Tx.PeakPktRate, ifc.Tx.AvgByteRate, ifc.Tx.PeakByteRate)
	}
	return nil
}

func cpuSource(src estimator.CPUSource) string {
	if src == estimator.CPUFromProc {
		return "from /proc, in 10 ms steps"
	}
	return "on-CPU time from eBPF"
}
