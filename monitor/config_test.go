package monitor

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const goodConfig = `
name: mon
listen: 127.0.0.1:0
agents:
  b: {address: 127.0.0.1:7323}
  c: 127.0.0.1:7324
types:
  echo: {aggregate: [5m, 1h], keep_raw: 1d}
tests:
  - name: rtt-b
    type: latency-loss-jitter
    to: b
    schedule: {interval: 30s, slip: 5s, max_runs: 3}
    params: {count: 10, interval: 1ms}
  - name: tcp-c
    type: tcp
    to: c
    schedule: {interval: 10m, start: "2026-01-02T15:04:05Z"}
    params: {streams: 2, duration: 2s, reverse: true}
  - name: load-c
    type: link
    to: c
    schedule: {interval: 1m}
    params: {interface: eth0}
modules:
  echo: {type: echo, params: {count: 5}}
`

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig([]byte(goodConfig), "/etc/probe")
	if err != nil {
		t.Fatal(err)
	}
	if c.Archive != "/etc/probe/monitor.db" {
		t.Errorf("archive %q", c.Archive)
	}
	if len(c.Tests) != 3 {
		t.Fatalf("%d tests", len(c.Tests))
	}
	e, tc, l := c.Tests[0], c.Tests[1], c.Tests[2]
	if e.Type != TypeEcho || e.Class != Normal || e.From != "mon" || e.To != "b" || e.Params.Count != 10 || e.Schedule.Slip != 5*time.Second || e.Schedule.MaxRuns != 3 {
		t.Errorf("echo test %+v", e)
	}
	if tc.Class != Exclusive || !tc.Params.Reverse || tc.Params.Streams != 2 || tc.Schedule.Slip != 5*time.Minute || tc.Schedule.Start.IsZero() {
		t.Errorf("tcp test %+v", tc)
	}
	if l.Class != Background || l.Params.Iface != "eth0" {
		t.Errorf("link test %+v", l)
	}
	if r := c.Types[TypeEcho]; len(r.Periods) != 2 || r.KeepRaw != 24*time.Hour {
		t.Errorf("echo rules %+v", r)
	}
	if r := c.Types[TypeTCP]; len(r.Periods) != 3 || r.KeepRaw != DefaultKeepRaw {
		t.Errorf("tcp rules %+v", r)
	}
	if c.Modules["echo"] == nil || c.Modules["echo"].Params.Count != 5 {
		t.Errorf("modules %+v", c.Modules)
	}
}

// TestConfigErrorLines checks that each mistake is reported at its line.
func TestConfigErrorLines(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		line       int
		want       string
	}{
		{"unknown key", "agents: {b: x}\nteste: []\n", 2, `unknown key "teste"`},
		{"unknown agent", "agents: {b: x}\ntests:\n  - name: t\n    type: echo\n    to: z\n    schedule: {interval: 1s}\n", 5, `to "z"`},
		{"bad type", "agents: {b: x}\ntests:\n  - name: t\n    type: ping\n    to: b\n    schedule: {interval: 1s}\n", 4, "unknown test type"},
		{"bad class", "agents: {b: x}\ntests:\n  - name: t\n    type: echo\n    class: urgent\n    to: b\n    schedule: {interval: 1s}\n", 5, "unknown class"},
		{"short interval", "agents: {b: x}\ntests:\n  - name: t\n    type: echo\n    to: b\n    schedule:\n      interval: 10ms\n", 7, "at least 1s"},
		{"slip over interval", "agents: {b: x}\ntests:\n  - name: t\n    type: echo\n    to: b\n    schedule:\n      interval: 10s\n      slip: 20s\n", 8, "exceeds"},
		{"param of another type", "agents: {b: x}\ntests:\n  - name: t\n    type: echo\n    to: b\n    schedule: {interval: 1s}\n    params:\n      streams: 4\n", 8, `unknown key "streams"`},
		{"twice", "agents: {b: x}\ntests:\n  - name: t\n    type: echo\n    to: b\n    schedule: {interval: 1s}\n  - name: t\n    type: echo\n    to: b\n    schedule: {interval: 1s}\n", 7, "given twice"},
		{"keep_raw short", "agents: {b: x}\ntypes:\n  tcp:\n    keep_raw: 1d\nmodules: {m: {type: echo}}\n", 4, "twice the longest"},
		{"syntax", "agents: {b: x\n", 1, "expected"},
		{"from elsewhere", "agents: {b: x}\ntests:\n  - name: t\n    type: echo\n    from: b\n    to: b\n    schedule: {interval: 1s}\n", 5, "from"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.yaml), "")
			ce, ok := errors.AsType[*ConfigError](err)
			if !ok {
				t.Fatalf("error %v, want a ConfigError", err)
			}
			if ce.Line != tc.line || !strings.Contains(ce.Msg, tc.want) {
				t.Errorf("got line %d %q, want line %d with %q", ce.Line, ce.Msg, tc.line, tc.want)
			}
		})
	}
}

func TestLoadConfigNamesFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "m.yaml")
	os.WriteFile(p, []byte("agents: {b: x}\nbogus: 1\n"), 0o644)
	_, err := LoadConfig(p)
	if err == nil || !strings.HasPrefix(err.Error(), p+":2: ") {
		t.Errorf("error %v, want it to start with %s:2:", err, p)
	}
}
