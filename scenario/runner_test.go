package scenario

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// udpServer counts datagrams on its address until SIGINT, then prints the count.
const udpServer = `package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
)

func main() {
	addr, err := net.ResolveUDPAddr("udp4", os.Args[1])
	if err != nil {
		panic(err)
	}
	c, err := net.ListenUDP("udp4", addr)
	if err != nil {
		panic(err)
	}
	c.SetReadBuffer(1 << 20)
	fmt.Fprintln(os.Stderr, "listening on", c.LocalAddr())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	var n atomic.Int64
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := c.ReadFrom(buf); err != nil {
				return
			}
			n.Add(1)
		}
	}()
	<-sig
	fmt.Println(n.Load())
}
`

// udpClient sends 100 datagrams to its address, 1 ms apart, and exits.
const udpClient = `package main

import (
	"fmt"
	"net"
	"os"
	"time"
)

func main() {
	c, err := net.Dial("udp4", os.Args[1])
	if err != nil {
		panic(err)
	}
	for i := 0; i < 100; i++ {
		if _, err := fmt.Fprintf(c, "datagram %d", i); err != nil {
			panic(err)
		}
		time.Sleep(time.Millisecond)
	}
	fmt.Println("sent 100")
}
`

// buildTiny builds a main package of one file into dir/name.
func buildTiny(t *testing.T, dir, name, src string) {
	t.Helper()
	pkg := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(pkg, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pkg, "go.mod"), []byte("module "+name+"\n\ngo 1.22\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pkg, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), ".")
	cmd.Dir = pkg
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", name, err, out)
	}
}

func TestRunScenario(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("skipping: the test builds its server and client with the go command, not in PATH")
	}
	dir := t.TempDir()
	buildTiny(t, dir, "udpserver", udpServer)
	buildTiny(t, dir, "udpclient", udpClient)
	test := uniqueTest("udpcount")
	yaml := `test_name: ` + test + `
server_host: srv
client_hosts: [c1, c2, c3]
clients_per_host: 2
iterations: 3
pause_between: 0
server_binary: udpserver
server_args: ["SERVER_IP:9999"]
client_binary: ./udpclient
client_args: ["SERVER_IP:9999"]
max_test_duration: 20s
testbed:
  rate: 100mbit
`
	s, err := Parse([]byte(yaml), dir)
	if err != nil {
		t.Fatal(err)
	}
	results := filepath.Join(dir, "results")
	var log bytes.Buffer
	start := time.Now()
	dirs, err := Run(context.Background(), s, results, &log)
	t.Logf("run took %v; log:\n%s", time.Since(start), log.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) != 3 {
		t.Fatalf("%d iteration folders, want 3: %v", len(dirs), dirs)
	}
	for k, d := range dirs {
		if base := filepath.Base(d); !strings.HasPrefix(base, fmt.Sprintf("%s_iter%d_", test, k+1)) {
			t.Errorf("folder %s: want %s_iter%d_<timestamp>", base, test, k+1)
		}
		var sum IterationSummary
		b, err := os.ReadFile(filepath.Join(d, "summary.json"))
		if err == nil {
			err = json.Unmarshal(b, &sum)
		}
		if err != nil {
			t.Fatal(err)
		}
		if sum.Iteration != k+1 || sum.TestName != test || sum.Ended != "clients ended" {
			t.Errorf("iteration %d: summary %+v", k+1, sum)
		}
		roles := map[string]int{}
		for _, p := range sum.Processes {
			roles[p.Role]++
			if p.Summary.Samples == 0 {
				t.Errorf("iteration %d: %s %s %d has no samples", k+1, p.Role, p.Host, p.Index)
			}
			if p.ExitCode != 0 {
				t.Errorf("iteration %d: %s %s %d exited with %d", k+1, p.Role, p.Host, p.Index, p.ExitCode)
			}
		}
		if roles["server"] != 1 || roles["client"] != 6 {
			t.Errorf("iteration %d: processes by role %v, want 1 server and 6 clients", k+1, roles)
		}
		var series struct {
			Processes []ProcessSeries `json:"processes"`
		}
		if b, err := os.ReadFile(filepath.Join(d, "series.json")); err != nil || json.Unmarshal(b, &series) != nil || len(series.Processes) != 7 {
			t.Errorf("iteration %d: series.json: %v, %d series", k+1, err, len(series.Processes))
		}
		stdouts, _ := filepath.Glob(filepath.Join(d, "*.stdout"))
		if len(stdouts) != 7 {
			t.Errorf("iteration %d: %d stdout files, want 7", k+1, len(stdouts))
		}
		for _, f := range stdouts {
			if b, _ := os.ReadFile(f); len(b) == 0 {
				t.Errorf("%s is empty", f)
			}
		}
		b, _ = os.ReadFile(filepath.Join(d, "server.stdout"))
		if got := strings.TrimSpace(string(b)); got != "600" {
			t.Errorf("iteration %d: server counted %q datagrams, want 600", k+1, got)
		}
	}
	noLeftovers(t, test)
}
