package monitor

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/probe-dev/probe/internal/yamlline"
)

// Config is a monitor's configuration file.
type Config struct {
	// Name is this host as an end point of its tests ("monitor" unless
	// named): a test runs from here to an agent unless it names an agent
	// as its from.
	Name    string
	Archive string // SQLite file; relative paths are beside the config
	Listen  string // /metrics and /probe; "" none
	Web     string // the web pages; "" none (probe monitor --web overrides)
	// AggregateEvery is how often aggregates are brought up to date and raw
	// values past their deadline deleted.
	AggregateEvery time.Duration
	Agents         map[string]*Agent
	Types          map[TestType]TypeRules
	Tests          []*Test
	Modules        map[string]*Module
}

// Agent is a `probe serve` the monitor runs tests against.
type Agent struct {
	Name    string
	Address string // host or host:port
	Key     []byte // empty: none
	// PeerKeyFile is a key file on the agent's own host, which the tests it
	// runs to other agents pass to probe measure --key-file; "" none.
	PeerKeyFile string
}

// TypeRules are a test type's aggregation and retention.
type TypeRules struct {
	Periods []time.Duration // aggregation periods, ascending
	KeepRaw time.Duration   // raw values older than this are deleted once aggregated
}

// Test is a test instance: a type, its end points, parameters and schedule.
type Test struct {
	Name     string
	Type     TestType
	Class    Class
	From, To string // end points: this monitor's Name or an agent's, an agent's name
	Agent    *Agent // To's
	// Source is From's agent when the test runs between two agents (From
	// runs probe measure against To in a run session); nil when this
	// monitor is the client.
	Source   *Agent
	Params   Params
	Schedule Schedule
	Timeout  time.Duration // of one run
	Line     int           // in the config, for messages
}

// EndPoints are the names the test occupies.
func (t *Test) EndPoints() []string { return []string{t.From, t.To} }

// Schedule says when a test's runs are due: every Interval from Start, each
// free to begin anywhere in the Slip after its nominal time (at a random
// point of it with SlipRand), until Until or MaxRuns runs.
type Schedule struct {
	Interval time.Duration
	Slip     time.Duration
	SlipRand bool
	Start    time.Time // zero: when the monitor starts
	Until    time.Time // zero: for ever
	MaxRuns  int       // 0: no limit
}

// Params are a test's parameters; each type reads its own.
type Params struct {
	Count    int           // echo: probes per run
	Size     int           // echo: UDP payload bytes
	Interval time.Duration // echo: between probes
	Wait     time.Duration // echo: for replies after the last probe
	Full     bool          // capacity: every phase, not the quick run
	Reverse  bool          // capacity, tcp, quic: the other way
	Streams  int           // tcp, quic
	Duration time.Duration // tcp, quic
	Iface    string        // link: the agent's interface
	Period   time.Duration // link: between the two counter reads
}

// Module is what /probe?module=NAME runs against its target.
type Module struct {
	Name    string
	Type    TestType
	Class   Class
	Params  Params
	Timeout time.Duration // used when the scraper gives none
	// AnyTarget lets the target be any host; else it must be one of the
	// configured agents, by name or address, so that /probe cannot be
	// pointed at arbitrary hosts.
	AnyTarget bool
	Key       []byte
}

// Defaults and bounds.
const (
	DefaultName           = "monitor"
	DefaultAggregateEvery = time.Minute
	DefaultKeepRaw        = 7 * 24 * time.Hour
	minInterval           = time.Second
	maxTests              = 10000
	maxModuleTimeout      = 2 * time.Minute
)

// DefaultPeriods are the aggregation periods of a type the config leaves alone.
var DefaultPeriods = []time.Duration{5 * time.Minute, time.Hour, 24 * time.Hour}

// ConfigError is a config problem at one line.
type ConfigError = yamlline.Error

// yl makes config errors that name their line.
var yl = yamlline.Reader{Doc: "config"}

func errAt(n *yaml.Node, format string, args ...any) error { return yl.At(n, format, args...) }

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// LoadConfig reads a config file; key files and the archive are relative to
// its folder.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := ParseConfig(data, filepath.Dir(path))
	if ce, ok := errors.AsType[*ConfigError](err); ok {
		ce.File = path
	}
	return c, err
}

// ParseConfig parses a YAML config; every error is a *ConfigError naming a
// line.
func ParseConfig(data []byte, dir string) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, yl.FromParser(err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, &ConfigError{Doc: "config", Line: 1, Msg: "empty config"}
	}
	root := doc.Content[0]
	f, err := yl.Fields(root, "name", "archive", "listen", "web", "aggregate_every", "key_file", "agents", "types", "tests", "modules")
	if err != nil {
		return nil, err
	}
	c := &Config{Name: DefaultName, Archive: filepath.Join(dir, "monitor.db"), AggregateEvery: DefaultAggregateEvery,
		Agents: map[string]*Agent{}, Types: map[TestType]TypeRules{}, Modules: map[string]*Module{}}
	if v := f["name"]; v != nil {
		if c.Name, err = name(v); err != nil {
			return nil, err
		}
	}
	if v := f["archive"]; v != nil {
		s, err := yl.Str(v)
		if err != nil {
			return nil, err
		}
		c.Archive = relTo(dir, s)
	}
	for _, k := range []string{"listen", "web"} {
		v := f[k]
		if v == nil {
			continue
		}
		s, err := yl.Str(v)
		if err != nil {
			return nil, err
		}
		if _, _, err := net.SplitHostPort(s); err != nil {
			return nil, errAt(v, "%s %q: want HOST:PORT, e.g. 127.0.0.1:9470", k, s)
		}
		if k == "listen" {
			c.Listen = s
		} else {
			c.Web = s
		}
	}
	if v := f["aggregate_every"]; v != nil {
		if c.AggregateEvery, err = duration(v); err != nil {
			return nil, err
		}
		if c.AggregateEvery < time.Second {
			return nil, errAt(v, "aggregate_every %v: want at least 1s", c.AggregateEvery)
		}
	}
	var key []byte
	if v := f["key_file"]; v != nil {
		if key, err = keyFile(v, dir); err != nil {
			return nil, err
		}
	}
	if v := f["agents"]; v != nil {
		if err := c.parseAgents(v, dir, key); err != nil {
			return nil, err
		}
	}
	for _, t := range Types() {
		c.Types[t] = TypeRules{Periods: DefaultPeriods, KeepRaw: DefaultKeepRaw}
	}
	if v := f["types"]; v != nil {
		if err := c.parseTypes(v); err != nil {
			return nil, err
		}
	}
	if v := f["tests"]; v != nil {
		if err := c.parseTests(v); err != nil {
			return nil, err
		}
	}
	if v := f["modules"]; v != nil {
		if err := c.parseModules(v, dir, key); err != nil {
			return nil, err
		}
	}
	if len(c.Tests) == 0 && len(c.Modules) == 0 {
		return nil, errAt(root, "no tests and no modules: nothing to do")
	}
	return c, nil
}

func (c *Config) parseAgents(v *yaml.Node, dir string, key []byte) error {
	if v.Kind != yaml.MappingNode {
		return errAt(v, "want a mapping of agent names to {address: HOST[:PORT], key_file: FILE}")
	}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, a := v.Content[i], v.Content[i+1]
		n, err := name(k)
		if err != nil {
			return err
		}
		if n == c.Name {
			return errAt(k, "agent %q has the monitor's own name", n)
		}
		if c.Agents[n] != nil {
			return errAt(k, "agent %q given twice", n)
		}
		ag := &Agent{Name: n, Key: key}
		if a.Kind == yaml.ScalarNode {
			ag.Address, err = yl.Str(a)
		} else {
			var f map[string]*yaml.Node
			if f, err = yl.Fields(a, "address", "key_file", "peer_key_file"); err != nil {
				return err
			}
			if f["address"] == nil {
				return errAt(a, "agent %q has no address", n)
			}
			if ag.Address, err = yl.Str(f["address"]); err == nil && f["key_file"] != nil {
				ag.Key, err = keyFile(f["key_file"], dir)
			}
			if v := f["peer_key_file"]; err == nil && v != nil {
				// A path on the agent's host: nothing here can check it.
				if ag.PeerKeyFile, err = yl.Str(v); err == nil && !filepath.IsAbs(ag.PeerKeyFile) {
					err = errAt(v, "peer_key_file %q: want an absolute path on the agent's host", ag.PeerKeyFile)
				}
			}
		}
		if err != nil {
			return err
		}
		if len(ag.Address) > 255 {
			return errAt(a, "agent address of %d characters: at most 255", len(ag.Address))
		}
		c.Agents[n] = ag
	}
	return nil
}

func (c *Config) parseTypes(v *yaml.Node) error {
	if v.Kind != yaml.MappingNode {
		return errAt(v, "want a mapping of test types to {aggregate: [5m, 1h, 24h], keep_raw: 7d}")
	}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, r := v.Content[i], v.Content[i+1]
		t, err := ParseTestType(k.Value)
		if err != nil {
			return errAt(k, "%v", err)
		}
		f, err := yl.Fields(r, "aggregate", "keep_raw")
		if err != nil {
			return err
		}
		rules := c.Types[t]
		if a := f["aggregate"]; a != nil {
			if a.Kind != yaml.SequenceNode || len(a.Content) == 0 || len(a.Content) > 8 {
				return errAt(a, "want a list of 1 to 8 periods, e.g. [5m, 1h, 24h]")
			}
			rules.Periods = nil
			for _, e := range a.Content {
				d, err := duration(e)
				if err != nil {
					return err
				}
				if d < time.Minute || d%time.Minute != 0 {
					return errAt(e, "aggregation period %v: want whole minutes, at least 1m", d)
				}
				if n := len(rules.Periods); n > 0 && d <= rules.Periods[n-1] {
					return errAt(e, "aggregation periods must ascend: %v after %v", d, rules.Periods[n-1])
				}
				rules.Periods = append(rules.Periods, d)
			}
		}
		if kr := f["keep_raw"]; kr != nil {
			if rules.KeepRaw, err = duration(kr); err != nil {
				return err
			}
		}
		// A late run can land in any bucket up to the longest period back;
		// its bucket must still have its raw values to be aggregated again.
		if longest := rules.Periods[len(rules.Periods)-1]; rules.KeepRaw < 2*longest {
			return errAt(r, "keep_raw %v: want at least twice the longest aggregation period (%v)", rules.KeepRaw, 2*longest)
		}
		c.Types[t] = rules
	}
	return nil
}

func (c *Config) parseTests(v *yaml.Node) error {
	if v.Kind != yaml.SequenceNode {
		return errAt(v, "want a list of tests")
	}
	if len(v.Content) > maxTests {
		return errAt(v, "%d tests: at most %d", len(v.Content), maxTests)
	}
	seen := map[string]bool{}
	for _, tn := range v.Content {
		f, err := yl.Fields(tn, "name", "type", "class", "from", "to", "schedule", "params", "timeout")
		if err != nil {
			return err
		}
		for _, req := range []string{"name", "type", "to", "schedule"} {
			if f[req] == nil {
				return errAt(tn, "test without %s", req)
			}
		}
		t := &Test{From: c.Name, Line: tn.Line}
		if t.Name, err = name(f["name"]); err != nil {
			return err
		}
		if seen[t.Name] {
			return errAt(f["name"], "test %q given twice", t.Name)
		}
		seen[t.Name] = true
		if t.Type, err = ParseTestType(f["type"].Value); err != nil {
			return errAt(f["type"], "%v", err)
		}
		t.Class = t.Type.DefaultClass()
		if v := f["class"]; v != nil {
			if t.Class, err = ParseClass(v.Value); err != nil {
				return errAt(v, "%v", err)
			}
		}
		t.To = f["to"].Value
		if t.Agent = c.Agents[t.To]; t.Agent == nil {
			return errAt(f["to"], "to %q: no such agent under agents:", t.To)
		}
		if v := f["from"]; v != nil && v.Value != c.Name {
			switch t.Source = c.Agents[v.Value]; {
			case t.Source == nil:
				return errAt(v, "from %q: neither this monitor (%q) nor an agent under agents:", v.Value, c.Name)
			case v.Value == t.To:
				return errAt(v, "from %q: the same agent as to", v.Value)
			case t.Type == TypeLink:
				return errAt(v, "from %q: a link test reads one agent's counters and has no from", v.Value)
			}
			t.From = v.Value
		}
		if t.Params, err = parseParams(t.Type, f["params"]); err != nil {
			return err
		}
		if t.Schedule, err = parseSchedule(f["schedule"]); err != nil {
			return err
		}
		t.Timeout = t.Params.timeout(t.Type)
		if t.Source != nil {
			t.Timeout += measureStart
		}
		if v := f["timeout"]; v != nil {
			if t.Timeout, err = duration(v); err != nil {
				return err
			}
			if t.Timeout < time.Second {
				return errAt(v, "timeout %v: want at least 1s", t.Timeout)
			}
		}
		c.Tests = append(c.Tests, t)
	}
	return nil
}

func (c *Config) parseModules(v *yaml.Node, dir string, key []byte) error {
	if v.Kind != yaml.MappingNode {
		return errAt(v, "want a mapping of module names to {type: echo, params: {...}}")
	}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, mn := v.Content[i], v.Content[i+1]
		n, err := name(k)
		if err != nil {
			return err
		}
		if c.Modules[n] != nil {
			return errAt(k, "module %q given twice", n)
		}
		f, err := yl.Fields(mn, "type", "class", "params", "timeout", "any_target", "key_file")
		if err != nil {
			return err
		}
		if f["type"] == nil {
			return errAt(mn, "module %q has no type", n)
		}
		m := &Module{Name: n, Key: key}
		if m.Type, err = ParseTestType(f["type"].Value); err != nil {
			return errAt(f["type"], "%v", err)
		}
		m.Class = m.Type.DefaultClass()
		if v := f["class"]; v != nil {
			if m.Class, err = ParseClass(v.Value); err != nil {
				return errAt(v, "%v", err)
			}
		}
		if m.Params, err = parseParams(m.Type, f["params"]); err != nil {
			return err
		}
		m.Timeout = min(m.Params.timeout(m.Type), maxModuleTimeout)
		if v := f["timeout"]; v != nil {
			if m.Timeout, err = duration(v); err != nil {
				return err
			}
			if m.Timeout < time.Second || m.Timeout > maxModuleTimeout {
				return errAt(v, "timeout %v: want 1s to %v", m.Timeout, maxModuleTimeout)
			}
		}
		if v := f["any_target"]; v != nil {
			if m.AnyTarget, err = boolean(v); err != nil {
				return err
			}
		}
		if v := f["key_file"]; v != nil {
			if m.Key, err = keyFile(v, dir); err != nil {
				return err
			}
		}
		c.Modules[n] = m
	}
	return nil
}

// paramKeys are the parameters each type takes.
var paramKeys = [numTypes][]string{
	TypeEcho:     {"count", "size", "interval", "wait"},
	TypeCapacity: {"full", "reverse"},
	TypeTCP:      {"streams", "duration", "reverse"},
	TypeQUIC:     {"streams", "duration", "reverse"},
	TypeLink:     {"interface", "period"},
}

// defaultParams are a type's parameters unless the config says otherwise.
func defaultParams() Params {
	return Params{Count: 20, Size: 64, Interval: 10 * time.Millisecond, Wait: time.Second,
		Streams: 1, Duration: 5 * time.Second, Period: 5 * time.Second}
}

func parseParams(t TestType, v *yaml.Node) (Params, error) {
	p := defaultParams()
	if v == nil {
		if t == TypeLink {
			return p, &ConfigError{Doc: "config", Msg: "a link test needs params: {interface: NAME}"}
		}
		return p, nil
	}
	f, err := yl.Fields(v, paramKeys[t]...)
	if err != nil {
		return p, err
	}
	for k, n := range f {
		switch k {
		case "count":
			p.Count, err = yl.Positive(n, 100_000)
		case "size":
			if p.Size, err = yl.Positive(n, 65507); err == nil && p.Size < 32 {
				err = errAt(n, "size %d: an echo probe needs at least 32 bytes", p.Size)
			}
		case "streams":
			p.Streams, err = yl.Positive(n, 1024)
		case "interval":
			p.Interval, err = duration(n)
		case "wait", "duration", "period":
			var d time.Duration
			if d, err = duration(n); err == nil && (d <= 0 || d > time.Hour) {
				err = errAt(n, "%s %v: want above 0, at most 1h", k, d)
			}
			switch k {
			case "wait":
				p.Wait = d
			case "duration":
				p.Duration = d
			default:
				p.Period = d
			}
		case "full":
			p.Full, err = boolean(n)
		case "reverse":
			p.Reverse, err = boolean(n)
		case "interface":
			p.Iface, err = yl.Str(n)
		}
		if err != nil {
			return p, err
		}
	}
	if t == TypeEcho && time.Duration(p.Count)*p.Interval > time.Hour {
		return p, errAt(v, "%d probes every %v take over an hour", p.Count, p.Interval)
	}
	if t == TypeLink && p.Iface == "" {
		return p, errAt(v, "a link test needs interface: NAME")
	}
	return p, nil
}

// timeout is how long a run of type t with p may take by default.
func (p Params) timeout(t TestType) time.Duration {
	switch t {
	case TypeEcho:
		return time.Duration(p.Count)*p.Interval + p.Wait + 10*time.Second
	case TypeCapacity:
		if p.Full {
			return 5 * time.Minute
		}
		return time.Minute
	case TypeTCP, TypeQUIC:
		return p.Duration + 20*time.Second
	}
	return p.Period + 10*time.Second
}

func parseSchedule(v *yaml.Node) (Schedule, error) {
	var s Schedule
	f, err := yl.Fields(v, "interval", "slip", "sliprand", "start", "until", "max_runs")
	if err != nil {
		return s, err
	}
	if f["interval"] == nil {
		return s, errAt(v, "a schedule needs an interval")
	}
	if s.Interval, err = duration(f["interval"]); err != nil {
		return s, err
	}
	if s.Interval < minInterval {
		return s, errAt(f["interval"], "interval %v: want at least %v", s.Interval, minInterval)
	}
	s.Slip = s.Interval / 2
	s.SlipRand = true
	if n := f["slip"]; n != nil {
		if s.Slip, err = duration(n); err != nil {
			return s, err
		}
		if s.Slip > s.Interval {
			return s, errAt(n, "slip %v exceeds the interval %v: runs would pile up", s.Slip, s.Interval)
		}
	}
	if n := f["sliprand"]; n != nil {
		if s.SlipRand, err = boolean(n); err != nil {
			return s, err
		}
	}
	for _, k := range []string{"start", "until"} {
		n := f[k]
		if n == nil {
			continue
		}
		tm, err := time.Parse(time.RFC3339, n.Value)
		if err != nil {
			return s, errAt(n, "%s %q: want an RFC 3339 time, e.g. 2026-01-02T15:04:05Z", k, n.Value)
		}
		if k == "start" {
			s.Start = tm
		} else {
			s.Until = tm
		}
	}
	if !s.Start.IsZero() && !s.Until.IsZero() && !s.Until.After(s.Start) {
		return s, errAt(f["until"], "until %v is not after start %v", s.Until, s.Start)
	}
	if n := f["max_runs"]; n != nil {
		if s.MaxRuns, err = yl.Positive(n, 1<<30); err != nil {
			return s, err
		}
	}
	return s, nil
}

// fields reads a mapping whose keys must be among allowed, each once.
func name(v *yaml.Node) (string, error) {
	s, err := yl.Str(v)
	if err == nil && !nameRE.MatchString(s) {
		err = errAt(v, "name %q: want 1 to 64 letters, digits, '.', '-' or '_'", s)
	}
	return s, err
}

func boolean(v *yaml.Node) (bool, error) {
	switch v.Value {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, errAt(v, "want true or false, not %q", v.Value)
}

// duration reads a Go duration; a "d" suffix counts days (7d).
func duration(v *yaml.Node) (time.Duration, error) {
	if v.Kind == yaml.ScalarNode && v.Value == "0" {
		return 0, nil
	}
	s := v.Value
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 && n <= 3650 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if v.Kind != yaml.ScalarNode || err != nil || d < 0 {
		return 0, errAt(v, "bad duration %q: want e.g. 30s, 5m, 1h or 7d", v.Value)
	}
	return d, nil
}

// keyFile reads a pre-shared key file as probe serve's --key-file does.
func keyFile(v *yaml.Node, dir string) ([]byte, error) {
	s, err := yl.Str(v)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(relTo(dir, s))
	if err != nil {
		return nil, errAt(v, "key_file: %v", err)
	}
	// The key is the file's bytes as they are, as probe serve reads it.
	if len(b) < 16 {
		return nil, errAt(v, "key_file %s holds %d bytes; use at least 16", s, len(b))
	}
	return b, nil
}

func relTo(dir, p string) string {
	if filepath.IsAbs(p) || dir == "" {
		return p
	}
	return filepath.Join(dir, p)
}
