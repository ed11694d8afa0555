package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// probe run with every host remote: `probe serve --allow-run` agents on loopback run
// the commands (held by the probe binary's own shim), and the results folder holds
// what a testbed run would. No root needed.
func TestRunRemoteCLI(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "probe.key")
	os.WriteFile(key, []byte("a key for the agents, 32 bytes.."), 0o600)
	var agents []string
	for range 2 {
		agents = append(agents, localAgent(t, "--key-file", key, "--allow-run"))
	}
	scenario := filepath.Join(dir, "remote.yaml")
	os.WriteFile(scenario, []byte(fmt.Sprintf(`test_name: cli-remote
server_host: srv
client_hosts: [cli]
pause_between: 0
server_warmup: 100ms
server_binary: sh
server_args: ["-c", "echo server at SERVER_IP; sleep 30"]
client_binary: sh
client_args: ["-c", "echo client for SERVER_IP; echo oops >&2; exit 4"]
key_file: probe.key
hosts:
  srv: %s
  cli: %s
`, agents[0], agents[1])), 0o644)
	// The client exits with 4: the run goes to its end, and fails.
	out, stderr, code := run(t, exec.Command(probeBin, "run", scenario, "--results", filepath.Join(dir, "results")))
	if want := "probe: a process failed: iteration 1: client-cli-0: exit code 4"; code != 1 || !strings.Contains(stderr, want) {
		t.Fatalf("probe run: exit %d, want 1 and %q\n%s", code, want, stderr)
	}
	iter := strings.TrimSpace(out)
	files := map[string]string{
		"server.stdout":       "server at 127.0.0.1\n",
		"client-cli-0.stdout": "client for 127.0.0.1\n",
		"client-cli-0.stderr": "oops\n",
	}
	for name, want := range files {
		if b, err := os.ReadFile(filepath.Join(iter, name)); err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", name, b, err, want)
		}
	}
	var sum struct {
		Ended     string `json:"ended"`
		Processes []struct {
			Role     string `json:"role"`
			Agent    string `json:"agent"`
			ExitCode int    `json:"exit_code"`
			Stopped  bool   `json:"stopped"`
			Failed   bool   `json:"failed"`
		} `json:"processes"`
	}
	b, err := os.ReadFile(filepath.Join(iter, "summary.json"))
	if err == nil {
		err = json.Unmarshal(b, &sum)
	}
	if err != nil {
		t.Fatal(err)
	}
	// The server is stopped with SIGINT once the client has ended, and
	// that is no failure.
	srv, cli := sum.Processes[0], sum.Processes[1]
	if sum.Ended != "clients ended" || len(sum.Processes) != 2 ||
		srv.Agent != agents[0] || srv.ExitCode != 130 || !srv.Stopped || srv.Failed ||
		cli.Agent != agents[1] || cli.ExitCode != 4 || cli.Stopped || !cli.Failed {
		t.Fatalf("summary %s", b)
	}
}
