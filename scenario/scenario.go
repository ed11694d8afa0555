package scenario

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/probe-dev/probe/probe"
	"github.com/probe-dev/probe/testbed"
	"go.yaml.in/yaml/v3"

	"github.com/probe-dev/probe/internal/yamlline"
)

// Scenario is one `probe run` test (docs/scenarios.md): a server and clients on testbed hosts
// (network namespaces) or remote hosts (agents), run for a number of iterations.
type Scenario struct {
	TestName        string
	ServerHost      string
	ClientHosts     []string
	ClientsPerHost  int           // default 1
	Iterations      int           // default 1
	PauseBetween    time.Duration // between iterations; default 30 s
	ServerWarmup    time.Duration // from the server's start to the first client's; default 500 ms
	ServerBinary    string        // resolved: absolute, or as exec.LookPath found it; as written when only remote hosts run it
	ServerArgs      []string      // may hold SERVER_IP
	ClientBinary    string
	ClientArgs      []string
	MaxTestDuration time.Duration // 0: until the clients end or the run is interrupted
	Testbed         StarShape

	// Hosts maps the names of remote hosts to their agents' addresses
	// (host:port); every other host is a testbed namespace. The agents
	// run commands only with --allow-run and the key in KeyFile.
	Hosts   map[string]string
	KeyFile string // resolved like the binaries
	// What remote hosts run: the binaries as written, absolute or a name
	// in the agent's PATH; "" when no remote host has that role.
	RemoteServerBinary, RemoteClientBinary string
}

// StarShape is the scenario's `testbed:` section.
type StarShape struct {
	Rate  uint64 // bit/s on the router's egress toward each host; 0 unshaped
	Burst uint32 // tbf bucket in bytes; 0 the Config default
	Limit uint32 // tbf queue in bytes; 0 the Config default
	MTU   int    // 0: testbed.DefaultMTU
}

// ServerIPWord in server_args and client_args is replaced by the server host's address.
const ServerIPWord = "SERVER_IP"

// Scenario defaults.
const (
	DefaultPauseBetween = 30 * time.Second
	DefaultServerWarmup = 500 * time.Millisecond
)

// ParseError is a scenario problem at one line.
type ParseError = yamlline.Error

// yl makes scenario errors that name their line.
var yl = yamlline.Reader{Doc: "scenario"}

func errAt(n *yaml.Node, format string, args ...any) error { return yl.At(n, format, args...) }

var testNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// Load reads and parses a scenario file; binaries are resolved relative to its folder.
func Load(path string) (*Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	s, err := Parse(data, filepath.Dir(path))
	if se, ok := errors.AsType[*ParseError](err); ok {
		se.File = path
	}
	return s, err
}

// Parse parses a YAML scenario. Relative binary paths are resolved against dir,
// bare names against dir and then PATH. Every error is a *ParseError naming a line.
func Parse(data []byte, dir string) (*Scenario, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, yl.FromParser(err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, &ParseError{Doc: "scenario", Line: 1, Msg: "empty scenario"}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, errAt(root, "want a mapping of keys (test_name: ..., server_host: ...)")
	}
	s := &Scenario{ClientsPerHost: 1, Iterations: 1, PauseBetween: DefaultPauseBetween, ServerWarmup: DefaultServerWarmup}
	seen := map[string]bool{}
	nodes := map[string]*yaml.Node{} // key -> value, for what is checked once all are read
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		nodes[k.Value] = v
		if seen[k.Value] {
			return nil, errAt(k, "key %q given twice", k.Value)
		}
		seen[k.Value] = true
		var err error
		switch k.Value {
		case "test_name":
			if s.TestName, err = yl.Str(v); err == nil && !testNameRE.MatchString(s.TestName) {
				err = errAt(v, "test_name %q: want 1 to 64 letters, digits, '.', '-' or '_' (it names folders)", s.TestName)
			}
		case "server_host":
			s.ServerHost, err = hostName(v)
		case "client_hosts":
			s.ClientHosts, err = hostList(v)
		case "clients_per_host":
			s.ClientsPerHost, err = yl.Positive(v, 1000)
		case "iterations":
			s.Iterations, err = yl.Positive(v, 100000)
		case "pause_between":
			s.PauseBetween, err = duration(v)
		case "server_warmup":
			s.ServerWarmup, err = duration(v)
		case "max_test_duration":
			s.MaxTestDuration, err = duration(v)
		case "server_binary", "client_binary":
			_, err = yl.Str(v) // resolved below, once the hosts are known
		case "server_args":
			s.ServerArgs, err = strList(v)
		case "client_args":
			s.ClientArgs, err = strList(v)
		case "testbed":
			s.Testbed, err = starShape(v)
		case "hosts":
			s.Hosts, err = remoteHosts(v)
		case "key_file":
			if s.KeyFile, err = yl.Str(v); err == nil {
				if !filepath.IsAbs(s.KeyFile) {
					s.KeyFile = filepath.Join(dir, s.KeyFile)
				}
				if _, serr := os.Stat(s.KeyFile); serr != nil {
					err = errAt(v, "key_file %s does not exist", s.KeyFile)
				}
			}
		default:
			err = errAt(k, "unknown key %q", k.Value)
		}
		if err != nil {
			return nil, err
		}
	}
	for _, req := range []string{"test_name", "server_host", "client_hosts", "server_binary", "client_binary"} {
		if !seen[req] {
			return nil, errAt(root, "missing key %q", req)
		}
	}
	if err := s.resolveHosts(nodes, dir); err != nil {
		return nil, err
	}
	return s, nil
}

// resolveHosts checks the hosts map against the roles and resolves each binary
// for where it runs: locally for a testbed host, as written for a remote one.
func (s *Scenario) resolveHosts(nodes map[string]*yaml.Node, dir string) error {
	if hn := nodes["hosts"]; hn != nil {
		for i := 0; i+1 < len(hn.Content); i += 2 {
			name := hn.Content[i].Value
			if name != s.ServerHost && !slices.Contains(s.ClientHosts, name) {
				return errAt(hn.Content[i], "host %q in hosts is neither server_host nor in client_hosts", name)
			}
		}
		if s.KeyFile == "" {
			return errAt(hn, "remote hosts need key_file: an agent runs commands only for clients with its key")
		}
	}
	var err error
	serverNode, clientNode := nodes["server_binary"], nodes["client_binary"]
	if s.IsRemote(s.ServerHost) {
		s.ServerBinary, err = remoteBinary(serverNode)
		s.RemoteServerBinary = s.ServerBinary
	} else {
		s.ServerBinary, err = binary(serverNode, dir)
	}
	if err != nil {
		return err
	}
	local, remote := false, false
	for _, h := range s.ClientHosts {
		local, remote = local || !s.IsRemote(h), remote || s.IsRemote(h)
	}
	if remote {
		if s.RemoteClientBinary, err = remoteBinary(clientNode); err != nil {
			return err
		}
		s.ClientBinary = s.RemoteClientBinary
	}
	if local {
		s.ClientBinary, err = binary(clientNode, dir)
	}
	if err != nil {
		return err
	}
	if tn := nodes["testbed"]; tn != nil && !local && s.IsRemote(s.ServerHost) {
		return errAt(tn, "testbed: shapes the namespaces of local hosts, and every host here is remote; remove it")
	}
	return nil
}

// IsRemote says whether host is reached through an agent.
func (s *Scenario) IsRemote(host string) bool {
	_, ok := s.Hosts[host]
	return ok
}

// remoteHosts parses the hosts map: name -> host[:port] of its agent.
func remoteHosts(v *yaml.Node) (map[string]string, error) {
	if v.Kind != yaml.MappingNode || len(v.Content) == 0 {
		return nil, errAt(v, "want a mapping of host names to agent addresses (srv: 192.0.2.10:7323)")
	}
	hs := map[string]string{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, a := v.Content[i], v.Content[i+1]
		name, err := hostName(k)
		if err != nil {
			return nil, err
		}
		if _, dup := hs[name]; dup {
			return nil, errAt(k, "host %q given twice", name)
		}
		addr, err := yl.Str(a)
		if err != nil {
			return nil, err
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			// No port: the agent's default.
			host, port = strings.Trim(addr, "[]"), strconv.Itoa(probe.DefaultPort)
		}
		if n, perr := strconv.Atoi(port); host == "" || strings.ContainsAny(host, " /") || perr != nil || n < 1 || n > 65535 {
			return nil, errAt(a, "agent address %q: want host or host:port, e.g. 192.0.2.10:%d", addr, probe.DefaultPort)
		}
		hs[name] = net.JoinHostPort(host, port)
	}
	return hs, nil
}

// remoteBinary takes a binary that an agent runs: as written, absolute or a bare
// name for the agent's PATH, since this machine's folders mean nothing there.
func remoteBinary(v *yaml.Node) (string, error) {
	name, err := yl.Str(v)
	if err != nil {
		return "", err
	}
	if strings.Contains(name, "/") && !filepath.IsAbs(name) {
		return "", errAt(v, "binary %q: a remote host needs an absolute path or a name in its agent's PATH", name)
	}
	return name, nil
}

func hostName(v *yaml.Node) (string, error) {
	h, err := yl.Str(v)
	if err != nil {
		return "", err
	}
	if !testbed.ValidStarHost(h) {
		return "", errAt(v, "host %q: want 1 to 16 lower-case letters, digits, '-' or '_', not %q", h, testbed.StarRouter)
	}
	return h, nil
}

func hostList(v *yaml.Node) ([]string, error) {
	if v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
		return nil, errAt(v, "want a non-empty list of hosts")
	}
	var hs []string
	seen := map[string]bool{}
	for _, e := range v.Content {
		h, err := hostName(e)
		if err != nil {
			return nil, err
		}
		if seen[h] {
			return nil, errAt(e, "host %q listed twice", h)
		}
		seen[h] = true
		hs = append(hs, h)
	}
	return hs, nil
}

func strList(v *yaml.Node) ([]string, error) {
	if v.Kind != yaml.SequenceNode {
		return nil, errAt(v, "want a list of strings, e.g. [\"-s\", \"SERVER_IP\"]")
	}
	out := []string{}
	for _, e := range v.Content {
		if e.Kind != yaml.ScalarNode {
			return nil, errAt(e, "want a string")
		}
		out = append(out, e.Value)
	}
	return out, nil
}

func duration(v *yaml.Node) (time.Duration, error) {
	if v.Kind == yaml.ScalarNode && v.Value == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(v.Value)
	if v.Kind != yaml.ScalarNode || err != nil || d < 0 {
		return 0, errAt(v, "bad duration %q: want e.g. 30s, 1m30s or 0", v.Value)
	}
	return d, nil
}

// binary resolves a program path and checks that it is an executable file.
func binary(v *yaml.Node, dir string) (string, error) {
	name, err := yl.Str(v)
	if err != nil {
		return "", err
	}
	path := name
	switch {
	case strings.Contains(name, "/"):
		if !filepath.IsAbs(name) {
			path = filepath.Join(dir, name)
		}
	case isExecutable(filepath.Join(dir, name)) == nil:
		path = filepath.Join(dir, name)
	default:
		p, err := exec.LookPath(name)
		if err != nil {
			return "", errAt(v, "binary %q: not in %s nor in PATH", name, dir)
		}
		path = p
	}
	if err := isExecutable(path); err != nil {
		return "", errAt(v, "binary %q: %v", name, err)
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return path, nil
}

func isExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s does not exist", path)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}

func starShape(v *yaml.Node) (StarShape, error) {
	var sh StarShape
	if v.Kind != yaml.MappingNode {
		return sh, errAt(v, "want a mapping (rate: 20mbit, ...)")
	}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := v.Content[i], v.Content[i+1]
		switch k.Value {
		case "rate":
			r, err := testbed.ParseRate(val.Value)
			if err != nil {
				msg := strings.TrimPrefix(err.Error(), fmt.Sprintf("parse rate %q: ", val.Value))
				return sh, errAt(val, "bad rate %q: %s", val.Value, msg)
			}
			sh.Rate = r
		case "burst", "limit":
			n, err := strconv.ParseUint(val.Value, 10, 32)
			if err != nil || n == 0 {
				return sh, errAt(val, "bad %s %q: want bytes, a whole number above 0", k.Value, val.Value)
			}
			if k.Value == "burst" {
				sh.Burst = uint32(n)
			} else {
				sh.Limit = uint32(n)
			}
		case "mtu":
			n, err := strconv.Atoi(val.Value)
			if err != nil || n < 68 || n > 65535 {
				return sh, errAt(val, "bad mtu %q: want 68 to 65535", val.Value)
			}
			sh.MTU = n
		default:
			return sh, errAt(k, "unknown key %q in testbed (want rate, burst, limit, mtu)", k.Value)
		}
	}
	return sh, nil
}

// Argv returns args with SERVER_IP replaced by the server's address.
func Argv(args []string, server netip.Addr) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = strings.ReplaceAll(a, ServerIPWord, server.String())
	}
	return out
}
