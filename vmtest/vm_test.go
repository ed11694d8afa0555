package vmtest

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/probe-dev/probe/estimator"
)

// The testbed under test; nil when PROBE_VM_ENV is not set.
var env *Env

// Why the tests skip, when they do.
var skipWhy string

func TestMain(m *testing.M) {
	path := os.Getenv("PROBE_VM_ENV")
	switch {
	case path == "":
		skipWhy = "PROBE_VM_ENV is not set: bring the multi-VM testbed up (make vm-up) and run make vm-test"
	case os.Geteuid() != 0:
		skipWhy = "needs root: the testbed's network namespace is entered with ip netns exec"
	default:
		var err error
		if env, err = Load(path); err != nil {
			fmt.Fprintln(os.Stderr, "vmtest:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	if env != nil && env.Paths != "" {
		// Leave the VMs shaped as the testbed came up.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if out, err := Output(exec.CommandContext(ctx, env.Shape, env.Paths)); err != nil {
			fmt.Fprintf(os.Stderr, "restoring the shaping of %s: %v\n", env.Paths, err)
		} else {
			fmt.Fprint(os.Stderr, out)
		}
		cancel()
	}
	os.Exit(code)
}

func need(t *testing.T) context.Context {
	t.Helper()
	if env == nil {
		t.Skip(skipWhy)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func shape(t *testing.T, ctx context.Context, conf string) {
	t.Helper()
	out, err := env.ShapeWith(ctx, conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("shaped:\n%s", strings.TrimSpace(out))
}

// measureFrom runs probe measure --json in a client VM against the server
// VM's agent, with eBPF timestamps when the guest kernel allows them.
// QUIC uploads go without UDP GSO: netem would take a GSO batch for one
// packet with one set of headers, and shape it so.
func measureFrom(t *testing.T, ctx context.Context, vm string, args ...string) map[string]any {
	t.Helper()
	cmd := fmt.Sprintf("sudo env QUIC_GO_DISABLE_GSO=true %s measure -h %s --key-file %s --json %s", GuestProbe, env.Addr["server"], GuestKey, strings.Join(args, " "))
	start := time.Now()
	out, err := Output(env.Guest(ctx, vm, cmd))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: probe measure %s: %.1f s", vm, strings.Join(args, " "), time.Since(start).Seconds())
	return measurement(t, out)
}

// measurement reads probe's JSON document (docs/json.md): an echo run's
// one measurement, a capacity run's result, or a tcp or quic test whole.
func measurement(t *testing.T, out string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("%v in %q", err, out)
	}
	switch m["schema"] {
	case "probe/echo/1":
		if ms, ok := m["measurements"].([]any); ok && len(ms) == 1 {
			return ms[0].(map[string]any)
		}
		t.Fatalf("not one echo measurement: %s", out)
	case "probe/capacity/1":
		return m["result"].(map[string]any)
	}
	return m
}

// num is the number at path in a JSON object.
func num(t *testing.T, m map[string]any, path ...string) float64 {
	t.Helper()
	var v any = m
	for _, k := range path {
		o, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("no %s in %v", strings.Join(path, "."), m)
		}
		v = o[k]
	}
	f, ok := v.(float64)
	if !ok {
		t.Fatalf("%s is %v, not a number", strings.Join(path, "."), v)
	}
	return f
}

// The host reaches every VM's agent over the private network, with the key.
func TestAgentsAnswer(t *testing.T) {
	ctx := need(t)
	shape(t, ctx, "default none\n")
	for _, vm := range env.VMs {
		out, err := Output(env.Host(ctx, env.Probe, "measure", "-h", env.Addr[vm], "--key-file", env.KeyFile, "-n", "20", "-i", "5ms", "--json"))
		if err != nil && strings.Contains(err.Error(), "all 20 probes lost") {
			// Seen twice, each time on the first session from the host to
			// client1 right after vm/up.sh, and never on a second try;
			// not explained yet (docs/vm.md). Said, then tried once more.
			t.Logf("KNOWN: host -> %s: every probe of the first session lost; again", vm)
			out, err = Output(env.Host(ctx, env.Probe, "measure", "-h", env.Addr[vm], "--key-file", env.KeyFile, "-n", "20", "-i", "5ms", "--json"))
		}
		if err != nil {
			t.Fatal(err)
		}
		m := measurement(t, out)
		if m["received"] != 20.0 {
			t.Fatalf("%s (%s): %s", vm, env.Addr[vm], out)
		}
		t.Logf("host -> %s (%s): 20 of 20 echoed, RTT median %.0f µs (%v)", vm, env.Addr[vm], num(t, m, "rtt", "median_us"), m["rtt"].(map[string]any)["source"])
	}
}

// delay 20ms on both ends' egress: the kernel RTT median between each client
// and the server is the undelayed one plus 40 ms. TCG guests add their own
// jitter, so the undelayed RTT is measured first, in the same run, and the
// tolerance is taken from the spread of both measurements: the guests'
// jitter moves with the host's load between the two.
func TestEchoDelay(t *testing.T) {
	ctx := need(t)
	const delay = 20 * time.Millisecond
	args := []string{"-n", "300", "-i", "10ms", "--no-gso"}
	shape(t, ctx, "default none\n")
	base := map[string]map[string]any{}
	for _, vm := range env.Clients() {
		base[vm] = measureFrom(t, ctx, vm, args...)
	}
	shape(t, ctx, fmt.Sprintf("default delay %dms\n", delay.Milliseconds()))
	for _, vm := range env.Clients() {
		m := measureFrom(t, ctx, vm, args...)
		b := base[vm]
		b50, b90 := num(t, b, "rtt", "median_us"), num(t, b, "rtt", "p90_us")
		got, got90 := num(t, m, "rtt", "median_us"), num(t, m, "rtt", "p90_us")
		want := b50 + 2*float64(delay.Microseconds())
		tol := rttTolerance(b90-b50, got90-got)
		t.Logf("%s <-> server: undelayed RTT median %.0f µs (p90 %.0f), with %v each way %.0f µs (p90 %.0f): want %.0f ± %.0f µs, %+.0f µs off; source %v",
			vm, b50, b90, delay, got, got90, want, tol, got-want, m["rtt"].(map[string]any)["source"])
		if math.Abs(got-want) > tol {
			t.Errorf("%s: RTT median %.0f µs, want %.0f ± %.0f µs", vm, got, want, tol)
		}
		if m["received"] != m["sent"] {
			t.Errorf("%s: %v of %v echoed on a path without loss", vm, m["received"], m["sent"])
		}
	}
}

// rttTolerance bounds the difference of two RTT medians from their spreads
// (p90 − median of each, in quadrature) plus a fixed allowance for netem's
// timer, which in a TCG guest fires late by up to a tick's worth of
// emulation.
func rttTolerance(spreadA, spreadB float64) float64 {
	return math.Hypot(max(spreadA, 0), max(spreadB, 0)) + 1000
}

// loss 1% on UDP at both ends' egress: the loss there and back each equals
// what the netem qdiscs say they dropped plus the receiving socket's drops
// (the client's netem and the agent's socket for there, the server's netem
// and the client's socket for back), and is within its binomial interval of
// the configured rate, which only shows that the shaping is in place.
//
// The interval is 99.99 %: the exact check is against netem's counter, and
// at 99 % the four intervals of a run missed in 4 % of runs by netem's
// chance alone (a CI run read 15 back of 3000 against [17, 45], netem
// itself having dropped 15).
func TestEchoLoss(t *testing.T) {
	ctx := need(t)
	const p, n, conf = 0.01, 3000, 0.9999
	shape(t, ctx, fmt.Sprintf("default udp loss %g%%\n", 100*p))
	for _, vm := range env.Clients() {
		c0, err := env.NetemDrops(ctx, vm)
		if err != nil {
			t.Fatal(err)
		}
		s0, err := env.NetemDrops(ctx, "server")
		if err != nil {
			t.Fatal(err)
		}
		m := measureFrom(t, ctx, vm, "-n", fmt.Sprint(n), "-i", "2ms", "--no-gso", "--wait", "1s")
		c1, _ := env.NetemDrops(ctx, vm)
		s1, _ := env.NetemDrops(ctx, "server")
		there, back := int(num(t, m, "lost_there")), int(num(t, m, "lost_back"))
		// A receiver's socket drops are losses too, but the host's, not
		// the path's: each end counts its own, and the path's share is
		// what netem's interval is for.
		agentSock, clientSock := int(num(t, m, "agent_socket_drops")), int(num(t, m, "client_socket_drops"))
		sent := int(num(t, m, "sent"))
		loThere, hiThere := BinomialInterval(sent, p, conf)
		loBack, hiBack := BinomialInterval(sent-there, p, conf)
		t.Logf("%s -> server: %d sent, lost there %d (%g %% interval [%d, %d]; %s's netem dropped %d, agent socket %d), back %d ([%d, %d]; server's netem dropped %d, client socket %d)",
			vm, sent, there, 100*conf, loThere, hiThere, vm, c1-c0, agentSock, back, loBack, hiBack, s1-s0, clientSock)
		if path := there - agentSock; path < loThere || path > hiThere || back-clientSock < loBack || back-clientSock > hiBack {
			t.Errorf("%s: lost on the path there %d, back %d; want [%d, %d] and [%d, %d]", vm, path, back-clientSock, loThere, hiThere, loBack, hiBack)
		}
		if there != int(c1-c0)+agentSock || back != int(s1-s0)+clientSock {
			t.Errorf("%s: lost there %d, back %d; netem dropped %d at %s, %d at the server; sockets dropped %d at the agent, %d at the client",
				vm, there, back, c1-c0, vm, s1-s0, agentSock, clientSock)
		}
	}
}

// The rate of the capacity and goodput checks: well under what the TCG
// guests carry unshaped (TestGuestsCarryTheRate). On a busy 2-core host
// they carried 8.2 Mbit/s of TCP and 2.6 Mbit/s of QUIC (its crypto is
// emulated too), so 2 Mbit/s.
const rate = 2e6

// The guests must carry the shaped rate with room to spare, or the goodput
// checks would measure the emulator rather than netem.
func TestGuestsCarryTheRate(t *testing.T) {
	ctx := need(t)
	shape(t, ctx, "default none\n")
	m := measureFrom(t, ctx, env.Clients()[0], "--mode", "tcp", "-t", "3s")
	got := num(t, m, "end", "received_bps")
	t.Logf("unshaped TCP between TCG guests: %.1f Mbit/s; the checks shape to %.0f Mbit/s", got/1e6, rate/1e6)
	if got < 2*rate {
		t.Fatalf("the guests carry %.1f Mbit/s, less than twice the %.0f Mbit/s the checks need", got/1e6, rate/1e6)
	}
}

// netem rate (pure serialization, no bucket) on the server's egress: the
// capacity estimate of the path to the client is the configured rate at the
// IP layer (netem counts the 14-byte Ethernet header of each 1500-byte packet).
func TestCapacity(t *testing.T) {
	ctx := need(t)
	shape(t, ctx, fmt.Sprintf("default rate %.0fkbit\n", rate/1e3))
	truth := rate * 1500 / 1514 / 1e6
	for _, vm := range env.Clients() {
		m := measureFrom(t, ctx, vm, "--mode", "capacity", "-R") // -R: the server sends
		est := num(t, m, "estimate_bps") / 1e6
		t.Logf("%s <- server: estimate %.3f Mbit/s, truth %.3f (%+.2f %%), sustained %s, verdict %v, %.1f s, timestamps %v",
			vm, est, truth, 100*(est-truth)/truth, sustained(m), m["verdict"], num(t, m, "duration_s"), m["ts_source"])
		if math.Abs(est-truth)/truth > 0.03 {
			t.Errorf("%s: estimate %.3f Mbit/s, want %.3f ± 3 %%", vm, est, truth)
		}
	}
}

// realized is the rate a client VM's netem sends at now
// (vmtest.NetemRealized), measured right before each goodput run: the low
// end of its truth, at most the configured rate.
func realized(t *testing.T, ctx context.Context, vm string) float64 {
	t.Helper()
	r, err := env.NetemRealized(ctx, vm, "server")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: netem rate %.0f kbit realizes %.3f Mbit/s (%+.2f %%) with a backlog", vm, rate/1e3, r/1e6, 100*(r-rate)/rate)
	return min(r, rate)
}

// TCP through the same rate: the goodput is the link's rate less Ethernet,
// IP and TCP (with timestamps) headers: 1448 B of payload per 1514 B frame,
// the link's rate between what its netem realizes with a backlog and the
// configured rate.
func TestTCPGoodput(t *testing.T) {
	ctx := need(t)
	shape(t, ctx, fmt.Sprintf("default rate %.0fkbit\n", rate/1e3))
	for _, vm := range env.Clients() {
		lo, hi := realized(t, ctx, vm)*1448/1514, rate*1448/1514
		m := measureFrom(t, ctx, vm, "--mode", "tcp", "-t", "5s")
		sent, got, r := num(t, m, "end", "client", "bytes_sent"), num(t, m, "end", "agent", "bytes_received"), num(t, m, "end", "received_bps")
		t.Logf("%s -> server: TCP %.3f Mbit/s, link goodput %.3f–%.3f (%+.2f %% of the configured); %.0f B sent, %.0f received",
			vm, r/1e6, lo/1e6, hi/1e6, 100*(r-hi)/hi, sent, got)
		if sent != got || r < 0.95*lo || r > 1.05*hi {
			t.Errorf("%s: %.3f Mbit/s (sent %.0f, received %.0f), want [0.95 × %.3f, 1.05 × %.3f]", vm, r/1e6, sent, got, lo/1e6, hi/1e6)
		}
	}
}

// QUIC through the same rate: the goodput is the link's rate (what netem
// realizes to what is configured) less QUIC's overhead per packet (Ethernet
// as netem counts it, IP, UDP, short header, STREAM frame header, AEAD tag),
// the packet size the sender's mean.
func TestQUICGoodput(t *testing.T) {
	ctx := need(t)
	shape(t, ctx, fmt.Sprintf("default rate %.0fkbit\n", rate/1e3))
	for _, vm := range env.Clients() {
		link := realized(t, ctx, vm)
		m := measureFrom(t, ctx, vm, "--mode", "quic", "-t", "5s", "--ping-interval", "0")
		sent, got, r := num(t, m, "end", "client", "bytes_sent"), num(t, m, "end", "agent", "bytes_received"), num(t, m, "end", "received_bps")
		conn := m["end"].(map[string]any)["client"].(map[string]any)["conn"].([]any)
		last := conn[len(conn)-1].(map[string]any)
		ipSize := last["bytes_sent"].(float64)/last["packets_sent"].(float64) + 8 + 20
		o := estimator.QUICOverhead{IP: 20, UDP: 8, ShortHeader: 1 + 4 + 2, StreamHeader: 1 + 1 + 4, AEADTag: 16}
		lo, hi := estimator.QUICGoodput(link, int(math.Round(ipSize)), 14, o), estimator.QUICGoodput(rate, int(math.Round(ipSize)), 14, o)
		t.Logf("%s -> server: QUIC %.3f Mbit/s, link goodput %.3f–%.3f for %.0f B IP packets (%+.2f %% of the configured); %.0f B sent, %.0f received",
			vm, r/1e6, lo/1e6, hi/1e6, ipSize, 100*(r-hi)/hi, sent, got)
		if sent != got || r < 0.95*lo || r > 1.05*hi {
			t.Errorf("%s: %.3f Mbit/s (sent %.0f, received %.0f), want [0.95 × %.3f, 1.05 × %.3f]", vm, r/1e6, sent, got, lo/1e6, hi/1e6)
		}
	}
}

// A scenario whose hosts are the VMs' agents: a probe agent as the server on
// the server VM, two echo clients per client VM, three iterations; every
// process's exit code and resources are in the results, and probe report
// sums them up.
func TestScenarioAcrossVMs(t *testing.T) {
	ctx := need(t)
	shape(t, ctx, "default delay 5ms\n")
	dir := t.TempDir()
	var hosts, clients []string
	hosts = append(hosts, fmt.Sprintf("  server: %s", env.Addr["server"]))
	for _, vm := range env.Clients() {
		hosts = append(hosts, fmt.Sprintf("  %s: %s", vm, env.Addr[vm]))
		clients = append(clients, vm)
	}
	const iterations, perHost = 3, 2
	scenario := fmt.Sprintf(`test_name: vms
server_host: server
client_hosts: [%s]
clients_per_host: %d
iterations: %d
pause_between: 1s
server_warmup: 1s
server_binary: %[4]s
server_args: ["serve", "--listen", "SERVER_IP:7400", "--ebpf", "off"]
client_binary: %[4]s
client_args: ["measure", "-h", "SERVER_IP:7400", "--ebpf", "off", "-n", "100", "-i", "10ms"]
max_test_duration: 1m
key_file: %[5]s
hosts:
%[6]s
`, strings.Join(clients, ", "), perHost, iterations, GuestProbe, env.KeyFile, strings.Join(hosts, "\n"))
	path := filepath.Join(dir, "vms.yaml")
	if err := os.WriteFile(path, []byte(scenario), 0o644); err != nil {
		t.Fatal(err)
	}
	results := filepath.Join(dir, "results")
	start := time.Now()
	out, err := Output(env.Host(ctx, env.Probe, "run", path, "--results", results))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("probe run: %d iterations in %.1f s", iterations, time.Since(start).Seconds())
	iters := strings.Fields(out)
	if len(iters) != iterations {
		t.Fatalf("want %d iteration folders, probe run printed %q", iterations, out)
	}
	for _, it := range iters {
		var sum struct {
			Ended     string `json:"ended"`
			Processes []struct {
				Role     string                    `json:"role"`
				Host     string                    `json:"host"`
				Agent    string                    `json:"agent"`
				ExitCode int                       `json:"exit_code"`
				Summary  estimator.ResourceSummary `json:"summary"`
				Error    string                    `json:"error"`
			} `json:"processes"`
		}
		b, err := os.ReadFile(filepath.Join(it, "summary.json"))
		if err == nil {
			err = json.Unmarshal(b, &sum)
		}
		if err != nil {
			t.Fatal(err)
		}
		if want := 1 + perHost*len(clients); len(sum.Processes) != want || sum.Ended != "clients ended" {
			t.Fatalf("%s: %d processes (want %d), ended %q", filepath.Base(it), len(sum.Processes), want, sum.Ended)
		}
		for _, p := range sum.Processes {
			s := p.Summary
			t.Logf("%s: %s on %s (agent %s): exit %d, CPU %v user + %v system, on CPU %v, peak RSS %.1f MiB, %d samples",
				filepath.Base(it), p.Role, p.Host, p.Agent, p.ExitCode, s.User, s.System, s.OnCPU, float64(s.PeakRSS)/(1<<20), s.Samples)
			// The server, a probe agent, exits 0 on the runner's SIGINT.
			if p.ExitCode != 0 || p.Error != "" || p.Agent == "" {
				t.Errorf("%s: %s on %s: exit %d, error %q, agent %q", filepath.Base(it), p.Role, p.Host, p.ExitCode, p.Error, p.Agent)
			}
			if s.Samples < 2 || s.User+s.System <= 0 || s.PeakRSS == 0 || s.Voluntary == 0 {
				t.Errorf("%s: %s on %s: resources missing: %+v", filepath.Base(it), p.Role, p.Host, s)
			}
		}
	}
	rep, err := Output(env.Host(ctx, env.Probe, "report", filepath.Join(results, "vms_iter*")))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("probe report:\n%s", rep)
	js, err := Output(env.Host(ctx, env.Probe, "report", "--json", filepath.Join(results, "vms_iter*")))
	if err != nil {
		t.Fatal(err)
	}
	var agg struct {
		Iterations []string `json:"iterations"`
		Roles      []struct {
			Role    string `json:"role"`
			Metrics []struct {
				Name string `json:"name"`
				N    int    `json:"n"`
			} `json:"metrics"`
		} `json:"roles"`
	}
	if err := json.Unmarshal([]byte(js), &agg); err != nil {
		t.Fatalf("%v in %s", err, js)
	}
	if len(agg.Iterations) != iterations || len(agg.Roles) != 2 {
		t.Fatalf("probe report --json: %d iterations, %d roles; want %d and server, client", len(agg.Iterations), len(agg.Roles), iterations)
	}
	for _, r := range agg.Roles {
		if len(r.Metrics) == 0 {
			t.Errorf("probe report: no metrics for the %s", r.Role)
		}
		for _, m := range r.Metrics {
			// An interface is summed only when present in a process's first
			// and last sample; CPU, memory and switches always are.
			if strings.Contains(m.Name, " rx ") || strings.Contains(m.Name, " tx ") {
				continue
			}
			if m.N != iterations {
				t.Errorf("probe report: %s %s over %d iterations, want %d", r.Role, m.Name, m.N, iterations)
			}
		}
	}
}

// sustained formats a capacity result's sustained rate, which is null when
// no train kept it.
func sustained(m map[string]any) string {
	if v, ok := m["sustained_bps"].(float64); ok {
		return fmt.Sprintf("%.3f Mbit/s", v/1e6)
	}
	return "none"
}
