// Command echo is the UDP echo benchmark: in one run on loopback it
// measures with probe and with the peer tools (irtt for the
// isochronous schedule, sockperf for the round-trip time, iperf3 for the
// packet rate) and prints one table: per figure probe's value, the peer's,
// their ratio, the bound and whether it holds. It exits non-zero when a bound
// fails or a peer tool is missing. Run as root, from the repository: make
// bench-echo.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/probe-dev/probe/bench/internal/harness"
)

// loopback is the only address the benchmark sends to or listens on.
const loopback = "127.0.0.1"

// echoResult holds the fields of probe measure --mode echo --json that the
// bounds read.
type echoResult struct {
	Sent              int    `json:"sent"`
	Received          int    `json:"received"`
	Lost              int    `json:"lost"`
	LostThere         int    `json:"lost_there"`
	LostBack          int    `json:"lost_back"`
	AgentSocketDrops  uint64 `json:"agent_socket_drops"`
	AgentLimited      uint64 `json:"agent_limited"`
	ClientSocketDrops uint64 `json:"client_socket_drops"`
	RTT               rtt    `json:"rtt"`
	UserRTT           rtt    `json:"user_rtt"`
	Rates             struct {
		TimePerFrameUs float64 `json:"time_per_frame_us"`
	} `json:"rates"`
	Schedule *struct {
		Sends  int     `json:"sends"`
		ErrPct float64 `json:"error_pct"`
		Missed int     `json:"missed"`
	} `json:"schedule"`
	Error string `json:"error"`
}

type rtt struct {
	Source   string  `json:"source"`
	N        int     `json:"n"`
	MedianUs float64 `json:"median_us"`
}

// row is one line of the table. An info row has no bound and cannot fail.
type row struct {
	figure, probe, peer, ratio, bound, note string
	ok, info                                bool
}

// bench holds what every figure needs.
type bench struct {
	probeBin string
	agent    netip.AddrPort
	dir      string
	commands harness.Commands // peer commands as run, printed under the table
}

func main() {
	bin := flag.String("bin", "bin", "directory with the probe binary")
	flag.Parse()
	if os.Geteuid() != 0 {
		harness.Fail("the echo benchmark needs root (eBPF timestamps)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "probe-bench-echo")
	if err != nil {
		harness.Fail(err.Error())
	}
	defer os.RemoveAll(dir)

	b := &bench{probeBin: filepath.Join(*bin, "probe"), dir: dir}
	if b.agent, err = harness.FreeAddr(); err != nil {
		harness.Fail(err.Error())
	}
	agent, err := harness.Start(ctx, harness.Host{}, "probe agent", harness.Listening("tcp", b.agent),
		b.probeBin, "serve", "--listen", b.agent.String(), "--ebpf", "on")
	if err != nil {
		harness.Fail(err.Error())
	}
	defer agent.Stop()

	var rows []row
	for _, f := range []func(context.Context) []row{b.isochronous, b.latency, b.zeroWait} {
		if ctx.Err() != nil {
			break
		}
		rows = append(rows, f(ctx)...)
	}
	agent.Stop()

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tprobe\tpeer\tprobe/peer\tbound\tok\tnote\t")
	allOK := ctx.Err() == nil
	for _, r := range rows {
		ok := fmt.Sprint(r.ok)
		if r.info {
			ok = "-"
		} else {
			allOK = allOK && r.ok
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.figure, r.probe, r.peer, r.ratio, r.bound, ok, r.note)
	}
	tw.Flush()
	fmt.Printf("\nall on %s; probe agent: %s serve --listen %s --ebpf on\n", loopback, b.probeBin, b.agent)
	fmt.Println("peer commands:")
	for _, c := range b.commands {
		fmt.Println("  " + c)
	}
	if ctx.Err() != nil {
		fmt.Println("interrupted")
	}
	if !allOK {
		os.RemoveAll(dir) // os.Exit skips the deferred removal
		os.Exit(1)
	}
}

// isochronous is figure 1: 64-byte probes every 1 ms for 10 s, harness.Runs
// times; the send schedule's mean error and missed slots of every run
// against irtt's timer. Both bounds must hold in every run.
func (b *bench) isochronous(ctx context.Context) []row {
	const figErr, figMissed = "1 ms isochronous 10 s: timer error", "1 ms isochronous 10 s: missed slots"
	errRow := row{figure: figErr, bound: fmt.Sprintf("probe ≤ 1 %% in each of %d runs", harness.Runs)}
	missRow := row{figure: figMissed, bound: fmt.Sprintf("probe ≤ 0.1 %% of sends in each of %d runs", harness.Runs)}
	var errs, misses []float64
	var each []string
	var perr error
	for k := range harness.Runs {
		if ctx.Err() != nil {
			break
		}
		load := harness.Load()
		fmt.Fprintf(os.Stderr, "bench: isochronous 1 ms for 10 s, run %d (load %s)...\n", k+1, load)
		res, err := b.measure(ctx, 40*time.Second, "-i", "1ms", "-d", "10s", "-l", "64")
		if err == nil && res.Schedule == nil {
			err = errors.New("probe reported no send schedule")
		}
		if err != nil {
			perr = err
			each = append(each, fmt.Sprintf("run %d: error", k+1))
			continue
		}
		e := res.Schedule.ErrPct
		m := 100 * float64(res.Schedule.Missed) / float64(max(res.Schedule.Sends, 1))
		errs, misses = append(errs, e), append(misses, m)
		each = append(each, fmt.Sprintf("%.2f %%/%d of %d at load %s", e, res.Schedule.Missed, res.Schedule.Sends, load))
	}
	pErr, pMissed := harness.Median(errs), harness.Median(misses)
	if len(errs) == 0 {
		errRow.probe, missRow.probe = "error", "error"
	} else {
		errRow.probe = harness.Spread(errs, 2) + " %"
		missRow.probe = harness.Spread(misses, 3) + " %"
		errRow.ok = len(errs) == harness.Runs && perr == nil && slices.Max(errs) <= 1
		missRow.ok = len(misses) == harness.Runs && perr == nil && slices.Max(misses) <= 0.1
	}
	errRow.note = "runs (error/missed): " + strings.Join(each, "; ")
	if perr != nil {
		errRow.note = harness.Join(errRow.note, "probe: "+perr.Error())
		missRow.note = "probe: " + perr.Error()
	}

	fmt.Fprintln(os.Stderr, "bench: irtt 1 ms for 10 s...")
	irLoad := harness.Load()
	ir, ierr := b.irtt(ctx)
	if ierr != nil {
		errRow.peer, missRow.peer = "irtt failed", "irtt failed"
		errRow.ok, missRow.ok = false, false
		errRow.note = harness.Join(errRow.note, "irtt: "+ierr.Error()+"; row failed for want of the peer")
		missRow.note = harness.Join(missRow.note, "irtt: see above; row failed for want of the peer")
		return []row{errRow, missRow}
	}
	errRow.peer = fmt.Sprintf("%.2f %% (one run, load %s)", ir.TimerErrPct, irLoad)
	// irtt counts misses against the sends the duration asks for.
	missRow.peer = fmt.Sprintf("%.2f %% (%d, %d sent)", ir.TimerMissPct, ir.TimerMisses, ir.PacketsSent)
	if len(errs) > 0 {
		errRow.ratio, missRow.ratio = harness.Ratio(pErr, ir.TimerErrPct, 2), harness.Ratio(pMissed, ir.TimerMissPct, 2)
	}
	errRow.note = harness.Join(errRow.note, fmt.Sprintf("irtt mean timer error %.1f µs", ir.TimerError.Mean/1e3))
	return []row{errRow, missRow}
}

// latency is figure 2: the kernel-timestamped RTT median against sockperf
// ping-pong's, both full round trips.
func (b *bench) latency(ctx context.Context) []row {
	r := row{figure: "loopback RTT median", bound: "probe ≤ sockperf"}
	user := row{figure: "loopback RTT median, user space", bound: "(info)", info: true}
	fmt.Fprintln(os.Stderr, "bench: RTT, 10000 probes every 100 µs...")
	res, perr := b.measure(ctx, 30*time.Second, "-n", "10000", "-i", "100us", "-l", "64")
	switch {
	case perr != nil:
		r.probe, user.probe, r.note = "error", "error", "probe: "+perr.Error()
	case res.RTT.N == 0 || res.RTT.Source == "user":
		r.probe = "no kernel RTT"
		r.note = fmt.Sprintf("probe: RTT source %q, n=%d", res.RTT.Source, res.RTT.N)
	default:
		r.probe = fmt.Sprintf("%.2f µs (%s)", res.RTT.MedianUs, res.RTT.Source)
		user.probe = fmt.Sprintf("%.2f µs", res.UserRTT.MedianUs)
		user.note = "user-space receive stamps, agent turnaround included"
	}
	fmt.Fprintln(os.Stderr, "bench: sockperf ping-pong for 5 s...")
	sp, serr := b.sockperf(ctx)
	if serr != nil {
		r.peer, user.peer = "sockperf failed", "sockperf failed"
		r.note = harness.Join(r.note, "sockperf: "+serr.Error()+"; row failed for want of the peer")
		return []row{r, user}
	}
	r.peer, user.peer = fmt.Sprintf("%.2f µs", sp), fmt.Sprintf("%.2f µs", sp)
	if perr == nil && res.RTT.N > 0 && res.RTT.Source != "user" {
		r.ratio, r.ok = harness.Ratio(res.RTT.MedianUs, sp, 2), res.RTT.MedianUs <= sp
		user.ratio = harness.Ratio(res.UserRTT.MedianUs, sp, 2)
	}
	return []row{r, user}
}

// zeroWait is figure 3: back-to-back 64-byte probes; the send rate against
// iperf3's UDP flood, and every lost probe explained by a socket drop count.
func (b *bench) zeroWait(ctx context.Context) []row {
	rate := row{figure: "zero wait 64 B: packets/s", bound: "probe ≥ 1.5 × iperf3"}
	loss := row{figure: "zero wait 64 B: loss explained", ratio: "-", bound: "unexplained = 0"}
	fmt.Fprintln(os.Stderr, "bench: zero wait, 200000 probes...")
	res, perr := b.measure(ctx, 60*time.Second, "-n", "200000", "-i", "0", "-l", "64")
	var pps float64
	if perr == nil && res.Rates.TimePerFrameUs <= 0 {
		perr = errors.New("probe reported no time per frame")
	}
	if perr != nil {
		rate.probe, loss.probe = "error", "error"
		rate.note, loss.note = "probe: "+perr.Error(), "probe: "+perr.Error()
	} else {
		pps = 1e6 / res.Rates.TimePerFrameUs
		rate.probe = fmt.Sprintf("%.0f (%.2f µs/frame)", pps, res.Rates.TimePerFrameUs)
		there := min(uint64(res.LostThere), res.AgentSocketDrops+res.AgentLimited)
		back := min(uint64(res.LostBack), res.ClientSocketDrops)
		unexplained := res.Lost - int(there+back)
		loss.probe = fmt.Sprintf("%d lost (%.1f %%), %d explained", res.Lost,
			100*float64(res.Lost)/float64(max(res.Sent, 1)), there+back)
		loss.ok = unexplained == 0
		loss.note = fmt.Sprintf("there %d lost / %d agent drops + %d over its rate limit, back %d lost / %d client drops; unexplained %d",
			res.LostThere, res.AgentSocketDrops, res.AgentLimited, res.LostBack, res.ClientSocketDrops, unexplained)
	}
	fmt.Fprintln(os.Stderr, "bench: iperf3 UDP flood for 5 s...")
	ip, ierr := b.iperf3(ctx)
	if ierr != nil {
		rate.peer, loss.peer = "iperf3 failed", "iperf3 failed"
		rate.note = harness.Join(rate.note, "iperf3: "+ierr.Error()+"; row failed for want of the peer")
		// The loss bound is probe's own; iperf3's loss is only shown.
		return []row{rate, loss}
	}
	rate.peer = fmt.Sprintf("%.0f", ip.pps)
	loss.peer = fmt.Sprintf("%.1f %% lost (not explained)", ip.lostPct)
	if perr == nil {
		rate.ratio, rate.ok = harness.Ratio(pps, ip.pps, 2), pps >= 1.5*ip.pps
	}
	return []row{rate, loss}
}

// measure runs one probe echo measurement against the agent and reads its
// JSON.
func (b *bench) measure(ctx context.Context, limit time.Duration, args ...string) (echoResult, error) {
	args = append([]string{"measure", "-h", b.agent.String(), "--mode", "echo", "--ebpf", "on", "--json"}, args...)
	out, err := harness.Run(ctx, harness.Host{}, limit, b.probeBin, args...)
	var res echoResult
	if err != nil {
		return res, err
	}
	var doc struct {
		Measurements []echoResult `json:"measurements"`
	}
	if err := json.Unmarshal(out, &doc); err != nil || len(doc.Measurements) != 1 {
		return res, fmt.Errorf("read probe measure output: %v, %d measurements", err, len(doc.Measurements))
	}
	res = doc.Measurements[0]
	if res.Error != "" {
		return res, fmt.Errorf("probe measure: %s", res.Error)
	}
	return res, nil
}

// irttStats holds the fields of irtt client's JSON "stats" section used here.
type irttStats struct {
	PacketsSent  int     `json:"packets_sent"`
	TimerErrPct  float64 `json:"timer_err_percent"`
	TimerMisses  int     `json:"timer_misses"`
	TimerMissPct float64 `json:"timer_miss_percent"`
	TimerError   struct {
		Mean float64 `json:"mean"` // ns
	} `json:"timer_error"`
}

func (b *bench) irtt(ctx context.Context) (irttStats, error) {
	var st irttStats
	addr, err := harness.FreeAddr()
	if err != nil {
		return st, err
	}
	// The server's default minimum interval is 10 ms; -i 0 lifts it.
	srv, err := b.startPeer(ctx, "irtt server", harness.Listening("udp", addr),
		"irtt", "server", "-b", addr.String(), "-i", "0", "-d", "20s", "--timeout=30s")
	if err != nil {
		return st, err
	}
	defer srv.Stop()
	out := filepath.Join(b.dir, "irtt.json")
	if _, err := b.runPeer(ctx, 40*time.Second, "irtt", "client", "-i", "1ms", "-d", "10s", "-l", "64",
		"--timeouts=500ms,1s,2s", "-Q", "-o", out, addr.String()); err != nil {
		return st, err
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return st, fmt.Errorf("read irtt output: %w", err)
	}
	var doc struct {
		Stats *irttStats `json:"stats"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return st, fmt.Errorf("read irtt output: %w", err)
	}
	if doc.Stats == nil || doc.Stats.PacketsSent == 0 {
		return st, errors.New("irtt output has no stats")
	}
	return *doc.Stats, nil
}

// sockperf returns ping-pong's median round trip in µs; --full-rtt, since by
// default sockperf prints half the round trip as the latency.
func (b *bench) sockperf(ctx context.Context) (float64, error) {
	addr, err := harness.FreeAddr()
	if err != nil {
		return 0, err
	}
	host, port := addr.Addr().String(), strconv.Itoa(int(addr.Port()))
	srv, err := b.startPeer(ctx, "sockperf server", harness.Listening("udp", addr), "sockperf", "server", "-i", host, "-p", port)
	if err != nil {
		return 0, err
	}
	defer srv.Stop()
	out, err := b.runPeer(ctx, 30*time.Second, "sockperf", "ping-pong", "-i", host, "-p", port, "-m", "64", "-t", "5", "--full-rtt")
	if err != nil {
		return 0, err
	}
	if !bytes.Contains(out, []byte("Round trip is")) {
		return 0, errors.New("sockperf printed no full round trip (--full-rtt ignored?)")
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		_, v, ok := strings.Cut(sc.Text(), "percentile 50.000 =")
		if !ok {
			continue
		}
		med, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return 0, fmt.Errorf("read sockperf median %q: %w", v, err)
		}
		return med, nil
	}
	return 0, errors.New("sockperf printed no \"percentile 50.000\" line")
}

type iperfResult struct{ pps, lostPct float64 }

func (b *bench) iperf3(ctx context.Context) (iperfResult, error) {
	var r iperfResult
	addr, err := harness.FreeAddr()
	if err != nil {
		return r, err
	}
	host, port := addr.Addr().String(), strconv.Itoa(int(addr.Port()))
	// -1: the server ends after one test.
	srv, err := b.startPeer(ctx, "iperf3 server", harness.Listening("tcp", addr), "iperf3", "-s", "-B", host, "-p", port, "-1")
	if err != nil {
		return r, err
	}
	defer srv.Stop()
	out, err := b.runPeer(ctx, 30*time.Second, "iperf3", "-c", host, "-p", port, "-u", "-b", "0", "-l", "64", "-t", "5", "--json")
	if err != nil {
		return r, err
	}
	var doc struct {
		Error string `json:"error"`
		End   struct {
			Sum *struct {
				Seconds     float64 `json:"seconds"`
				Packets     int     `json:"packets"`
				LostPercent float64 `json:"lost_percent"`
			} `json:"sum"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return r, fmt.Errorf("read iperf3 output: %w", err)
	}
	if doc.Error != "" {
		return r, fmt.Errorf("iperf3: %s", doc.Error)
	}
	if doc.End.Sum == nil || doc.End.Sum.Seconds <= 0 {
		return r, errors.New("iperf3 output has no end.sum")
	}
	return iperfResult{float64(doc.End.Sum.Packets) / doc.End.Sum.Seconds, doc.End.Sum.LostPercent}, nil
}

// startPeer records the command and starts a peer tool's server; a missing
// tool says how to install it.
func (b *bench) startPeer(ctx context.Context, name string, ready harness.Ready, tool string, args ...string) (*harness.Server, error) {
	b.commands.Record(harness.Host{}, tool, args...)
	if _, err := exec.LookPath(tool); err != nil {
		return nil, fmt.Errorf("%s not installed (apt-get install -y %s)", tool, tool)
	}
	return harness.Start(ctx, harness.Host{}, name, ready, tool, args...)
}

// runPeer records the command and runs a peer tool's client within limit.
func (b *bench) runPeer(ctx context.Context, limit time.Duration, tool string, args ...string) ([]byte, error) {
	b.commands.Record(harness.Host{}, tool, args...)
	return harness.Run(ctx, harness.Host{}, limit, tool, args...)
}
