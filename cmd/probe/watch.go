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
	"syscall"
	"time"

	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/estimator"
	"github.com/probe-dev/probe/probe"
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
	cfg := probe.WatchConfig{Interval: c.Duration("interval")}
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

	exited := make(chan struct{})
	var cmd *exec.Cmd
	name := fmt.Sprintf("pid %d", pid)
	if pid == 0 {
		// Held until the eBPF side watches it, so that nothing it does
		// goes uncounted.
		cmd = exec.Command(args[0], args[1:]...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stderr, os.Stderr
		release, err := collector.StartHeld(cmd, nil)
		if err != nil {
			return fmt.Errorf("start %s: %w", args[0], err)
		}
		pid, name = cmd.Process.Pid, args[0]
		if cfg.Sched != nil {
			if err := cfg.Sched.Watch(uint32(pid)); err != nil {
				release(false)
				cmd.Wait()
				return err
			}
		}
		if err := release(true); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return err
		}
		go func() {
			cmd.Wait()
			close(exited)
		}()
	} else {
		if cfg.Sched != nil {
			if err := cfg.Sched.Watch(uint32(pid)); err != nil {
				return err
			}
		}
		go func() {
			for syscall.Kill(pid, 0) == nil {
				time.Sleep(cfg.Interval)
			}
			close(exited)
		}()
	}
	series, err := probe.Watch(ctx, name, pid, exited, cfg)
	if err != nil {
		return err
	}
	if cfg.Sched != nil {
		if msg := cfg.Sched.LostWarning(); msg != "" {
			fmt.Fprintln(os.Stderr, "probe:", msg)
		}
	}
	if cmd != nil && cmd.ProcessState != nil && len(series.Samples) > 0 {
		// The kernel's final account of the child's CPU: /proc has no last
		// look. (Its ru_maxrss would count the shim before exec; VmHWM,
		// reset by exec, stands.)
		last := &series.Samples[len(series.Samples)-1]
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			last.User = time.Duration(ru.Utime.Nano())
			last.System = time.Duration(ru.Stime.Nano())
		}
	}
	return printWatch(c, series)
}

func printWatch(c *cli.Context, series dump.ResourceSeries) error {
	s := estimator.SummariseResources(series)
	if c.Bool("json") {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Summary estimator.ResourceSummary `json:"summary"`
			Series  dump.ResourceSeries       `json:"series"`
		}{s, series})
	}
	fmt.Printf("%s (pid %d), %d samples over %.2f s\n", series.Name, series.PID, len(series.Samples), s.Duration.Seconds())
	fmt.Printf("CPU       average %.1f %%, peak %.1f %% (100 %% = one core); user %.3f s, system %.3f s; on CPU %.3f s (eBPF)\n",
		s.AvgCPU, s.PeakCPU, s.User.Seconds(), s.System.Seconds(), s.OnCPU.Seconds())
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
