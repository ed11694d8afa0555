// Package harness holds what the benchmark commands under bench/ share:
// running agents, peer tools and measurements as processes, here or in a
// testbed host's network namespace; free loopback ports; table cells.
package harness

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/probe-dev/probe/testbed"
)

// Host is where commands run: a testbed host's network namespace, or this
// process's when TB is nil.
type Host struct{ TB *testbed.Host }

func (h Host) start(cmd *exec.Cmd) error {
	if h.TB == nil {
		return cmd.Start()
	}
	return h.TB.Start(cmd)
}

func (h Host) do(fn func() error) error {
	if h.TB == nil {
		return fn()
	}
	return h.TB.Do(fn)
}

// prefix is what runs a command in h's namespace from a shell.
func (h Host) prefix() string {
	if h.TB == nil {
		return ""
	}
	return "ip netns exec " + h.TB.NS + " "
}

// Commands are the commands a benchmark ran, each once, as printed under its
// table.
type Commands []string

// Record notes a command run in h.
func (c *Commands) Record(h Host, bin string, args ...string) {
	line := h.prefix() + bin + " " + strings.Join(args, " ")
	if !slices.Contains(*c, line) {
		*c = append(*c, line)
	}
}

// Run runs a command in h to its end, within limit, and returns its standard
// output, also when it fails.
func Run(ctx context.Context, h Host, limit time.Duration, bin string, args ...string) ([]byte, error) {
	r, err := RunAll(ctx, h, limit, bin, args...)
	return r.Stdout, err
}

// Finished is what a command left: its output and the CPU it used.
type Finished struct {
	Stdout, Stderr []byte
	CPU            time.Duration // user + system, of the process and its waited-for children
}

// RunAll is Run that also returns the command's standard error and CPU time.
func RunAll(ctx context.Context, h Host, limit time.Duration, bin string, args ...string) (Finished, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := h.start(cmd); err != nil {
		return Finished{}, err
	}
	err := cmd.Wait()
	f := Finished{Stdout: out.Bytes(), Stderr: errb.Bytes()}
	if ps := cmd.ProcessState; ps != nil {
		f.CPU = ps.UserTime() + ps.SystemTime()
	}
	if ctx.Err() != nil {
		return f, fmt.Errorf("%s: %w", filepath.Base(bin), ctx.Err())
	}
	if err != nil {
		msg := strings.TrimSpace(errb.String())
		if msg == "" {
			msg = lastLine(out.String())
		}
		return f, fmt.Errorf("%s: %v: %s", filepath.Base(bin), err, msg)
	}
	return f, nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndex(s, "\n")+1:]
}

// Ready is how Start tells that a server is up.
type Ready struct {
	Check func(Host) bool // whether it is up now; h is the server's host
	What  string          // what Check waits for, as in "NAME not WHAT after 10 s"
}

// Listening is ready once a socket is bound to addr in h's namespace (tcp:
// listening). It reads /proc rather than connecting, so that checking does
// not race a UDP server for its port, nor count as a failed test in iperf3.
func Listening(network string, addr netip.AddrPort) Ready {
	a := addr.Addr().As4()
	// /proc prints the address as a host-order (little-endian) word.
	local := fmt.Sprintf("%02X%02X%02X%02X:%04X", a[3], a[2], a[1], a[0], addr.Port())
	check := func(h Host) bool {
		var found bool
		h.do(func() error {
			// Inside a namespace only thread-self shows its sockets.
			data, err := os.ReadFile("/proc/thread-self/net/" + network)
			if err != nil {
				return err
			}
			for _, line := range strings.Split(string(data), "\n")[1:] {
				f := strings.Fields(line)
				if len(f) > 3 && f[1] == local && (network != "tcp" || f[3] == "0A") {
					found = true
				}
			}
			return nil
		})
		return found
	}
	return Ready{Check: check, What: "listening on " + addr.String()}
}

// Server is a process that runs until the benchmark stops it.
type Server struct {
	cmd  *exec.Cmd
	done chan struct{}
	out  bytes.Buffer // standard output and error
}

// Start starts a server in h and waits up to 10 s until it is ready. The
// context bounds its life.
func Start(ctx context.Context, h Host, name string, ready Ready, bin string, args ...string) (*Server, error) {
	s := &Server{cmd: exec.CommandContext(ctx, bin, args...), done: make(chan struct{})}
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.out
	if err := h.start(s.cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for !ready.Check(h) {
		select {
		case <-s.done:
			return nil, fmt.Errorf("%s exited: %s", name, strings.TrimSpace(s.out.String()))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("%s not %s after 10 s", name, ready.What)
		}
	}
	return s, nil
}

// userHZ is the unit of /proc/PID/stat's CPU times (USER_HZ, 100 on Linux).
const userHZ = 100

// CPU is the user + system time the server has used so far, all its threads,
// from /proc/PID/stat (10 ms steps).
func (s *Server) CPU() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	return statCPU(string(b))
}

// statCPU reads utime and stime from a /proc/PID/stat line; the command
// name, in parentheses, may hold spaces.
func statCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	f := strings.Fields(stat[i+1:])
	if i < 0 || len(f) < 13 {
		return 0, fmt.Errorf("unexpected /proc stat line %.60q", stat)
	}
	var ticks [2]int64
	for k, field := range f[11:13] { // utime, stime: fields 14 and 15 of the line
		if _, err := fmt.Sscan(field, &ticks[k]); err != nil {
			return 0, fmt.Errorf("unexpected /proc stat line %.60q: %w", stat, err)
		}
	}
	return time.Duration(ticks[0]+ticks[1]) * time.Second / userHZ, nil
}

// Stop kills the server, unless it has exited, and waits for it.
func (s *Server) Stop() {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Kill()
	<-s.done
}
