// Command echo is the UDP echo benchmark (issue 4): in one run on loopback it
// measures with probe and with the peer tools the issue names (irtt for the
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
	"math"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// loopback is the only address the benchmark sends to or listens on.
const loopback = "127.0.0.1"

// echoResult holds the fields of probe measure --mode echo --json that the
// bounds read.
type echoResult struct {
	Sent              int     `json:"sent"`
	Received          int     `json:"received"`
	Lost              int     `json:"lost"`
	LostThere         int     `json:"lost_there"`
	LostBack          int     `json:"lost_back"`
	AgentSocketDrops  uint64  `json:"agent_socket_drops"`
	AgentLimited      uint64  `json:"agent_limited"`
	ClientSocketDrops uint64  `json:"client_socket_drops"`
	RTT               rtt     `json:"rtt"`
	UserRTT           rtt     `json:"user_rtt"`
	TimePerFrameUs    float64 `json:"time_per_frame_us"`
	Schedule          *struct {
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
	agent    string // host:port of the probe agent
	dir      string
	commands []string // peer commands as run, printed under the table
}

func main() {
	bin := flag.String("bin", "bin", "directory with the probe binary")
	flag.Parse()
	if os.Geteuid() != 0 {
		fail("the echo benchmark needs root (eBPF timestamps)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "probe-bench-echo")
	if err != nil {
		fail(err.Error())
	}
	defer os.RemoveAll(dir)

	b := &bench{probeBin: filepath.Join(*bin, "probe"), dir: dir}
	port, err := freePort()
	if err != nil {
		fail(err.Error())
	}
	b.agent = net.JoinHostPort(loopback, strconv.Itoa(port))
	agent, err := startServer(ctx, "probe agent", "tcp", b.agent, true,
		b.probeBin, "serve", "--listen", b.agent, "--ebpf", "on")
	if err != nil {
		fail(err.Error())
	}
	defer agent.stop()

	var rows []row
	for _, f := range []func(context.Context) []row{b.isochronous, b.latency, b.zeroWait} {
		if ctx.Err() != nil {
			break
		}
		rows = append(rows, f(ctx)...)
	}
	agent.stop()

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

// isochronous is figure 1: 64-byte probes every 1 ms for 10 s; the send
// schedule's mean error and missed slots against irtt's timer.
func (b *bench) isochronous(ctx context.Context) []row {
	const figErr, figMissed = "1 ms isochronous 10 s: timer error", "1 ms isochronous 10 s: missed slots"
	errRow := row{figure: figErr, bound: "probe ≤ 1 %"}
	missRow := row{figure: figMissed, bound: "probe ≤ 0.1 % of sends"}
	fmt.Fprintln(os.Stderr, "bench: isochronous 1 ms for 10 s...")
	res, perr := b.measure(ctx, 40*time.Second, "-i", "1ms", "-d", "10s", "-l", "64")
	var pErr, pMissed float64
	if perr == nil && res.Schedule == nil {
		perr = errors.New("probe reported no send schedule")
	}
	if perr != nil {
		errRow.probe, missRow.probe = "error", "error"
		errRow.note, missRow.note = "probe: "+perr.Error(), "probe: "+perr.Error()
	} else {
		pErr = res.Schedule.ErrPct
		pMissed = 100 * float64(res.Schedule.Missed) / float64(max(res.Schedule.Sends, 1))
		errRow.probe = fmt.Sprintf("%.2f %%", pErr)
		missRow.probe = fmt.Sprintf("%.2f %% (%d of %d)", pMissed, res.Schedule.Missed, res.Schedule.Sends)
		errRow.ok, missRow.ok = pErr <= 1, pMissed <= 0.1
	}

	fmt.Fprintln(os.Stderr, "bench: irtt 1 ms for 10 s...")
	ir, ierr := b.irtt(ctx)
	if ierr != nil {
		errRow.peer, missRow.peer = "irtt failed", "irtt failed"
		errRow.ok, missRow.ok = false, false
		errRow.note = join(errRow.note, "irtt: "+ierr.Error()+"; row failed for want of the peer")
		missRow.note = join(missRow.note, "irtt: see above; row failed for want of the peer")
		return []row{errRow, missRow}
	}
	errRow.peer = fmt.Sprintf("%.2f %%", ir.TimerErrPct)
	// irtt counts misses against the sends the duration asks for.
	missRow.peer = fmt.Sprintf("%.2f %% (%d, %d sent)", ir.TimerMissPct, ir.TimerMisses, ir.PacketsSent)
	if perr == nil {
		errRow.ratio, missRow.ratio = ratio(pErr, ir.TimerErrPct), ratio(pMissed, ir.TimerMissPct)
	}
	errRow.note = join(errRow.note, fmt.Sprintf("irtt mean timer error %.1f µs", ir.TimerError.Mean/1e3))
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
		r.note = join(r.note, "sockperf: "+serr.Error()+"; row failed for want of the peer")
		return []row{r, user}
	}
	r.peer, user.peer = fmt.Sprintf("%.2f µs", sp), fmt.Sprintf("%.2f µs", sp)
	if perr == nil && res.RTT.N > 0 && res.RTT.Source != "user" {
		r.ratio, r.ok = ratio(res.RTT.MedianUs, sp), res.RTT.MedianUs <= sp
		user.ratio = ratio(res.UserRTT.MedianUs, sp)
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
	if perr == nil && res.TimePerFrameUs <= 0 {
		perr = errors.New("probe reported no time per frame")
	}
	if perr != nil {
		rate.probe, loss.probe = "error", "error"
		rate.note, loss.note = "probe: "+perr.Error(), "probe: "+perr.Error()
	} else {
		pps = 1e6 / res.TimePerFrameUs
		rate.probe = fmt.Sprintf("%.0f (%.2f µs/frame)", pps, res.TimePerFrameUs)
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
		rate.note = join(rate.note, "iperf3: "+ierr.Error()+"; row failed for want of the peer")
		// The loss bound is probe's own; iperf3's loss is only shown.
		return []row{rate, loss}
	}
	rate.peer = fmt.Sprintf("%.0f", ip.pps)
	loss.peer = fmt.Sprintf("%.1f %% lost (not explained)", ip.lostPct)
	if perr == nil {
		rate.ratio, rate.ok = ratio(pps, ip.pps), pps >= 1.5*ip.pps
	}
	return []row{rate, loss}
}

// measure runs one probe echo measurement against the agent and reads its
// JSON.
func (b *bench) measure(ctx context.Context, limit time.Duration, args ...string) (echoResult, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	args = append([]string{"measure", "-h", b.agent, "--mode", "echo", "--ebpf", "on", "--json"}, args...)
	out, err := run(ctx, b.probeBin, args...)
	var res echoResult
	if err != nil {
		return res, err
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return res, fmt.Errorf("read probe measure output: %w", err)
	}
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
	addr, err := freeAddr()
	if err != nil {
		return st, err
	}
	// The server's default minimum interval is 10 ms; -i 0 lifts it.
	srv, err := b.startPeer(ctx, "irtt server", "udp", addr, "irtt", "server", "-b", addr, "-i", "0", "-d", "20s", "--timeout=30s")
	if err != nil {
		return st, err
	}
	defer srv.stop()
	out := filepath.Join(b.dir, "irtt.json")
	cctx, cancel := context.WithTimeout(ctx, 40*time.Second)
	defer cancel()
	args := []string{"client", "-i", "1ms", "-d", "10s", "-l", "64", "--timeouts=500ms,1s,2s", "-Q", "-o", out, addr}
	b.commands = append(b.commands, "irtt "+strings.Join(args, " "))
	if _, err := run(cctx, "irtt", args...); err != nil {
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
	addr, err := freeAddr()
	if err != nil {
		return 0, err
	}
	host, port, _ := net.SplitHostPort(addr)
	srv, err := b.startPeer(ctx, "sockperf server", "udp", addr, "sockperf", "server", "-i", host, "-p", port)
	if err != nil {
		return 0, err
	}
	defer srv.stop()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	args := []string{"ping-pong", "-i", host, "-p", port, "-m", "64", "-t", "5", "--full-rtt"}
	b.commands = append(b.commands, "sockperf "+strings.Join(args, " "))
	out, err := run(cctx, "sockperf", args...)
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
	addr, err := freeAddr()
	if err != nil {
		return r, err
	}
	host, port, _ := net.SplitHostPort(addr)
	// -1: the server ends after one test.
	srv, err := b.startPeer(ctx, "iperf3 server", "tcp", addr, "iperf3", "-s", "-B", host, "-p", port, "-1")
	if err != nil {
		return r, err
	}
	defer srv.stop()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	args := []string{"-c", host, "-p", port, "-u", "-b", "0", "-l", "64", "-t", "5", "--json"}
	b.commands = append(b.commands, "iperf3 "+strings.Join(args, " "))
	out, err := run(cctx, "iperf3", args...)
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

// server is a process that runs until the benchmark stops it.
type server struct {
	cmd    *exec.Cmd
	done   chan struct{}
	stderr bytes.Buffer
}

// startPeer records the command and starts a peer tool's server; a missing
// tool says how to install it.
func (b *bench) startPeer(ctx context.Context, name, network, addr, tool string, args ...string) (*server, error) {
	b.commands = append(b.commands, tool+" "+strings.Join(args, " "))
	if _, err := exec.LookPath(tool); err != nil {
		return nil, fmt.Errorf("%s not installed (apt-get install -y %s)", tool, tool)
	}
	return startServer(ctx, name, network, addr, false, tool, args...)
}

// startServer starts a server and waits until addr is bound (dial: until it
// accepts a TCP connection). The context bounds its life.
func startServer(ctx context.Context, name, network, addr string, dial bool, bin string, args ...string) (*server, error) {
	s := &server{cmd: exec.CommandContext(ctx, bin, args...), done: make(chan struct{})}
	s.cmd.Stdout, s.cmd.Stderr = &s.stderr, &s.stderr
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var up bool
		if dial {
			if c, err := net.DialTimeout(network, addr, time.Second); err == nil {
				c.Close()
				up = true
			}
		} else {
			up = bound(network, addr)
		}
		if up {
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("%s exited: %s", name, strings.TrimSpace(s.stderr.String()))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("%s not listening on %s after 10 s", name, addr)
		}
	}
}

func (s *server) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Kill()
	<-s.done
}

// bound reports whether a socket is bound to addr (tcp: listening), from
// /proc/net, so that checking does not race the server for the port.
func bound(network, addr string) bool {
	_, p, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(p)
	data, err := os.ReadFile("/proc/net/" + network)
	if err != nil {
		return false
	}
	local := fmt.Sprintf("0100007F:%04X", port) // 127.0.0.1 in host byte order
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && f[1] == local && (network != "tcp" || f[3] == "0A") {
			return true
		}
	}
	return false
}

// freePort finds a loopback port free for both TCP and UDP.
func freePort() (int, error) {
	for range 20 {
		ln, err := net.Listen("tcp", loopback+":0")
		if err != nil {
			return 0, fmt.Errorf("find a free port: %w", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort(loopback, strconv.Itoa(port)))
		ln.Close()
		if err == nil {
			pc.Close()
			return port, nil
		}
	}
	return 0, errors.New("find a free port: none free for both TCP and UDP")
}

func freeAddr() (string, error) {
	port, err := freePort()
	return net.JoinHostPort(loopback, strconv.Itoa(port)), err
}

// run runs a command to its end and returns its standard output.
func run(ctx context.Context, bin string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(bin), ctx.Err())
	}
	if err != nil {
		msg := strings.TrimSpace(errb.String())
		if msg == "" {
			msg = lastLine(out.String())
		}
		return nil, fmt.Errorf("%s: %v: %s", filepath.Base(bin), err, msg)
	}
	return out.Bytes(), nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndex(s, "\n")+1:]
}

func ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	r := a / b
	if math.IsInf(r, 0) || math.IsNaN(r) {
		return "-"
	}
	return fmt.Sprintf("%.2f", r)
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "bench:", msg)
	os.Exit(1)
}
