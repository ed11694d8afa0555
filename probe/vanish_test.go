package probe

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/probe-dev/probe/probe/internal/wire"
)

// vanishEnv makes the test binary a client that opens a session of a mode
// and runs it until killed: "MODE ADDR".
const vanishEnv = "PROBE_TEST_VANISHING_CLIENT"

// runVanishingClient is the client's side, run from TestMain.
func runVanishingClient() {
	spec := os.Getenv(vanishEnv)
	if spec == "" {
		return
	}
	mode, addr, _ := strings.Cut(spec, " ")
	ctx := context.Background()
	c, err := Dial(ctx, addr, ClientConfig{Key: safetyKey})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	switch wire.Mode(mode) {
	case wire.ModeEcho:
		_, err = c.Echo(ctx, EchoParams{Count: 1_000_000, Size: 64, Interval: 100 * time.Microsecond}, EchoOptions{Wait: time.Second})
	case wire.ModeCapacity:
		for err == nil {
			_, err = c.Capacity(ctx, CapacityConfig{})
		}
	case wire.ModeTCP:
		_, err = c.TCP(ctx, TCPParams{Streams: 2, Direction: DirBidir, Duration: time.Minute, WriteSize: 64 << 10, Interval: 50 * time.Millisecond})
	case wire.ModeQUIC:
		_, err = c.QUIC(ctx, QUICParams{Streams: 2, Direction: DirBidir, Duration: time.Minute, WriteSize: 64 << 10,
			Interval: 50 * time.Millisecond, Pings: 5, PingEvery: 10 * time.Millisecond}, QUICTrust{})
	case wire.ModeRun:
		var p *RemoteProcess
		if p, err = c.Run(ctx, RunParams{Path: "sleep", Args: []string{"60"}}); err == nil {
			_, err = p.Wait()
		}
	}
	fmt.Fprintln(os.Stderr, mode, err)
	os.Exit(3)
}

// agentLoad is what the agent holds: descriptors and goroutines of this
// process, where only the agent runs.
func agentLoad(t *testing.T) (fds, goroutines int) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents), runtime.NumGoroutine()
}

// A client killed mid-session, in any mode, leaves nothing behind: the
// agent is back to its descriptors and goroutines within seconds.
func TestVanishedClientsLeaveNothing(t *testing.T) {
	s, addr := startAgent(t, ServerConfig{Key: safetyKey, AllowRun: true})
	for _, mode := range []string{"echo", "capacity", "tcp", "quic", "run"} {
		t.Run(mode, func(t *testing.T) {
			time.Sleep(200 * time.Millisecond) // the agent is up and the last client's session gone
			fds0, g0 := agentLoad(t)
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), vanishEnv+"="+mode+" "+addr)
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for s.active.Load() == 0 {
				if time.Now().After(deadline) {
					cmd.Process.Kill()
					cmd.Wait()
					t.Fatal("no session opened")
				}
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(700 * time.Millisecond) // mid-transfer
			fds, g := agentLoad(t)
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
			t.Logf("during the session: %d descriptors, %d goroutines (baseline %d, %d)", fds, g, fds0, g0)
			deadline = time.Now().Add(8 * time.Second)
			for {
				fds, g = agentLoad(t)
				if s.active.Load() == 0 && fds <= fds0 && g <= g0 {
					t.Logf("back to baseline in %v", 8*time.Second-time.Until(deadline))
					return
				}
				if time.Now().After(deadline) {
					buf := make([]byte, 1<<20)
					n := runtime.Stack(buf, true)
					t.Fatalf("8 s after the client died: %d sessions, %d descriptors (baseline %d), %d goroutines (baseline %d)\n%s",
						s.active.Load(), fds, fds0, g, g0, buf[:n])
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}
