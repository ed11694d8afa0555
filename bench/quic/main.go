// Command quic is the QUIC benchmark: in one run it measures a
// single-connection, single-stream download with probe measure --mode tcp
// and --mode quic, alternating, on loopback and on an unshaped veth testbed,
// and prints one table: per place the receiver's rate of each, their CPU
// seconds per GB, whether quic-go sent with GSO, and the bound; then the
// goodput of a QUIC download over a 20 Mbit/s tbf link against the link's
// rate less QUIC's overhead per packet, with TCP's beside it. With
// PROBE_BENCH_QUICGO_PERF naming a binary of quic-go's own perf tool, the
// loopback place also runs quic-go's perf client and server beside
// probe's, every pair, and prints what each role costs per GB in each (an
// informative table, no bound). It exits non-zero when a bound fails. Run
// as root, from the repository: make bench-quic.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/probe-dev/probe/bench/internal/harness"
	"github.com/probe-dev/probe/estimator"
	"github.com/probe-dev/probe/testbed"
)

const (
	rounds    = harness.Runs    // alternating rounds per protocol and place
	roundTime = 5 * time.Second // each throughput round
	slowRate  = 20e6            // the shaped testbed, bit/s of frames
	slowTime  = 10 * time.Second
	loopGoal  = 2e9 // bit/s, QUIC on loopback
	// tcpPayload and frame give TCP's goodput on the shaped link: MSS with
	// timestamps over a full Ethernet frame as tbf counts it.
	tcpPayload = 1500 - 20 - 32
	frame      = 1500 + 14
)

// quicOverhead is a 1-RTT packet of one STREAM frame from quic-go over IPv4:
// a 4-byte connection ID, 2-byte packet numbers (under 2^15 unacknowledged),
// a 1-byte stream ID and a 4-byte offset (under 2^30 bytes per stream).
var quicOverhead = estimator.QUICOverhead{IP: 20, UDP: 8, ShortHeader: 1 + 4 + 2, StreamHeader: 1 + 1 + 4, AEADTag: 16}

// side holds what the bench reads of either mode's --json side.
type side struct {
	UserCPU, SysCPU time.Duration // ns
	Elapsed         time.Duration
	GSO             bool
	Buffers         struct{ Rcv, Snd int }
	Warnings        []string
	Conn            []struct{ BytesSent, PacketsSent, PacketsLost uint64 }
	Totals          struct {
		Sent, Received     uint64
		SendRate, RecvRate float64
		Errors             int
	} `json:"totals"`
}

type result struct {
	Client    side `json:"client"`
	AgentSide side `json:"agent_side"`
}

// docSide is a side as probe's tcp and quic JSON give it (end.client,
// end.agent); tcp's lacks the QUIC figures.
type docSide struct {
	BytesSent     uint64   `json:"bytes_sent"`
	BytesReceived uint64   `json:"bytes_received"`
	SendBps       float64  `json:"send_bps"`
	ReceiveBps    float64  `json:"receive_bps"`
	ElapsedS      float64  `json:"elapsed_s"`
	CPUUserS      float64  `json:"cpu_user_s"`
	CPUSystemS    float64  `json:"cpu_system_s"`
	StreamErrors  int      `json:"stream_errors"`
	GSO           bool     `json:"gso"`
	RcvBuf        int      `json:"udp_rcvbuf_bytes"`
	SndBuf        int      `json:"udp_sndbuf_bytes"`
	Warnings      []string `json:"warnings"`
	Conn          []struct {
		BytesSent   uint64 `json:"bytes_sent"`
		PacketsSent uint64 `json:"packets_sent"`
		PacketsLost uint64 `json:"packets_lost"`
	} `json:"conn"`
}

func (d *docSide) side() side {
	if d == nil {
		return side{}
	}
	s := side{UserCPU: secs(d.CPUUserS), SysCPU: secs(d.CPUSystemS), Elapsed: secs(d.ElapsedS), GSO: d.GSO, Warnings: d.Warnings}
	s.Buffers.Rcv, s.Buffers.Snd = d.RcvBuf, d.SndBuf
	for _, c := range d.Conn {
		s.Conn = append(s.Conn, struct{ BytesSent, PacketsSent, PacketsLost uint64 }{c.BytesSent, c.PacketsSent, c.PacketsLost})
	}
	s.Totals.Sent, s.Totals.Received, s.Totals.SendRate, s.Totals.RecvRate, s.Totals.Errors =
		d.BytesSent, d.BytesReceived, d.SendBps, d.ReceiveBps, d.StreamErrors
	return s
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// readResult reads probe's tcp or quic JSON.
func readResult(b []byte) (result, error) {
	var doc struct {
		End struct {
			Client *docSide `json:"client"`
			Agent  *docSide `json:"agent"`
		} `json:"end"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return result{}, err
	}
	return result{Client: doc.End.Client.side(), AgentSide: doc.End.Agent.side()}, nil
}

// rate is the client's receive rate of a download, bit/s.
func (r result) rate() float64 { return r.Client.Totals.RecvRate }

// cpuPerGB is both ends' CPU seconds per GB (1e9 bytes) received.
func (r result) cpuPerGB() (client, agent float64) {
	gb := float64(r.Client.Totals.Received) / 1e9
	if gb == 0 {
		return 0, 0
	}
	return (r.Client.UserCPU + r.Client.SysCPU).Seconds() / gb, (r.AgentSide.UserCPU + r.AgentSide.SysCPU).Seconds() / gb
}

type row struct {
	figure, tcp, quic, ratio, cpu, bound, note string
	ok, info                                   bool
}

type bench struct {
	probeBin string
	only     string
	port     int // loopback ports from here; 0: free ones
	commands harness.Commands
	beside   []string // the quic-go perf table, or why it did not run
}

func main() {
	bin := flag.String("bin", "bin", "directory with the probe binary")
	only := flag.String("only", "", "run only the places whose name contains this: loopback, veth, tbf")
	port := flag.Int("port", 0, "loopback: the agent's control port; its QUIC perf port is the next, quic-go's perf server's the one after (default: free ports)")
	flag.Parse()
	if os.Geteuid() != 0 {
		harness.Fail("the quic benchmark needs root (testbed namespaces, tc, UDP buffers past the sysctl limit)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	b := &bench{probeBin: filepath.Join(*bin, "probe"), only: *only, port: *port}
	rows := b.all(ctx)
	interrupted := ctx.Err() != nil
	stop()

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\ttcp\tquic\tquic/tcp\tCPU s/GB client+agent, tcp | quic\tbound\tok\tnote\t")
	allOK := !interrupted
	for _, r := range rows {
		ok := fmt.Sprint(r.ok)
		if r.info {
			ok = "-"
		} else {
			allOK = allOK && r.ok
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.figure, r.tcp, r.quic, r.ratio, r.cpu, r.bound, ok, r.note)
	}
	tw.Flush()
	fmt.Printf("\ndownload, 1 connection, 1 stream: the client's receive rate (JSON client.totals.RecvRate), %d rounds of %v\n", rounds, roundTime)
	fmt.Printf("per protocol alternating; the median, the rounds in brackets. CPU: user + system of each whole process\n")
	fmt.Printf("(getrusage) per GB received, medians. veth: the testbed's unshaped a — b veth, offloads off, MTU 1500.\n")
	fmt.Printf("tbf truth, QUIC: %s × (S − %d) / (S + 14), S the sender's mean IP packet (its QUIC bytes over its packets,\n",
		testbed.FormatRate(slowRate), quicOverhead.Total())
	fmt.Printf("+ 8 UDP + 20 IP); %d = IP 20 + UDP 8 + short header %d + STREAM header %d + AEAD tag %d. TCP: × %d/%d.\n",
		quicOverhead.Total(), quicOverhead.ShortHeader, quicOverhead.StreamHeader, quicOverhead.AEADTag, tcpPayload, frame)
	if len(b.beside) > 0 {
		fmt.Println("\nloopback, probe beside quic-go's perf (" + quicgoEnv + "):")
		for _, l := range b.beside {
			fmt.Println("  " + l)
		}
	}
	fmt.Println("commands (ip netns exec NS: run inside the testbed's namespace NS):")
	for _, c := range b.commands {
		fmt.Println("  " + c)
	}
	if interrupted {
		fmt.Println("interrupted")
	}
	if !allOK {
		os.Exit(1)
	}
}

func (b *bench) want(place string) bool { return strings.Contains(place, b.only) }

func (b *bench) all(ctx context.Context) []row {
	var rows []row
	if b.want("loopback") {
		addrs, err := b.loopbackAddrs()
		if err != nil {
			return []row{{figure: "loopback", quic: "error", note: err.Error()}}
		}
		here := harness.Host{}
		perf, why := findQUICGoPerf()
		var extra []string
		if perf != "" {
			extra = []string{"--quic-perf", addrs.probePerf.String()}
		} else {
			b.beside = []string{"skipped: " + why}
		}
		rows = append(rows, b.withAgent(ctx, "loopback", here, here, addrs.control, extra, func(agent *harness.Server) []row {
			r := b.throughput(ctx, "loopback", here, addrs.control, loopGoal)
			if perf != "" && ctx.Err() == nil {
				b.beside = b.besideQUICGo(ctx, perf, addrs, agent)
			}
			return []row{r}
		})...)
	}
	for _, place := range []struct {
		name string
		rate uint64
	}{{"veth", 0}, {"tbf", slowRate}} {
		if ctx.Err() != nil || !b.want(place.name) {
			continue
		}
		fmt.Fprintf(os.Stderr, "bench: testbed %s up...\n", place.name)
		tb, err := testbed.Up(testbed.Config{Name: fmt.Sprintf("bq%s%d", place.name, os.Getpid()%100000), Rate: place.rate})
		if err != nil {
			rows = append(rows, row{figure: place.name + " testbed", quic: "error", note: err.Error()})
			continue
		}
		addr := netip.AddrPortFrom(tb.A.Addr, 7323)
		server, client := harness.Host{TB: tb.A}, harness.Host{TB: tb.B}
		rows = append(rows, b.withAgent(ctx, place.name, server, client, addr, nil, func(*harness.Server) []row {
			if place.rate == 0 {
				return []row{b.throughput(ctx, place.name, client, addr, 0)}
			}
			return b.goodput(ctx, place.name, tb, client, addr)
		})...)
		if err := tb.Down(); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
	}
	return rows
}

// loopbackAddrs are the loopback place's addresses: from -port, or free.
func (b *bench) loopbackAddrs() (quicgoAddrs, error) {
	if b.port > 0 {
		if b.port > 65533 {
			return quicgoAddrs{}, fmt.Errorf("-port %d: want at most 65533 (it takes three ports)", b.port)
		}
		at := func(k int) netip.AddrPort {
			return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(b.port+k))
		}
		return quicgoAddrs{control: at(0), probePerf: at(1), quicgo: at(2)}, nil
	}
	a, err := harness.FreeAddrs(3)
	if err != nil {
		return quicgoAddrs{}, err
	}
	return quicgoAddrs{control: a[0], probePerf: a[1], quicgo: a[2]}, nil
}

// withAgent runs probe serve in server with extra arguments, waits until
// it answers from client, runs fn, and stops it.
func (b *bench) withAgent(ctx context.Context, name string, server, client harness.Host, addr netip.AddrPort, extra []string,
	fn func(agent *harness.Server) []row) []row {
	// Ready when a one-byte TCP test from the client's side passes.
	answers := harness.Ready{What: "answering a one-byte test", Check: func(harness.Host) bool {
		_, err := harness.Run(ctx, client, 5*time.Second, b.probeBin, "measure", "-h", addr.String(), "--ebpf", "off",
			"--mode", "tcp", "--bytes", "1", "--json")
		return err == nil
	}}
	args := append([]string{"serve", "--listen", addr.String(), "--ebpf", "off"}, extra...)
	b.commands.Record(server, b.probeBin, args...)
	agent, err := harness.Start(ctx, server, "probe agent", answers, b.probeBin, args...)
	if err != nil {
		return []row{{figure: name, quic: "error", note: err.Error()}}
	}
	defer agent.Stop()
	return fn(agent)
}

// throughput measures downloads, TCP and QUIC alternating, and compares
// QUIC's median with goal (0: no bound).
func (b *bench) throughput(ctx context.Context, place string, client harness.Host, addr netip.AddrPort, goal float64) row {
	r := row{figure: place + ": download, 1 connection, 1 stream", bound: "-", info: goal == 0}
	if goal > 0 {
		r.bound = fmt.Sprintf("quic ≥ %.0f Gbit/s", goal/1e9)
	}
	var tr, qr, tcc, tca, qcc, qca []float64
	var errs, loads []string
	gso, buffers := "", ""
	for k := range rounds {
		loads = append(loads, harness.Load())
		for _, mode := range []string{"tcp", "quic"} {
			if ctx.Err() != nil {
				break
			}
			fmt.Fprintf(os.Stderr, "bench: %s round %d (load %s): %s...\n", place, k+1, loads[k], mode)
			args := []string{"--reverse", "-P", "1", "-t", roundTime.String()}
			if mode == "quic" {
				args = append(args, "--ping-interval", "0") // tcp refuses the flag
			}
			res, err := b.measure(ctx, client, addr, 30*time.Second, mode, args...)
			if err != nil {
				errs = append(errs, mode+": "+err.Error())
				continue
			}
			c, a := res.cpuPerGB()
			if mode == "tcp" {
				tr, tcc, tca = append(tr, res.rate()), append(tcc, c), append(tca, a)
			} else {
				qr, qcc, qca = append(qr, res.rate()), append(qcc, c), append(qca, a)
				gso = fmt.Sprintf("GSO client %s, agent %s", onOff(res.Client.GSO), onOff(res.AgentSide.GSO))
				buffers = fmt.Sprintf("UDP buffers rcv/snd %d/%d KiB", res.Client.Buffers.Rcv>>10, res.Client.Buffers.Snd>>10)
				for _, w := range append(res.Client.Warnings, res.AgentSide.Warnings...) {
					errs = append(errs, "warning: "+w)
				}
			}
		}
	}
	r.tcp, r.quic = medianText(tr), medianText(qr)
	if len(tr) > 0 && len(qr) > 0 {
		r.ratio = fmt.Sprintf("%.3f", harness.Median(qr)/harness.Median(tr))
	}
	r.cpu = fmt.Sprintf("%.2f+%.2f | %.2f+%.2f", harness.Median(tcc), harness.Median(tca), harness.Median(qcc), harness.Median(qca))
	r.ok = len(qr) == rounds && len(tr) == rounds && (goal == 0 || harness.Median(qr) >= goal)
	r.note = harness.Join("load "+strings.Join(loads, ", "), harness.Join(gso, buffers))
	for _, e := range errs {
		r.note = harness.Join(r.note, e)
	}
	return r
}

// goodput is a 10 s download over the shaped link, harness.Runs times:
// QUIC against the link's rate less its overhead, TCP beside it once. The
// link's rate is a bracket, from what a backlogged flood realizes (tbf's
// timer wakes late on a loaded host, which only lowers it) to the
// configured rate; every QUIC run must lie within 5 % of it. The agent's
// bottleneck queue is sampled meanwhile: a run short of the bracket while
// the queue stood empty had a sender that did not fill the link (on a
// loaded host, its CPU), which the note says.
func (b *bench) goodput(ctx context.Context, place string, tb *testbed.Testbed, client harness.Host, addr netip.AddrPort) []row {
	q := row{figure: fmt.Sprintf("%s %s: quic goodput, download %v × %d", place, testbed.FormatRate(slowRate), slowTime, rounds),
		bound: "every run within [0.95 × realized, 1.05 × configured] link goodput"}
	t := row{figure: fmt.Sprintf("%s %s: tcp goodput, download %v", place, testbed.FormatRate(slowRate), slowTime),
		bound: "(info)", info: true}
	realized, err := tb.RealizedRate(slowRate, 2*time.Second)
	if err != nil {
		q.quic, q.note = "error", err.Error()
		return []row{q, t}
	}
	configured := slowRate * 1500 / frame // IP layer, full-size packets
	share := min(realized, configured) / configured
	var rates, devs []float64
	var each []string
	q.ok = true
	for k := range rounds {
		if ctx.Err() != nil {
			q.ok = false
			break
		}
		load := harness.Load()
		fmt.Fprintf(os.Stderr, "bench: %s quic for %v, run %d (load %s)...\n", place, slowTime, k+1, load)
		idle := watchQueue(tb, tb.A)
		res, err := b.measure(ctx, client, addr, slowTime+30*time.Second, "quic", "--reverse", "-P", "1", "-t", slowTime.String(), "--ping-interval", "0")
		idleShare := idle()
		if err != nil {
			q.ok = false
			each = append(each, fmt.Sprintf("run %d: %v", k+1, err))
			continue
		}
		conn := res.AgentSide.Conn
		if len(conn) == 0 || conn[len(conn)-1].PacketsSent == 0 {
			q.ok = false
			each = append(each, fmt.Sprintf("run %d: no connection samples from the agent", k+1))
			continue
		}
		last := conn[len(conn)-1]
		ipSize := float64(last.BytesSent)/float64(last.PacketsSent) + 8 + 20
		hi := estimator.QUICGoodput(slowRate, int(math.Round(ipSize)), 14, quicOverhead)
		lo := hi * share
		rate := res.rate()
		ok := rate >= 0.95*lo && rate <= 1.05*hi
		q.ok = q.ok && ok
		rates = append(rates, rate)
		devs = append(devs, 100*(rate-hi)/hi)
		note := fmt.Sprintf("%.3f in [%.3f, %.3f] (%+.2f %% of configured), lost %d of %d, queue empty %.0f %% of the time, load %s",
			rate/1e6, lo/1e6, hi/1e6, 100*(rate-hi)/hi, last.PacketsLost, last.PacketsSent, 100*idleShare, load)
		if !ok && rate < lo && idleShare > 0.03 {
			note += ": the sender did not fill the link (host CPU), not a slower path"
		}
		each = append(each, note)
	}
	q.quic = harness.Spread(ratesMbit(rates), 3) + " Mbit/s"
	q.tcp = fmt.Sprintf("link: flood realized %.3f of %.3f Mbit/s", realized/1e6, configured/1e6)
	q.ratio = harness.Spread(devs, 2) + " % vs configured"
	q.note = strings.Join(each, "; ")

	fmt.Fprintf(os.Stderr, "bench: %s tcp for %v...\n", place, slowTime)
	res, err := b.measure(ctx, client, addr, slowTime+30*time.Second, "tcp", "--reverse", "-P", "1", "-t", slowTime.String())
	if err != nil {
		t.tcp, t.note = "error", err.Error()
	} else {
		rate := res.rate()
		c, a := res.cpuPerGB()
		truth := slowRate * tcpPayload / frame
		t.tcp, t.quic = harness.FormatRate(rate), "truth "+harness.FormatRate(truth)
		t.ratio = fmt.Sprintf("%.4f (tcp/truth)", rate/truth)
		t.cpu = fmt.Sprintf("%.2f+%.2f | -", c, a)
		t.note = fmt.Sprintf("%+.2f %% of TCP's configured truth", 100*(rate-truth)/truth)
	}
	return []row{q, t}
}

// idleShare is the share of false between the first true and the last; 0
// when no sample was true (nothing to judge by).
func idleShare(busy []bool) float64 {
	lo, hi := slices.Index(busy, true), -1
	for i, b := range busy {
		if b {
			hi = i
		}
	}
	if lo < 0 {
		return 0
	}
	n := 0
	for _, b := range busy[lo : hi+1] {
		if !b {
			n++
		}
	}
	return float64(n) / float64(hi-lo+1)
}

func ratesMbit(xs []float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = x / 1e6
	}
	return out
}

// watchQueue samples the backlog of h's bottleneck qdisc every 5 ms until
// the returned function is called, which returns the share of samples,
// from the first with a backlog to the last, that found the queue empty:
// the share of the transfer the link idled for want of packets.
func watchQueue(tb *testbed.Testbed, h *testbed.Host) func() float64 {
	stop := make(chan struct{})
	result := make(chan float64, 1)
	go func() {
		var busy []bool
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				result <- idleShare(busy)
				return
			case <-tick.C:
				if st, err := tb.QdiscStats(h); err == nil {
					busy = append(busy, st.BacklogPackets > 0)
				}
			}
		}
	}()
	return func() float64 {
		close(stop)
		return <-result
	}
}

// measure runs one probe measurement from client and reads its JSON.
func (b *bench) measure(ctx context.Context, client harness.Host, addr netip.AddrPort, limit time.Duration, mode string, args ...string) (result, error) {
	args = append([]string{"measure", "-h", addr.String(), "--mode", mode}, args...)
	args = append(args, "--json", "--ebpf", "off")
	var res result
	b.commands.Record(client, b.probeBin, args...)
	out, err := harness.Run(ctx, client, limit, b.probeBin, args...)
	if err != nil {
		return res, err
	}
	if res, err = readResult(out); err != nil {
		return res, fmt.Errorf("read probe measure output: %w", err)
	}
	if n := res.Client.Totals.Errors + res.AgentSide.Totals.Errors; n > 0 {
		return res, fmt.Errorf("%d streams ended in an error", n)
	}
	return res, nil
}

func medianText(xs []float64) string {
	if len(xs) == 0 {
		return "error"
	}
	var each []string
	for _, x := range xs {
		each = append(each, fmt.Sprintf("%.2f", x/1e9))
	}
	return fmt.Sprintf("%.2f Gbit/s (%s)", harness.Median(xs)/1e9, strings.Join(each, ", "))
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
