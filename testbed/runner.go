package testbed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/estimator"
	"github.com/prometheus/procfs"
)

// Runner timings.
const (
	sampleInterval = 100 * time.Millisecond
	clientStagger  = 50 * time.Millisecond
	// stopGrace is how long a process has to end after SIGINT before SIGKILL.
	stopGrace = 2 * time.Second
)

// IterationSummary is summary.json of one iteration folder.
type IterationSummary struct {
	TestName   string           `json:"test_name"`
	Iteration  int              `json:"iteration"`
	Started    time.Time        `json:"started"`
	Ended      string           `json:"ended"` // "clients ended", "max_test_duration", "interrupted", or an error
	ServerAddr string           `json:"server_addr"`
	Processes  []ProcessSummary `json:"processes"`
}

// ProcessSummary is one process of an iteration.
type ProcessSummary struct {
	Role     string                    `json:"role"` // "server" or "client"
	Host     string                    `json:"host"`
	Index    int                       `json:"index"` // 0 for the server; per host for clients
	PID      int                       `json:"pid"`
	ExitCode int                       `json:"exit_code"` // -1 when a signal ended it
	Summary  estimator.ResourceSummary `json:"summary"`
}

// ProcessSeries is one entry of series.json.
type ProcessSeries struct {
	Role   string              `json:"role"`
	Host   string              `json:"host"`
	Index  int                 `json:"index"`
	Series dump.ResourceSeries `json:"series"`
}

// Run runs every iteration of s on a fresh star testbed each, and returns the results
// folders it wrote under resultsDir. When ctx ends (Ctrl-C) it stops the processes,
// writes what the current iteration collected, and returns the folders so far with an
// error.
func Run(ctx context.Context, s *Scenario, resultsDir string, log io.Writer) ([]string, error) {
	if err := CheckPrivileges(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(resultsDir, 0o755); err != nil {
		return nil, fmt.Errorf("make results folder: %w", err)
	}
	var dirs []string
	for k := 1; k <= s.Iterations; k++ {
		if k > 1 && s.PauseBetween > 0 {
			fmt.Fprintf(log, "pause %v\n", s.PauseBetween)
			select {
			case <-ctx.Done():
			case <-time.After(s.PauseBetween):
			}
		}
		if ctx.Err() != nil {
			return dirs, fmt.Errorf("interrupted before iteration %d of %d", k, s.Iterations)
		}
		dir, err := runIteration(ctx, s, k, resultsDir, log)
		if dir != "" {
			dirs = append(dirs, dir)
		}
		if err != nil {
			return dirs, fmt.Errorf("iteration %d of %d: %w", k, s.Iterations, err)
		}
		if ctx.Err() != nil {
			return dirs, fmt.Errorf("interrupted in iteration %d of %d", k, s.Iterations)
		}
	}
	return dirs, nil
}

// starName derives the star's testbed name from the test name.
func starName(test string) string {
	n := strings.ReplaceAll(test, ".", "_")
	if len(n) > 24 {
		n = n[:24]
	}
	return n
}

// hosts lists the star's hosts: the server's first, then the client hosts not already in.
func (s *Scenario) hosts() []string {
	hs := []string{s.ServerHost}
	for _, h := range s.ClientHosts {
		if h != s.ServerHost {
			hs = append(hs, h)
		}
	}
	return hs
}

func runIteration(ctx context.Context, s *Scenario, k int, resultsDir string, log io.Writer) (dir string, err error) {
	started := time.Now()
	star, err := UpStar(StarConfig{Name: starName(s.TestName), Hosts: s.hosts(),
		Rate: s.Testbed.Rate, Burst: s.Testbed.Burst, Limit: s.Testbed.Limit, MTU: s.Testbed.MTU})
	if err != nil {
		return "", err
	}
	defer func() {
		if derr := star.Down(); derr != nil {
			err = errors.Join(err, derr)
		}
	}()
	// One watch per iteration: it keeps the totals of exited pids, which a reused pid
	// of a later iteration would add to.
	sched, serr := collector.NewSchedWatch()
	if serr != nil {
		if k == 1 {
			fmt.Fprintf(log, "no eBPF scheduler accounting (%v); /proc figures only\n", serr)
		}
		sched = nil
	} else {
		defer sched.Close()
	}

	dir = filepath.Join(resultsDir, fmt.Sprintf("%s_iter%d_%s", s.TestName, k, started.Format("20060102T150405")))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("make iteration folder: %w", err)
	}
	srv, _ := star.Host(s.ServerHost)
	sum := IterationSummary{TestName: s.TestName, Iteration: k, Started: started, ServerAddr: srv.Addr.String()}
	fmt.Fprintf(log, "iteration %d/%d: server on %s at %s, %d clients on %d hosts -> %s\n",
		k, s.Iterations, s.ServerHost, srv.Addr, s.ClientsPerHost*len(s.ClientHosts), len(s.ClientHosts), dir)

	var procs []*proc
	ended, runErr := func() (string, error) {
		p, err := startProc(srv, "server", 0, s.ServerBinary, Argv(s.ServerArgs, srv.Addr), dir, sched)
		if err != nil {
			return "", err
		}
		procs = append(procs, p)
		if !sleepCtx(ctx, s.ServerWarmup) {
			return "interrupted", nil
		}
		var clients []*proc
		for i := 0; i < s.ClientsPerHost; i++ {
			for _, hn := range s.ClientHosts {
				if len(clients) > 0 && !sleepCtx(ctx, clientStagger) {
					return "interrupted", nil
				}
				h, _ := star.Host(hn)
				p, err := startProc(h, "client", i, s.ClientBinary, Argv(s.ClientArgs, srv.Addr), dir, sched)
				if err != nil {
					return "", err
				}
				procs = append(procs, p)
				clients = append(clients, p)
			}
		}
		clientsDone := make(chan struct{})
		go func() {
			for _, c := range clients {
				<-c.exited
			}
			close(clientsDone)
		}()
		var limit <-chan time.Time
		if s.MaxTestDuration > 0 {
			t := time.NewTimer(s.MaxTestDuration)
			defer t.Stop()
			limit = t.C
		}
		select {
		case <-clientsDone:
			return "clients ended", nil
		case <-limit:
			return "max_test_duration", nil
		case <-ctx.Done():
			return "interrupted", nil
		}
	}()
	if runErr != nil {
		ended = runErr.Error()
	}
	stopAll(procs)
	for _, p := range procs {
		<-p.sampled
	}
	sum.Ended = ended
	if err := writeResults(dir, sum, procs); err != nil {
		return dir, errors.Join(runErr, err)
	}
	fmt.Fprintf(log, "iteration %d/%d: %s after %.1f s\n", k, s.Iterations, ended, time.Since(started).Seconds())
	return dir, runErr
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// proc is one started process and its sampler.
type proc struct {
	role  string
	host  string
	index int
	cmd   *exec.Cmd

	exited  chan struct{} // closed once Wait returned
	sampled chan struct{} // closed once series is final
	series  dump.ResourceSeries
}

func (p *proc) base() string {
	if p.role == "server" {
		return "server"
	}
	return fmt.Sprintf("client-%s-%d", p.host, p.index)
}

// startProc starts bin in h's namespace with stdout and stderr going to files in dir,
// in its own process group so that the run, not the terminal, decides when it stops.
func startProc(h *Host, role string, index int, bin string, args []string, dir string, sched *collector.SchedWatch) (*proc, error) {
	p := &proc{role: role, host: h.Name, index: index, exited: make(chan struct{}), sampled: make(chan struct{})}
	out, err := os.Create(filepath.Join(dir, p.base()+".stdout"))
	if err != nil {
		return nil, err
	}
	errf, err := os.Create(filepath.Join(dir, p.base()+".stderr"))
	if err != nil {
		out.Close()
		return nil, err
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = out, errf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := h.Start(p.cmd); err != nil {
		out.Close()
		errf.Close()
		return nil, fmt.Errorf("%s %s: %w", role, p.base(), err)
	}
	pid := p.cmd.Process.Pid
	p.series = dump.ResourceSeries{Name: p.base(), PID: pid}
	if sched != nil {
		// The process already runs: the eBPF accounting misses its first instants
		// (probe watch holds its command on a pipe to see them; the runner does not).
		// Its children join the watch, but only its own totals go into its series.
		if err := sched.Watch(uint32(pid)); err != nil {
			sched = nil
		}
	}
	go func() {
		p.cmd.Wait()
		out.Close()
		errf.Close()
		close(p.exited)
	}()
	go p.sample(sched)
	return p, nil
}

// sample records the process every sampleInterval until it exits, then adds the
// kernel's final account of its CPU time.
func (p *proc) sample(sched *collector.SchedWatch) {
	defer close(p.sampled)
	pid := p.series.PID
	start := time.Now()
	addSched := func(s *dump.ResourceSample) {
		if sched == nil {
			return
		}
		if st, ok := sched.Process(uint32(pid)); ok {
			s.OnCPU, s.Voluntary, s.Involuntary, s.RunQueue = st.OnCPU, st.Voluntary, st.Involuntary, st.RunQueue
		}
	}
	take := func() {
		ps, err := collector.ReadProcStat(pid)
		if err != nil {
			return
		}
		s := dump.ResourceSample{T: time.Since(start), User: ps.User, System: ps.System, RSS: ps.RSS, PeakRSS: ps.PeakRSS, Threads: ps.Threads}
		addSched(&s)
		// /proc/PID/net is the process's own namespace: its testbed host's interfaces.
		if pr, err := procfs.NewProc(pid); err == nil {
			if nd, err := pr.NetDev(); err == nil {
				s.Net = make(map[string]dump.IfCounters, len(nd))
				for name, c := range nd {
					s.Net[name] = dump.IfCounters{RxBytes: c.RxBytes, RxPackets: c.RxPackets, RxDrops: c.RxDropped,
						TxBytes: c.TxBytes, TxPackets: c.TxPackets, TxDrops: c.TxDropped}
				}
			}
		}
		p.series.Samples = append(p.series.Samples, s)
	}
	take()
	t := time.NewTicker(sampleInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			take()
			continue
		case <-p.exited:
		}
		break
	}
	var last dump.ResourceSample
	if n := len(p.series.Samples); n > 0 {
		last = p.series.Samples[n-1]
	}
	last.T = time.Since(start)
	if ru, ok := p.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		last.User = time.Duration(ru.Utime.Nano())
		last.System = time.Duration(ru.Stime.Nano())
		last.PeakRSS = max(last.PeakRSS, uint64(ru.Maxrss)*1024)
	}
	addSched(&last)
	p.series.Samples = append(p.series.Samples, last)
}

// stopAll sends SIGINT to every process group still running, and SIGKILL to those
// still there stopGrace later.
func stopAll(procs []*proc) {
	var running []*proc
	for _, p := range procs {
		select {
		case <-p.exited:
		default:
			syscall.Kill(-p.cmd.Process.Pid, syscall.SIGINT)
			running = append(running, p)
		}
	}
	deadline := time.NewTimer(stopGrace)
	defer deadline.Stop()
	for _, p := range running {
		select {
		case <-p.exited:
			continue
		case <-deadline.C:
		}
		for _, q := range running {
			select {
			case <-q.exited:
			default:
				syscall.Kill(-q.cmd.Process.Pid, syscall.SIGKILL)
			}
		}
		break
	}
	for _, p := range running {
		<-p.exited
	}
}

func writeResults(dir string, sum IterationSummary, procs []*proc) error {
	var series []ProcessSeries
	for _, p := range procs {
		series = append(series, ProcessSeries{Role: p.role, Host: p.host, Index: p.index, Series: p.series})
		sum.Processes = append(sum.Processes, ProcessSummary{
			Role: p.role, Host: p.host, Index: p.index, PID: p.series.PID,
			ExitCode: p.cmd.ProcessState.ExitCode(),
			Summary:  estimator.SummariseResources(p.series),
		})
	}
	if err := writeJSON(filepath.Join(dir, "series.json"), struct {
		Processes []ProcessSeries `json:"processes"`
	}{series}); err != nil {
		return err
	}
	return writeJSON(filepath.Join(dir, "summary.json"), sum)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", filepath.Base(path), err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}
