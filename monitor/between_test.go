package monitor

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/probe-dev/probe/probe"
	"github.com/probe-dev/probe/testbed"
)

func TestConfigFromAgent(t *testing.T) {
	dir := t.TempDir()
	base := "name: mon\nagents:\n  a: {address: 192.0.2.1, peer_key_file: /etc/probe/key}\n  b: 192.0.2.2\ntests:\n"
	c, err := ParseConfig([]byte(base+"  - {name: e, type: echo, from: a, to: b, schedule: {interval: 1m}}\n"+
		"  - {name: m, type: echo, from: mon, to: b, schedule: {interval: 1m}}\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	e, m := c.Tests[0], c.Tests[1]
	if e.From != "a" || e.Source != c.Agents["a"] || !slices.Equal(e.EndPoints(), []string{"a", "b"}) || c.Agents["a"].PeerKeyFile != "/etc/probe/key" {
		t.Errorf("from an agent: %+v", e)
	}
	if e.Timeout != m.Timeout+measureStart {
		t.Errorf("timeout %v between agents, %v from the monitor: want %v more", e.Timeout, m.Timeout, measureStart)
	}
	if m.From != "mon" || m.Source != nil {
		t.Errorf("from the monitor: %+v", m)
	}
	for _, tc := range []struct{ test, want string }{
		{"{name: x, type: echo, from: z, to: b, schedule: {interval: 1m}}", `config:7: from "z": neither this monitor ("mon") nor an agent under agents:`},
		{"{name: x, type: echo, from: b, to: b, schedule: {interval: 1m}}", `config:7: from "b": the same agent as to`},
		{"{name: x, type: link, from: a, to: b, schedule: {interval: 1m}, params: {interface: eth0}}", `config:7: from "a": a link test reads one agent's counters and has no from`},
	} {
		_, err := ParseConfig([]byte(base+"  - {name: ok, type: echo, to: b, schedule: {interval: 1m}}\n  - "+tc.test+"\n"), dir)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s: %v, want %s", tc.test, err, tc.want)
		}
	}
	_, err = ParseConfig([]byte("agents: {a: {address: x, peer_key_file: key}}\ntests: [{name: e, type: echo, to: a, schedule: {interval: 1m}}]\n"), dir)
	if err == nil || !strings.Contains(err.Error(), "want an absolute path on the agent's host") {
		t.Errorf("relative peer_key_file: %v", err)
	}
}

func TestMeasureArgs(t *testing.T) {
	for _, tc := range []struct {
		typ  TestType
		p    Params
		want string
	}{
		{TypeEcho, Params{Count: 20, Size: 64, Interval: 10 * time.Millisecond, Wait: time.Second}, "measure -h b:7400 --mode echo --json --key-file /k -n 20 -l 64 -i 10ms --wait 1s"},
		{TypeTCP, Params{Streams: 4, Duration: 5 * time.Second, Reverse: true}, "measure -h b:7400 --mode tcp --json --key-file /k -P 4 -t 5s -R"},
		{TypeCapacity, Params{}, "measure -h b:7400 --mode capacity --json --key-file /k --quick"},
		{TypeQUIC, Params{Streams: 1, Duration: time.Second}, "measure -h b:7400 --mode quic --json --key-file /k -P 1 -t 1s"},
	} {
		args, err := measureArgs("b:7400", "/k", tc.typ, tc.p)
		if got := strings.Join(args, " "); err != nil || got != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.typ, got, err, tc.want)
		}
	}
	if _, err := measureArgs("-x", "", TypeEcho, Params{}); err == nil {
		t.Error("an address that reads as a flag was taken")
	}
	if _, err := measureArgs("b", "", TypeLink, Params{}); err == nil {
		t.Error("a link test between agents was taken")
	}
}

func TestMeasureJSON(t *testing.T) {
	echo := `{"schema":"probe/echo/1","measurements":[{"sent":20,"received":19,"lost":1,
		"rtt":{"min_us":90,"median_us":120},"user_rtt":{"min_us":150,"median_us":200},"round_trip":{"jitter_us":7},"error":null}]}`
	v, err := measureJSON(TypeEcho, Params{}, []byte(echo))
	if err != nil || v["rtt"] != 120e-6 || v["rtt_min"] != 90e-6 || v["jitter"] != 7e-6 || v["loss"] != 0.05 {
		t.Errorf("echo: %v, %v", v, err)
	}
	lost := `{"schema":"probe/echo/1","measurements":[{"sent":20,"received":0,"lost":20,"rtt":null,"user_rtt":null,"round_trip":null,"error":"no replies"}]}`
	if v, err := measureJSON(TypeEcho, Params{}, []byte(lost)); err != nil || len(v) != 1 || v["loss"] != 1 {
		t.Errorf("echo, every probe lost: %v, %v (want loss 1 and nothing else)", v, err)
	}
	tcp := `{"schema":"probe/tcp/1","end":{"received_bps":9e6,"client":{"retransmits":3},"agent":{"retransmits":5}}}`
	if v, err := measureJSON(TypeTCP, Params{Reverse: true}, []byte(tcp)); err != nil || v["throughput"] != 9e6 || v["retransmits"] != 5 {
		t.Errorf("tcp -R: %v, %v (want the agent's retransmits: it sent)", v, err)
	}
	for _, bad := range []string{"", "{", `{"schema":"probe/tcp/1"}`, `{"schema":"probe/echo/2","measurements":[]}`} {
		if _, err := measureJSON(TypeEcho, Params{}, []byte(bad)); err == nil {
			t.Errorf("%q taken as an echo document", bad)
		}
	}
}

// TestTestsBetweenAgents runs a monitor whose tests go from agent a to agent
// b of a two-namespace testbed shaped to 20 Mbit/s, the monitor being
// neither: a runs probe measure against b in a run session. The archive must
// hold every run, finished, with the end points a → b, an echo RTT and no
// loss, and a TCP throughput within the link's bracket.
func TestTestsBetweenAgents(t *testing.T) {
	if err := testbed.CheckPrivileges(); err != nil {
		t.Skipf("needs root for the testbed and the agents' eBPF: %v", err)
	}
	if testing.Short() {
		t.Skip("-short: builds probe and runs two agents for about half a minute")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "probe")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/probe").CombinedOutput(); err != nil {
		t.Fatalf("build probe: %v\n%s", err, out)
	}
	const rate = 20e6
	tb, err := testbed.Up(testbed.Config{Name: "h16mon2", Rate: rate})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tb.Down() })
	key := filepath.Join(dir, "key")
	keyBytes := []byte(rand.Text())
	if err := os.WriteFile(key, keyBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	const port = 26323
	addr := func(h *testbed.Host) string { return net.JoinHostPort(h.Addr.String(), fmt.Sprint(port)) }
	for _, h := range []*testbed.Host{tb.A, tb.B} {
		cmd := exec.Command(bin, "serve", "--listen", addr(h), "--key-file", key, "--allow-run")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := h.Start(cmd); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
			if t.Failed() {
				t.Logf("agent %s:\n%s", h.Name, stderr.String())
			}
		})
	}
	// The monitor reaches only a, from a's namespace.
	dial := func(ctx context.Context, address string, k []byte) (*probe.Client, error) {
		var cl *probe.Client
		err := tb.A.Do(func() (err error) {
			cl, err = probe.Dial(ctx, address, probe.ClientConfig{Key: k, Timeout: 10 * time.Second})
			return err
		})
		return cl, err
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		cl, err := dial(ctx, addr(tb.A), keyBytes)
		cancel()
		if err == nil {
			cl.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent a does not answer: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c, err := ParseConfig(fmt.Appendf(nil, `
name: mon
key_file: %s
agents:
  a: {address: "%s", peer_key_file: %s}
  b: "%s"
tests:
  - {name: rtt-ab, type: echo, from: a, to: b, schedule: {interval: 3s, slip: 2s, max_runs: 3}, params: {count: 50, interval: 5ms, wait: 500ms}}
  - {name: tcp-ab, type: tcp, from: a, to: b, schedule: {interval: 10s, slip: 8s, max_runs: 2}, params: {duration: 3s}}
`, key, addr(tb.A), key, addr(tb.B)), dir)
	if err != nil {
		t.Fatal(err)
	}
	arc := openTestArchive(t, c, filepath.Join(dir, "m.db"))
	want := 0
	for _, tst := range c.Tests {
		want += tst.Schedule.MaxRuns
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var mu sync.Mutex
	got := 0
	m := New(c, arc, Options{Dial: dial, OnRun: func(*Test, *Run) {
		mu.Lock()
		defer mu.Unlock()
		if got++; got == want {
			cancel()
		}
	}})
	m.Run(ctx)

	runs, err := arc.Runs(context.Background(), RunFilter{})
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := linkTruth(t, tb, rate)
	lo, hi = lo*1448/1500, hi*1448/1500 // TCP payload of a full-size IP packet
	n := map[string]int{}
	for _, r := range runs {
		t.Logf("%s %v %v..%v %v %s", r.Instance, r.State, r.Start.Format("05.000"), r.End.Format("05.000"), r.Values, r.Error)
		if r.State != Finished {
			// Both tests hold a and b: one waits for the other, and a run
			// without a slot in its window is not started, never failed.
			if r.State == Failed {
				t.Errorf("%s failed: %s", r.Instance, r.Error)
			}
			continue
		}
		n[r.Instance]++
		switch v := r.Values; r.Instance {
		case "rtt-ab":
			if v["loss"] != 0 || v["rtt"] <= 0 || v["rtt"] > 0.01 || v["rtt_min"] > v["rtt"] {
				t.Errorf("echo a → b on an idle 20 Mbit/s link: %v, want no loss and 0 < rtt_min ≤ rtt < 10 ms", v)
			}
		case "tcp-ab":
			// 3 s of one stream, slow start included: 10 % below the
			// link's goodput at most.
			if v["throughput"] < 0.9*lo || v["throughput"] > 1.05*hi {
				t.Errorf("tcp a → b: %.3f Mbit/s, want [%.3f, %.3f] (the link's goodput -10 %%, +5 %%)", v["throughput"]/1e6, 0.9*lo/1e6, 1.05*hi/1e6)
			}
		}
	}
	if n["rtt-ab"] == 0 || n["tcp-ab"] == 0 {
		t.Errorf("finished runs %v: want some of each test", n)
	}
	insts, err := arc.Instances(context.Background(), TypeEcho, false)
	if err != nil || len(insts) != 1 || insts[0].Source != "a" || insts[0].Destination != "b" {
		t.Errorf("the echo instance's end points: %+v, %v; want a → b", insts, err)
	}
	if bad := Overlaps(c, runs); len(bad) > 0 {
		t.Errorf("class rules broken: %v", bad)
	}
}

// linkTruth is the IP-layer rate a testbed link shaped to rate carries: from
// what a backlogged flood realizes (tbf's timer wakes late, which only lowers
// the rate) to the configured rate of 1514-byte frames.
func linkTruth(t *testing.T, tb *testbed.Testbed, rate float64) (lo, hi float64) {
	t.Helper()
	hi = rate * 1500 / 1514
	realized, err := tb.RealizedRate(rate, time.Second)
	if err != nil {
		t.Fatalf("realized rate: %v", err)
	}
	return min(realized, hi), hi
}
