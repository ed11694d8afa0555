package probe

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestTailBuffer(t *testing.T) {
	for _, tc := range []struct {
		name    string
		max     int
		writes  []string
		want    string
		dropped int64
	}{
		{"fits", 8, []string{"abc", "de"}, "abcde", 0},
		{"exactly full", 5, []string{"abc", "de"}, "abcde", 0},
		{"wraps", 5, []string{"abc", "def", "g"}, "cdefg", 2},
		{"wraps twice", 4, []string{"abc", "def", "ghi"}, "fghi", 5},
		{"one long write", 4, []string{"ab", "0123456789"}, "6789", 8},
		{"empty", 4, nil, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newTailBuffer(tc.max)
			for _, w := range tc.writes {
				if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("write %q: %d, %v", w, n, err)
				}
			}
			got, dropped := b.Bytes()
			if string(got) != tc.want || dropped != tc.dropped {
				t.Fatalf("got %q dropped %d, want %q dropped %d", got, dropped, tc.want, tc.dropped)
			}
		})
	}
}

var runKey = []byte("0123456789abcdef0123456789abcdef")

// runAgent starts an agent that runs commands, with eBPF accounting when
// the test runs as root.
func runAgent(t *testing.T) string {
	t.Helper()
	_, addr := startAgent(t, ServerConfig{Key: runKey, AllowRun: true, RunSched: os.Geteuid() == 0})
	return addr
}

// runRemote runs p on the agent and waits for its result. With a ready file,
// it stops the command once the command has created that file: a fixed delay
// loses the race with a shell that has not yet set its trap on a loaded host.
func runRemote(t *testing.T, addr string, p RunParams, ready string) *RunResult {
	t.Helper()
	ctx := context.Background()
	c, err := Dial(ctx, addr, ClientConfig{Key: runKey})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := c.Run(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if ready != "" {
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := os.Stat(ready); err == nil {
				break
			}
			select {
			case <-r.Exited():
				t.Fatal("the command ended before it was stopped")
			case <-time.After(10 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not created within 10 s", ready)
			}
		}
		r.Stop()
	}
	res, err := r.Wait()
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestRunSession(t *testing.T) {
	addr := runAgent(t)
	res := runRemote(t, addr, RunParams{Path: "sh", Args: []string{"-c",
		`echo out; echo err >&2; i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; exit 3`}, Name: "burn"}, "")
	if res.ExitCode != 3 || string(res.Stdout) != "out\n" || string(res.Stderr) != "err\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", res.ExitCode, res.Stdout, res.Stderr)
	}
	s := res.Series
	if s.Name != "burn" || s.PID <= 0 || len(s.Samples) < 2 {
		t.Fatalf("series %s pid %d, %d samples", s.Name, s.PID, len(s.Samples))
	}
	last := s.Samples[len(s.Samples)-1]
	if last.User+last.System <= 0 {
		t.Fatalf("no CPU time in the last sample %+v", last)
	}
	if os.Geteuid() == 0 && last.OnCPU <= 0 {
		t.Fatalf("no eBPF on-CPU time in the last sample %+v", last)
	}
	t.Logf("%d samples, user %v system %v, on CPU %v", len(s.Samples), last.User, last.System, last.OnCPU)
}

func TestRunSessionStop(t *testing.T) {
	addr := runAgent(t)
	// SIGINT ends it cleanly.
	ready := filepath.Join(t.TempDir(), "ready")
	res := runRemote(t, addr, RunParams{Path: "sh", Args: []string{"-c",
		`trap 'echo bye; exit 0' INT; touch "$0"; while :; do sleep 0.01; done`, ready}}, ready)
	if res.ExitCode != 0 || string(res.Stdout) != "bye\n" {
		t.Fatalf("after SIGINT: exit %d, stdout %q, stderr %q", res.ExitCode, res.Stdout, res.Stderr)
	}
	// SIGKILL once the grace period is over.
	start := time.Now()
	ready = filepath.Join(t.TempDir(), "ready")
	res = runRemote(t, addr, RunParams{Path: "sh", Args: []string{"-c", `trap '' INT; touch "$0"; sleep 100`, ready}, Grace: 200 * time.Millisecond}, ready)
	if res.ExitCode != 128+int(syscall.SIGKILL) || time.Since(start) > 15*time.Second {
		t.Fatalf("after SIGKILL: exit %d after %v", res.ExitCode, time.Since(start))
	}
}

func TestRunSessionOutputBound(t *testing.T) {
	addr := runAgent(t)
	const n = 3_000_000
	res := runRemote(t, addr, RunParams{Path: "sh", Args: []string{"-c", `head -c 3000000 /dev/zero | tr '\0' a; echo -n z`}}, "")
	if len(res.Stdout) != MaxRunOutput || res.StdoutDropped != n+1-MaxRunOutput {
		t.Fatalf("kept %d bytes, dropped %d; want %d and %d", len(res.Stdout), res.StdoutDropped, MaxRunOutput, n+1-MaxRunOutput)
	}
	if !bytes.HasSuffix(res.Stdout, []byte("aaz")) {
		t.Fatalf("the kept output is not the tail: ends %q", res.Stdout[len(res.Stdout)-10:])
	}
}

// The command does not outlive a client that disappears.
func TestRunSessionClientGone(t *testing.T) {
	addr := runAgent(t)
	ctx := context.Background()
	c, err := Dial(ctx, addr, ClientConfig{Key: runKey})
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Run(ctx, RunParams{Path: "sleep", Args: []string{"100"}, Grace: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(r.PID(), 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still runs 5 s after its client left", r.PID())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRunSessionRefused(t *testing.T) {
	ctx := context.Background()
	p := RunParams{Path: "true"}
	for _, tc := range []struct {
		name      string
		cfg       ServerConfig
		clientKey []byte
		want      string
	}{
		{"without allow-run", ServerConfig{Key: runKey}, runKey, "start it with probe serve --allow-run"},
		{"allow-run without a key", ServerConfig{AllowRun: true}, nil, "has none: give it --key-file"},
		{"wrong key", ServerConfig{Key: runKey, AllowRun: true}, []byte("fedcba9876543210fedcba9876543210"), "wrong key"},
		{"no such program", ServerConfig{Key: runKey, AllowRun: true}, runKey, "executable file not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "no such program" {
				p.Path = "probe-no-such-program"
			}
			_, addr := startAgent(t, tc.cfg)
			c, err := Dial(ctx, addr, ClientConfig{Key: tc.clientKey})
			if err == nil {
				defer c.Close()
				_, err = c.Run(ctx, p)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
			t.Log(err)
		})
	}
}

// Concurrent run sessions share the agent's scheduler watch, and each
// reports its own command's costs: a burner's CPU is its own, and the
// sleepers beside it show next to nothing, with eBPF and from /proc.
func TestRunSessionsConcurrentCPU(t *testing.T) {
	addr := runAgent(t)
	const sleepers = 3
	burner := RunParams{Path: "sh", Args: []string{"-c", `i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done`}, Name: "burner"}
	sleeper := RunParams{Path: "sh", Args: []string{"-c", "sleep 1"}, Name: "sleeper"}
	results := make([]*RunResult, sleepers+1)
	done := make(chan int)
	for i := range results {
		go func() {
			p := sleeper
			if i == 0 {
				p = burner
			}
			results[i] = runRemote(t, addr, p, "")
			done <- i
		}()
	}
	for range results {
		<-done
	}
	cpu := func(r *RunResult) (time.Duration, time.Duration) {
		s := r.Series.Samples
		first, last := s[0], s[len(s)-1]
		return last.User + last.System - first.User - first.System, last.OnCPU - first.OnCPU
	}
	burnCPU, burnOn := cpu(results[0])
	t.Logf("burner: user+system %v, on CPU %v", burnCPU, burnOn)
	if burnCPU < 100*time.Millisecond {
		t.Fatalf("the burner used %v: too little to judge", burnCPU)
	}
	for _, r := range results[1:] {
		c, on := cpu(r)
		t.Logf("sleeper %d: user+system %v, on CPU %v", r.Series.PID, c, on)
		if c > 30*time.Millisecond || on > 30*time.Millisecond {
			t.Errorf("sleeper %d: user+system %v, on CPU %v beside a burner of %v: not its own", r.Series.PID, c, on, burnCPU)
		}
	}
	if os.Geteuid() == 0 && (burnOn < burnCPU*90/100 || burnOn > burnCPU*110/100) {
		t.Errorf("burner: on CPU %v, user+system %v", burnOn, burnCPU)
	}
}
