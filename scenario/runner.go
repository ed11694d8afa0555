package scenario

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/estimator"
	"github.com/probe-dev/probe/probe"
	"github.com/probe-dev/probe/resources"
	"github.com/probe-dev/probe/testbed"
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
	Role     string `json:"role"` // "server" or "client"
	Host     string `json:"host"`
	Agent    string `json:"agent,omitempty"` // a remote host's agent
	Index    int    `json:"index"`           // 0 for the server; per host for clients
	PID      int    `json:"pid"`
	ExitCode int    `json:"exit_code"`         // 128+signal when a signal ended it, as shells say
	Exit     string `json:"exit"`              // "exit code 1", "killed by signal 9 (killed)"
	Stopped  bool   `json:"stopped,omitempty"` // the runner stopped it: it had not ended by itself
	// Failed: it ended by itself with a status other than 0, or did not
	// end cleanly when stopped (SIGINT, or SIGKILL after stopGrace, are
	// clean), or its results are incomplete.
	Failed  bool                      `json:"failed,omitempty"`
	Summary estimator.ResourceSummary `json:"summary"`
	// A remote host returns the last probe.MaxRunOutput bytes of each
	// stream; these count the bytes before them.
	StdoutDropped int64  `json:"stdout_dropped,omitempty"`
	StderrDropped int64  `json:"stderr_dropped,omitempty"`
	Error         string `json:"error,omitempty"` // the results are incomplete: why
}

// ProcessSeries is one entry of series.json.
type ProcessSeries struct {
	Role   string              `json:"role"`
	Host   string              `json:"host"`
	Index  int                 `json:"index"`
	Series dump.ResourceSeries `json:"series"`
}

// FailedError is Run's error when every iteration ran but processes failed
// (see ProcessSummary.Failed).
type FailedError struct {
	Failed []string // "iteration 2: client-c1-0: exit code 1"
}

func (e *FailedError) Error() string {
	what := "a process"
	if len(e.Failed) > 1 {
		what = fmt.Sprintf("%d processes", len(e.Failed))
	}
	return fmt.Sprintf("%s failed: %s", what, strings.Join(e.Failed, "; "))
}

// Run runs every iteration of s, on a fresh star testbed each for its testbed hosts
// and through their agents for its remote hosts, and returns the results folders it
// wrote under resultsDir. When ctx ends (Ctrl-C) it stops the processes, writes what
// the current iteration collected, and returns the folders so far with an error.
// Processes that fail do not stop the run: it returns a *FailedError at the end.
func Run(ctx context.Context, s *Scenario, resultsDir string, log io.Writer) ([]string, error) {
	if len(s.hosts()) > 0 {
		if err := testbed.CheckPrivileges(); err != nil {
			return nil, err
		}
	}
	var key []byte
	if s.KeyFile != "" {
		var err error
		if key, err = os.ReadFile(s.KeyFile); err != nil {
			return nil, fmt.Errorf("read key: %w", err)
		}
	}
	if err := os.MkdirAll(resultsDir, 0o755); err != nil {
		return nil, fmt.Errorf("make results folder: %w", err)
	}
	var dirs []string
	var failed []string
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
		dir, fails, err := runIteration(ctx, s, key, k, resultsDir, log)
		for _, f := range fails {
			failed = append(failed, fmt.Sprintf("iteration %d: %s", k, f))
		}
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
	if len(failed) > 0 {
		return dirs, &FailedError{Failed: failed}
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

// hosts lists the star's hosts, the testbed ones: the server's first, then the client
// hosts not already in.
func (s *Scenario) hosts() []string {
	var hs []string
	for _, h := range append([]string{s.ServerHost}, s.ClientHosts...) {
		if !s.IsRemote(h) && !slices.Contains(hs, h) {
			hs = append(hs, h)
		}
	}
	return hs
}

// runIteration runs iteration k and returns its folder and its failed
// processes ("client-c1-0: exit code 1").
func runIteration(ctx context.Context, s *Scenario, key []byte, k int, resultsDir string, log io.Writer) (dir string, failed []string, err error) {
	started := time.Now()
	var star *testbed.Star
	var sched *collector.SchedWatch
	if hosts := s.hosts(); len(hosts) > 0 {
		star, err = testbed.UpStar(testbed.StarConfig{Name: starName(s.TestName), Hosts: hosts,
			Rate: s.Testbed.Rate, Burst: s.Testbed.Burst, Limit: s.Testbed.Limit, MTU: s.Testbed.MTU})
		if err != nil {
			return "", nil, err
		}
		defer func() {
			if derr := star.Down(); derr != nil {
				err = errors.Join(err, derr)
			}
		}()
		// One watch per iteration: it keeps the totals of exited pids, which a
		// reused pid of a later iteration would add to. Remote hosts have
		// their agents' own.
		var serr error
		if sched, serr = collector.NewSchedWatch(); serr != nil {
			if k == 1 {
				fmt.Fprintf(log, "no eBPF scheduler accounting (%v); /proc figures only\n", serr)
			}
			sched = nil
		} else {
			defer func() {
				if msg := sched.LostWarning(); msg != "" {
					fmt.Fprintln(log, msg)
				}
				sched.Close()
			}()
		}
	}

	dir = filepath.Join(resultsDir, fmt.Sprintf("%s_iter%d_%s", s.TestName, k, started.Format("20060102T150405")))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, fmt.Errorf("make iteration folder: %w", err)
	}
	sum := IterationSummary{TestName: s.TestName, Iteration: k, Started: started}
	var procs []*proc
	ended, runErr := func() (string, error) {
		// A remote server's address is the one its agent is reached at.
		var serverIP netip.Addr
		var serverAgent *probe.Client
		if s.IsRemote(s.ServerHost) {
			c, err := dialAgent(ctx, s.Hosts[s.ServerHost], key)
			if err != nil {
				return "", fmt.Errorf("server host %s: %w", s.ServerHost, err)
			}
			serverAgent, serverIP = c, c.AgentAddr()
		} else {
			h, _ := star.Host(s.ServerHost)
			serverIP = h.Addr
		}
		sum.ServerAddr = serverIP.String()
		fmt.Fprintf(log, "iteration %d/%d: server on %s at %s, %d clients on %d hosts -> %s\n",
			k, s.Iterations, s.ServerHost, serverIP, s.ClientsPerHost*len(s.ClientHosts), len(s.ClientHosts), dir)
		start := func(role, host string, index int, agent *probe.Client) error {
			p := &proc{role: role, host: host, index: index}
			bin, args := s.ServerBinary, Argv(s.ServerArgs, serverIP)
			if role == "client" {
				bin, args = s.ClientBinary, Argv(s.ClientArgs, serverIP)
			}
			var err error
			if s.IsRemote(host) {
				if role == "client" {
					bin = s.RemoteClientBinary
				}
				p.agent = s.Hosts[host]
				err = p.startRemote(ctx, agent, key, bin, args)
			} else {
				h, _ := star.Host(host)
				err = p.startLocal(h, bin, args, dir, sched)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", p.base(), err)
			}
			procs = append(procs, p)
			return nil
		}
		if err := start("server", s.ServerHost, 0, serverAgent); err != nil {
			return "", err
		}
		if !sleepCtx(ctx, s.ServerWarmup) {
			return "interrupted", nil
		}
		var clients []*proc
		for i := 0; i < s.ClientsPerHost; i++ {
			for _, hn := range s.ClientHosts {
				if len(clients) > 0 && !sleepCtx(ctx, clientStagger) {
					return "interrupted", nil
				}
				if err := start("client", hn, i, nil); err != nil {
					return "", err
				}
				clients = append(clients, procs[len(procs)-1])
			}
		}
		clientsDone := make(chan struct{})
		go func() {
			for _, c := range clients {
				<-c.exited()
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
	// Every process gets SIGINT at once, and SIGKILL stopGrace later if still there.
	for _, p := range procs {
		p.stop()
	}
	var lost []error
	for _, p := range procs {
		if err := p.wait(dir); err != nil {
			lost = append(lost, fmt.Errorf("%s: %w", p.base(), err))
		}
	}
	sum.Ended = ended
	sum, failed = summarise(sum, procs)
	for _, f := range failed {
		fmt.Fprintf(log, "iteration %d/%d: %s\n", k, s.Iterations, f)
	}
	if err := writeResults(dir, sum, procs); err != nil {
		return dir, failed, errors.Join(runErr, err)
	}
	fmt.Fprintf(log, "iteration %d/%d: %s after %.1f s\n", k, s.Iterations, ended, time.Since(started).Seconds())
	return dir, failed, errors.Join(append([]error{runErr}, lost...)...)
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

// proc is one started process, on a testbed host or on a remote one.
type proc struct {
	role  string
	host  string
	index int
	agent string // a remote host's agent address; "" on a testbed host

	local      *resources.Process
	outf, errf *os.File
	remote     *probe.RemoteProcess
	client     *probe.Client

	stopped bool // stop found it running

	// Set by wait.
	series   dump.ResourceSeries
	exitCode int
	dropped  [2]int64 // of stdout and stderr, by a remote host
	err      error
}

func (p *proc) base() string {
	if p.role == "server" {
		return "server"
	}
	return fmt.Sprintf("client-%s-%d", p.host, p.index)
}

// startLocal starts bin in h's namespace with stdout and stderr going to files in dir,
// watched from its first instruction (resources.Start holds it until sched has it).
func (p *proc) startLocal(h *testbed.Host, bin string, args []string, dir string, sched *collector.SchedWatch) error {
	out, err := os.Create(filepath.Join(dir, p.base()+".stdout"))
	if err != nil {
		return err
	}
	errf, err := os.Create(filepath.Join(dir, p.base()+".stderr"))
	if err != nil {
		out.Close()
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, errf
	p.local, err = resources.Start(cmd, resources.Config{Name: p.base(), Interval: sampleInterval, Sched: sched, Start: h.Start, Group: true})
	if err != nil {
		out.Close()
		errf.Close()
		return err
	}
	p.outf, p.errf = out, errf
	return nil
}

func dialAgent(ctx context.Context, addr string, key []byte) (*probe.Client, error) {
	c, err := probe.Dial(ctx, addr, probe.ClientConfig{Key: key})
	if err != nil {
		return nil, fmt.Errorf("agent %s: %w", addr, err)
	}
	return c, nil
}

// startRemote has the agent at p.agent run bin (on a connection of its own: one
// session per connection); c, if not nil, is one already open to it.
func (p *proc) startRemote(ctx context.Context, c *probe.Client, key []byte, bin string, args []string) error {
	if c == nil {
		var err error
		if c, err = dialAgent(ctx, p.agent, key); err != nil {
			return err
		}
	}
	r, err := c.Run(ctx, probe.RunParams{Path: bin, Args: args, Name: p.base(), Interval: sampleInterval, Grace: stopGrace})
	if err != nil {
		c.Close()
		return fmt.Errorf("agent %s: %w", p.agent, err)
	}
	p.client, p.remote = c, r
	return nil
}

func (p *proc) exited() <-chan struct{} {
	if p.local != nil {
		return p.local.Exited()
	}
	return p.remote.Exited()
}

// stop asks the process to end: SIGINT, then SIGKILL after stopGrace (the agent
// does both for a remote one). It returns at once.
func (p *proc) stop() {
	select {
	case <-p.exited():
	default:
		p.stopped = true
	}
	if p.local != nil {
		p.local.Stop(stopGrace)
	} else {
		p.remote.Stop()
	}
}

// wait waits for the process's end and its results, and writes a remote one's
// output into dir; the error says what was lost.
func (p *proc) wait(dir string) error {
	if p.local != nil {
		p.series = p.local.Wait()
		exit, _ := p.local.Exit()
		p.exitCode = exit.Code
		p.outf.Close()
		p.errf.Close()
		return nil
	}
	res, err := p.remote.Wait()
	p.client.Close()
	p.series, p.exitCode, p.dropped, p.err = res.Series, res.ExitCode, [2]int64{res.StdoutDropped, res.StderrDropped}, err
	if err != nil {
		p.exitCode = -1 // unknown: the agent's report was lost
	}
	for ext, b := range map[string][]byte{".stdout": res.Stdout, ".stderr": res.Stderr} {
		if werr := os.WriteFile(filepath.Join(dir, p.base()+ext), b, 0o644); werr != nil {
			err = errors.Join(err, fmt.Errorf("write results: %w", werr))
		}
	}
	return err
}

// summarise adds each process's summary to sum and says which failed.
func summarise(sum IterationSummary, procs []*proc) (IterationSummary, []string) {
	var failed []string
	for _, p := range procs {
		ps := ProcessSummary{
			Role: p.role, Host: p.host, Agent: p.agent, Index: p.index, PID: p.series.PID,
			ExitCode: p.exitCode, Exit: p.exitText(), Stopped: p.stopped, Summary: estimator.SummariseResources(p.series),
			StdoutDropped: p.dropped[0], StderrDropped: p.dropped[1],
		}
		if p.err != nil {
			ps.Error = p.err.Error()
		}
		if ps.Failed = p.failed(); ps.Failed {
			why := ps.Exit
			if p.stopped {
				why = "stopped, then " + why
			}
			if p.err != nil {
				why = ps.Error
			}
			failed = append(failed, fmt.Sprintf("%s: %s", p.base(), why))
		}
		sum.Processes = append(sum.Processes, ps)
	}
	return sum, failed
}

// exitText says how the process ended, as resources.Exit does.
func (p *proc) exitText() string {
	switch {
	case p.err != nil:
		return "unknown"
	case p.local != nil:
		if e, ok := p.local.Exit(); ok {
			return e.String()
		}
	}
	return fmt.Sprintf("exit code %d", p.exitCode)
}

// failed: see ProcessSummary.Failed.
func (p *proc) failed() bool {
	if p.err != nil {
		return true
	}
	if p.stopped {
		switch p.exitCode {
		case 0, 128 + int(syscall.SIGINT), 128 + int(syscall.SIGKILL):
			return false
		}
	}
	return p.exitCode != 0
}

func writeResults(dir string, sum IterationSummary, procs []*proc) error {
	var series []ProcessSeries
	for _, p := range procs {
		series = append(series, ProcessSeries{Role: p.role, Host: p.host, Index: p.index, Series: p.series})
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
