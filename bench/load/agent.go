package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/probe-dev/probe/bench/internal/harness"
	"github.com/probe-dev/probe/probe"
)

// bench is one run: the agent under test and what every row shares.
type bench struct {
	bin     string
	dir     string
	key     []byte
	keyFile string
	settle  time.Duration
	agent   *agent
	cmds    harness.Commands
}

func (b *bench) writeKey() error {
	b.key = make([]byte, 32)
	rand.Read(b.key)
	b.keyFile = filepath.Join(b.dir, "probe.key")
	return os.WriteFile(b.keyFile, b.key, 0o600)
}

// clientConfig is a client of the agent from source address src.
func (b *bench) clientConfig(src netip.Addr) probe.ClientConfig {
	return probe.ClientConfig{Key: b.key, Local: src, Timeout: 10 * time.Second}
}

// agentArgs: a key so that run sessions can be tried, and room for the
// load row's 88 sessions at once (the default is 64).
func (b *bench) agentArgs(addr netip.AddrPort, extra ...string) []string {
	return append([]string{"serve", "--listen", addr.String(), "--key-file", b.keyFile, "--allow-run",
		"--max-sessions", "128"}, extra...)
}

// agent is the agent's process and what it logs.
type agent struct {
	cmd    *exec.Cmd
	addr   netip.AddrPort
	done   chan struct{}
	mu     sync.Mutex
	lines  []string
	states chan agentState
}

// agentState is one "agent state" line, logged on SIGUSR1.
type agentState struct{ goroutines, conns, sessions int }

var stateField = regexp.MustCompile(`(goroutines|conns|sessions)=(\d+)`)

func (b *bench) startAgent(ctx context.Context, extra ...string) (*agent, error) {
	addr, err := harness.FreeAddr()
	if err != nil {
		return nil, err
	}
	args := b.agentArgs(addr, extra...)
	b.cmds.Record(harness.Host{}, b.bin, args...)
	a := &agent{cmd: exec.CommandContext(ctx, b.bin, args...), addr: addr, done: make(chan struct{}), states: make(chan agentState, 16)}
	stderr, err := a.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := a.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the agent: %w", err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			a.note(sc.Text())
		}
		a.cmd.Wait()
		close(a.done)
	}()
	ready := harness.Listening("tcp", addr)
	deadline := time.Now().Add(10 * time.Second)
	for !ready.Check(harness.Host{}) {
		if time.Now().After(deadline) || !a.alive() {
			a.kill()
			return nil, fmt.Errorf("agent not %s: %s", ready.What, a.lastLines(5))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return a, nil
}

func (a *agent) note(line string) {
	a.mu.Lock()
	a.lines = append(a.lines, line)
	if len(a.lines) > 20000 {
		a.lines = a.lines[len(a.lines)-10000:]
	}
	a.mu.Unlock()
	if !strings.Contains(line, `msg="agent state"`) {
		return
	}
	var st agentState
	for _, m := range stateField.FindAllStringSubmatch(line, -1) {
		v, _ := strconv.Atoi(m[2])
		switch m[1] {
		case "goroutines":
			st.goroutines = v
		case "conns":
			st.conns = v
		case "sessions":
			st.sessions = v
		}
	}
	select {
	case a.states <- st:
	default:
	}
}

// count is how many logged lines contain s.
func (a *agent) count(s string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, l := range a.lines {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

// first is the first logged line that contains s.
func (a *agent) first(s string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, l := range a.lines {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

func (a *agent) lastLines(n int) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return strings.Join(a.lines[max(0, len(a.lines)-n):], "\n")
}

func (a *agent) alive() bool {
	select {
	case <-a.done:
		return false
	default:
		return true
	}
}

func (a *agent) kill() {
	if a.alive() {
		a.cmd.Process.Kill()
		<-a.done
	}
}

// figures are what the agent holds at one moment.
type figures struct {
	rss        int64 // bytes
	fds        int
	goroutines int // -1: unknown
	sessions   int
	conns      int
}

// sample reads the agent's RSS and descriptors from /proc and its
// goroutines from the line SIGUSR1 makes it log.
func (a *agent) sample() (figures, bool) {
	f := figures{goroutines: -1, sessions: -1, conns: -1}
	if !a.alive() {
		return f, false
	}
	pid := a.cmd.Process.Pid
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return f, false
	}
	f.fds = len(ents)
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			f.rss = kb << 10
		}
	}
	for len(a.states) > 0 {
		<-a.states
	}
	a.cmd.Process.Signal(syscall.SIGUSR1)
	select {
	case st := <-a.states:
		f.goroutines, f.sessions, f.conns = st.goroutines, st.sessions, st.conns
	case <-time.After(2 * time.Second):
	case <-a.done:
		return f, false
	}
	return f, true
}
