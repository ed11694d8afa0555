package scenario

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/probe"
)

// burnClient burns os.Args[2] of CPU time first thing, then sends 100
// datagrams to os.Args[1], prints what it burned and exits.
const burnClient = `package main

import (
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

func cpu() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var sink uint64

func main() {
	burn, err := time.ParseDuration(os.Args[2])
	if err != nil {
		panic(err)
	}
	// Its rusage counts the shim that held it before exec, which the
	// runner does not: the burn is from here.
	start := cpu()
	for cpu()-start < burn {
		for i := 0; i < 100000; i++ {
			sink += uint64(i) * sink
		}
	}
	c, err := net.Dial("udp4", os.Args[1])
	if err != nil {
		panic(err)
	}
	for i := 0; i < 100; i++ {
		fmt.Fprintf(c, "datagram %d", i)
		time.Sleep(time.Millisecond)
	}
	fmt.Println("burned", cpu()-start)
}
`

// runKey is the agents' key in these tests.
var runKey = []byte("0123456789abcdef0123456789abcdef")

// startRunAgent runs an agent on loopback for the test's lifetime, the way
// probe serve --allow-run --key-file does when allowRun is set.
func startRunAgent(t *testing.T, allowRun bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := probe.NewServer(probe.ServerConfig{Key: runKey, AllowRun: allowRun, RunSched: os.Geteuid() == 0})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	})
	return ln.Addr().String()
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func needGo(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("skipping: the test builds its server and client with the go command, not in PATH")
	}
}

func readSummary(t *testing.T, dir string) IterationSummary {
	t.Helper()
	var sum IterationSummary
	b, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	if err == nil {
		err = json.Unmarshal(b, &sum)
	}
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// A scenario whose server and clients are all on remote hosts: three agents on
// loopback stand for three machines. It needs no root (eBPF figures come when it
// runs as root).
func TestRunScenarioRemote(t *testing.T) {
	needGo(t)
	dir := t.TempDir()
	buildTiny(t, dir, "udpserver", udpServer)
	buildTiny(t, dir, "burnclient", burnClient)
	if err := os.WriteFile(filepath.Join(dir, "probe.key"), runKey, 0o600); err != nil {
		t.Fatal(err)
	}
	agents := map[string]string{"srv": startRunAgent(t, true), "c1": startRunAgent(t, true), "c2": startRunAgent(t, true)}
	port := freeUDPPort(t)
	yaml := fmt.Sprintf(`test_name: remote
server_host: srv
client_hosts: [c1, c2]
clients_per_host: 2
iterations: 2
pause_between: 0
server_warmup: 300ms
server_binary: %[1]s/udpserver
server_args: ["SERVER_IP:%[2]d"]
client_binary: %[1]s/burnclient
client_args: ["SERVER_IP:%[2]d", "200ms"]
max_test_duration: 30s
key_file: probe.key
hosts:
  srv: %[3]s
  c1: %[4]s
  c2: %[5]s
`, dir, port, agents["srv"], agents["c1"], agents["c2"])
	s, err := Parse([]byte(yaml), dir)
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	dirs, err := Run(context.Background(), s, filepath.Join(dir, "results"), &log)
	t.Logf("log:\n%s", log.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) != 2 {
		t.Fatalf("%d iteration folders, want 2", len(dirs))
	}
	// The agents account with eBPF when they can; so does this check.
	ebpf := false
	if sw, err := collector.NewSchedWatch(); err == nil {
		sw.Close()
		ebpf = true
	} else {
		t.Logf("no eBPF scheduler accounting, /proc figures only: %v", err)
	}
	for k, d := range dirs {
		sum := readSummary(t, d)
		if sum.Ended != "clients ended" || sum.ServerAddr != "127.0.0.1" || len(sum.Processes) != 5 {
			t.Fatalf("iteration %d: ended %q, server at %s, %d processes", k+1, sum.Ended, sum.ServerAddr, len(sum.Processes))
		}
		for _, p := range sum.Processes {
			name := fmt.Sprintf("iteration %d: %s %s %d", k+1, p.Role, p.Host, p.Index)
			if p.Agent != agents[p.Host] || p.ExitCode != 0 || p.Error != "" || p.Summary.Samples < 2 || p.PID <= 0 {
				t.Errorf("%s: agent %s, exit %d, error %q, %d samples, pid %d", name, p.Agent, p.ExitCode, p.Error, p.Summary.Samples, p.PID)
			}
			base := "server"
			if p.Role == "client" {
				base = fmt.Sprintf("client-%s-%d", p.Host, p.Index)
				cpu := p.Summary.User + p.Summary.System
				if cpu < 200*time.Millisecond || (ebpf && p.Summary.OnCPU < 190*time.Millisecond) {
					t.Errorf("%s burned 200 ms; CPU %v, on CPU %v", name, cpu, p.Summary.OnCPU)
				}
			}
			out, err := os.ReadFile(filepath.Join(d, base+".stdout"))
			if err != nil {
				t.Fatal(err)
			}
			if want := map[string]string{"server": "400\n", "client": "burned "}[p.Role]; !strings.HasPrefix(string(out), want) {
				t.Errorf("%s: stdout %q, want %q...", name, out, want)
			}
			if _, err := os.Stat(filepath.Join(d, base+".stderr")); err != nil {
				t.Error(err)
			}
		}
		var series struct {
			Processes []ProcessSeries `json:"processes"`
		}
		if b, err := os.ReadFile(filepath.Join(d, "series.json")); err != nil || json.Unmarshal(b, &series) != nil || len(series.Processes) != 5 {
			t.Errorf("iteration %d: series.json: %v, %d series", k+1, err, len(series.Processes))
		}
	}
}

// Remote hosts run nothing unless their agent allows it, and only with its key.
func TestRunScenarioRemoteRefused(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name     string
		allowRun bool
		key      []byte
		want     string
	}{
		{"agent without allow-run", false, runKey, "this agent does not run commands: start it with probe serve --allow-run"},
		{"wrong key", true, []byte("fedcba9876543210fedcba9876543210"), "authentication failed: wrong key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keyFile := filepath.Join(t.TempDir(), "key")
			if err := os.WriteFile(keyFile, tc.key, 0o600); err != nil {
				t.Fatal(err)
			}
			agent := startRunAgent(t, tc.allowRun)
			yaml := fmt.Sprintf("test_name: refused\nserver_host: srv\nclient_hosts: [srv]\nserver_binary: true\nclient_binary: true\n"+
				"pause_between: 0\nkey_file: %s\nhosts:\n  srv: %s\n", keyFile, agent)
			s, err := Parse([]byte(yaml), dir)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Run(context.Background(), s, filepath.Join(t.TempDir(), "results"), &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
			t.Log(err)
		})
	}
}

// A client that burns CPU from its first instruction without ever blocking (a shell
// loop: one thread, no syscalls to sleep in) is the worst case for accounting that
// starts late, since eBPF counts a thread from its next switch in. The runner watches
// processes before they run, so eBPF's on-CPU time is within 3 % of wait4's exact
// total. Peak RSS is the process's own, not the runner's.
func TestRunScenarioWatchesFromStart(t *testing.T) {
	needRoot(t)
	needGo(t)
	dir := t.TempDir()
	buildTiny(t, dir, "udpserver", udpServer)
	test := uniqueTest("early")
	yaml := `test_name: ` + test + `
server_host: srv
client_hosts: [c1, c2]
pause_between: 0
server_warmup: 200ms
server_binary: udpserver
server_args: ["SERVER_IP:9999"]
client_binary: sh
client_args: ["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"]
max_test_duration: 30s
`
	s, err := Parse([]byte(yaml), dir)
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	dirs, err := Run(context.Background(), s, filepath.Join(dir, "results"), &log)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if strings.Contains(log.String(), "no eBPF") {
		t.Skipf("skipping: no eBPF scheduler accounting here: %s", log.String())
	}
	sum := readSummary(t, dirs[0])
	for _, p := range sum.Processes {
		cpu := p.Summary.User + p.Summary.System // wait4's, exact
		t.Logf("%s %s: CPU %v, on CPU %v (eBPF), peak RSS %.1f MiB", p.Role, p.Host, cpu, p.Summary.OnCPU, float64(p.Summary.PeakRSS)/(1<<20))
		if p.Role == "client" {
			if cpu < 50*time.Millisecond {
				t.Errorf("%s: CPU %v: the loop burned too little to judge", p.Host, cpu)
			}
			if d := p.Summary.OnCPU - cpu; d < -cpu*3/100 || d > cpu*3/100 {
				t.Errorf("%s: on CPU %v, CPU %v: more than 3 %% apart", p.Host, p.Summary.OnCPU, cpu)
			}
		}
		// sh and a tiny Go program keep a few MiB; the runner (this test binary)
		// holds more, and wait4's ru_maxrss would report that.
		if p.Summary.PeakRSS == 0 || p.Summary.PeakRSS > 16<<20 {
			t.Errorf("%s %s: peak RSS %.1f MiB, want that of a tiny program", p.Role, p.Host, float64(p.Summary.PeakRSS)/(1<<20))
		}
	}
}

// A process that fails does not stop the run, which says at its end which
// process of which iteration failed; a server stopped by the runner has
// not failed, and neither has one that exits 0 when stopped.
func TestRunScenarioFailed(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "probe.key"), runKey, 0o600); err != nil {
		t.Fatal(err)
	}
	agents := map[string]string{"srv": startRunAgent(t, true), "c1": startRunAgent(t, true)}
	// The client of iteration 2 exits 1, the others 0; the server runs
	// until stopped.
	yaml := fmt.Sprintf(`test_name: failing
server_host: srv
client_hosts: [c1]
clients_per_host: 2
iterations: 2
pause_between: 0
server_warmup: 50ms
server_binary: sh
server_args: ["-c", "sleep 30"]
client_binary: sh
client_args: ["-c", "if [ -e %[1]s/second ]; then exit 1; fi; touch %[1]s/second"]
key_file: probe.key
hosts:
  srv: %[2]s
  c1: %[3]s
`, dir, agents["srv"], agents["c1"])
	s, err := Parse([]byte(yaml), dir)
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	dirs, err := Run(context.Background(), s, filepath.Join(dir, "results"), &log)
	t.Logf("log:\n%s", log.String())
	var fe *FailedError
	if !errors.As(err, &fe) || len(dirs) != 2 {
		t.Fatalf("%d folders, error %v; want 2 and a *FailedError", len(dirs), err)
	}
	// The first client of iteration 1 made the file: the three others exit 1.
	want := []string{"iteration 1: client-c1-1: exit code 1", "iteration 2: client-c1-0: exit code 1", "iteration 2: client-c1-1: exit code 1"}
	if !slices.Equal(fe.Failed, want) || err.Error() != "3 processes failed: "+strings.Join(want, "; ") {
		t.Errorf("failed %q (%v), want %q", fe.Failed, err, want)
	}
	for k, d := range dirs {
		for _, p := range readSummary(t, d).Processes {
			wantFailed := p.Role == "client" && (k == 1 || p.Index == 1)
			if p.Failed != wantFailed || p.Stopped != (p.Role == "server") {
				t.Errorf("iteration %d: %s %d: failed %v, stopped %v, %s", k+1, p.Role, p.Index, p.Failed, p.Stopped, p.Exit)
			}
		}
	}
}
