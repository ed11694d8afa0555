package scenario

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// scenarioDir makes a folder with an executable "srv", a non-executable "notexec" and a
// folder "sub".
func scenarioDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "srv"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notexec"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

const validScenario = `test_name: udp-count
server_host: srv
client_hosts: [c1, c2]
clients_per_host: 2
iterations: 3
pause_between: 1s
server_binary: ./srv
server_args: ["-l", "SERVER_IP:9999"]
client_binary: sh
client_args: ["-c", "echo SERVER_IP"]
max_test_duration: 1m
testbed:
  rate: 20mbit
`

func TestParseScenario(t *testing.T) {
	dir := scenarioDir(t)
	s, err := Parse([]byte(validScenario), dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.TestName != "udp-count" || s.ServerHost != "srv" || !slices.Equal(s.ClientHosts, []string{"c1", "c2"}) ||
		s.ClientsPerHost != 2 || s.Iterations != 3 || s.PauseBetween != time.Second || s.MaxTestDuration != time.Minute ||
		s.Testbed.Rate != 20_000_000 || s.ServerWarmup != DefaultServerWarmup {
		t.Errorf("parsed %+v", s)
	}
	if s.ServerBinary != filepath.Join(dir, "srv") {
		t.Errorf("server binary %q, want %q", s.ServerBinary, filepath.Join(dir, "srv"))
	}
	if !filepath.IsAbs(s.ClientBinary) || filepath.Base(s.ClientBinary) != "sh" {
		t.Errorf("client binary %q: want sh found in PATH", s.ClientBinary)
	}
	got := Argv(s.ServerArgs, netip.MustParseAddr("10.78.1.1"))
	if !slices.Equal(got, []string{"-l", "10.78.1.1:9999"}) {
		t.Errorf("server argv %q", got)
	}

	min := "test_name: t\nserver_host: s\nclient_hosts: [c]\nserver_binary: srv\nclient_binary: srv\n"
	s, err = Parse([]byte(min), dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.PauseBetween != DefaultPauseBetween || s.ClientsPerHost != 1 || s.Iterations != 1 || s.MaxTestDuration != 0 || s.Testbed.Rate != 0 {
		t.Errorf("defaults: %+v", s)
	}
}

func TestParseScenarioRemoteHosts(t *testing.T) {
	dir := scenarioDir(t)
	// The server and c1 are remote, c2 is a testbed host: the client binary
	// is resolved here for c2 and sent as written to c1's agent.
	y := strings.Replace(validScenario, "server_binary: ./srv", "server_binary: /opt/bin/srv", 1) +
		"key_file: srv\nhosts:\n  srv: 192.0.2.1\n  c1: \"[2001:db8::1]:7000\"\n"
	s, err := Parse([]byte(y), dir)
	if err != nil {
		t.Fatal(err)
	}
	if !s.IsRemote("srv") || !s.IsRemote("c1") || s.IsRemote("c2") || s.Hosts["srv"] != "192.0.2.1:7323" || s.Hosts["c1"] != "[2001:db8::1]:7000" {
		t.Errorf("hosts %v", s.Hosts)
	}
	if s.KeyFile != filepath.Join(dir, "srv") {
		t.Errorf("key file %q", s.KeyFile)
	}
	if s.ServerBinary != "/opt/bin/srv" || s.RemoteServerBinary != "/opt/bin/srv" {
		t.Errorf("server binary %q, remote %q: want /opt/bin/srv as written", s.ServerBinary, s.RemoteServerBinary)
	}
	if s.RemoteClientBinary != "sh" || !filepath.IsAbs(s.ClientBinary) {
		t.Errorf("client binary %q, remote %q: want it resolved here and bare for the agent", s.ClientBinary, s.RemoteClientBinary)
	}
	if got := s.hosts(); !slices.Equal(got, []string{"c2"}) {
		t.Errorf("testbed hosts %v, want [c2]", got)
	}
}

func TestParseScenarioErrors(t *testing.T) {
	dir := scenarioDir(t)
	// replace swaps one line of validScenario (1-based) for another text.
	replace := func(line int, with string) string {
		ls := strings.Split(validScenario, "\n")
		ls[line-1] = with
		return strings.Join(ls, "\n")
	}
	drop := func(line int) string {
		ls := strings.Split(validScenario, "\n")
		return strings.Join(slices.Delete(ls, line-1, line), "\n")
	}
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"unknown key", replace(10, `client_arg: ["x"]`), `scenario:10: unknown key "client_arg"`},
		{"unknown testbed key", validScenario + "  ratee: 1mbit\n", `scenario:14: unknown key "ratee" in testbed`},
		{"testbed with every host remote", replace(7, "server_binary: /opt/srv") + "key_file: srv\nhosts: {srv: 192.0.2.1, c1: 192.0.2.2, c2: 192.0.2.3}\n",
			`scenario:13: testbed: shapes the namespaces of local hosts, and every host here is remote`},
		{"missing test_name", drop(1), `scenario:1: missing key "test_name"`},
		{"missing server_host", drop(2), `scenario:1: missing key "server_host"`},
		{"missing client_hosts", drop(3), `scenario:1: missing key "client_hosts"`},
		{"missing server_binary", drop(7), `scenario:1: missing key "server_binary"`},
		{"missing client_binary", drop(9), `scenario:1: missing key "client_binary"`},
		{"bad pause", replace(6, "pause_between: 30"), `scenario:6: bad duration "30"`},
		{"negative pause", replace(6, "pause_between: -1s"), `scenario:6: bad duration "-1s"`},
		{"bad max duration", replace(11, "max_test_duration: soon"), `scenario:11: bad duration "soon"`},
		{"bad rate", replace(13, "  rate: fast"), `scenario:13: bad rate "fast"`},
		{"missing binary", replace(7, "server_binary: ./nope"), `scenario:7: binary "./nope": ` + filepath.Join(dir, "nope") + ` does not exist`},
		{"not in PATH", replace(9, "client_binary: no-such-probe-binary"), `scenario:9: binary "no-such-probe-binary": not in`},
		{"not executable", replace(7, "server_binary: notexec"), `scenario:7: binary "notexec": not in`},
		{"not executable path", replace(7, "server_binary: ./notexec"), `scenario:7: binary "./notexec": ` + filepath.Join(dir, "notexec") + ` is not an executable file`},
		{"folder", replace(7, "server_binary: sub/"), `scenario:7: binary "sub/": ` + filepath.Join(dir, "sub") + ` is not an executable file`},
		{"bad count", replace(4, "clients_per_host: 0"), `scenario:4: want a whole number from 1 to 1000, not "0"`},
		{"bad iterations", replace(5, "iterations: two"), `scenario:5: want a whole number from 1 to 100000, not "two"`},
		{"bad host", replace(2, "server_host: Big Host"), `scenario:2: host "Big Host"`},
		{"router host", replace(3, "client_hosts: [c1, router]"), `scenario:3: host "router"`},
		{"repeated host", replace(3, "client_hosts: [c1, c1]"), `scenario:3: host "c1" listed twice`},
		{"empty hosts", replace(3, "client_hosts: []"), `scenario:3: want a non-empty list of hosts`},
		{"args not a list", replace(8, `server_args: "-l SERVER_IP"`), `scenario:8: want a list of strings`},
		{"bad test name", replace(1, "test_name: a/b"), `scenario:1: test_name "a/b"`},
		{"twice", validScenario + "iterations: 4\n", `scenario:14: key "iterations" given twice`},
		{"syntax", replace(4, "clients_per_host: [1"), `scenario:`},
		{"not a mapping", "- a\n- b\n", `scenario:1: want a mapping`},
		{"empty", "", `scenario:1: empty scenario`},
		{"remote without key", validScenario + "hosts:\n  srv: 192.0.2.1\n", `scenario:15: remote hosts need key_file`},
		{"missing key file", validScenario + "key_file: nokey\n", `scenario:14: key_file ` + filepath.Join(dir, "nokey") + ` does not exist`},
		{"unused remote host", validScenario + "key_file: srv\nhosts:\n  c1: 192.0.2.1\n  c9: 192.0.2.9\n", `scenario:17: host "c9" in hosts is neither`},
		{"bad agent address", validScenario + "key_file: srv\nhosts:\n  c1: 192.0.2.1:99999\n", `scenario:16: agent address "192.0.2.1:99999"`},
		{"hosts not a map", validScenario + "key_file: srv\nhosts: [c1]\n", `scenario:15: want a mapping of host names`},
		{"relative remote binary", replace(7, "server_binary: ./srv") + "key_file: srv\nhosts:\n  srv: 192.0.2.1\n", `scenario:7: binary "./srv": a remote host needs an absolute path`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), dir)
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error %q, want it to start with %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q spans lines", err)
			}
			if _, ok := errors.AsType[*ParseError](err); !ok {
				t.Errorf("error %T is not a *ParseError", err)
			}
		})
	}
}

func TestLoadScenarioNamesFile(t *testing.T) {
	dir := scenarioDir(t)
	path := filepath.Join(dir, "scenario.yaml")
	if err := os.WriteFile(path, []byte(strings.Replace(validScenario, "client_args", "client_arg", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if want := path + `:10: unknown key "client_arg"`; err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
}
