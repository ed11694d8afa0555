// Command tcp is the TCP benchmark: in one run it measures with
// probe measure --mode tcp and with iperf3 and prints one table: per figure
// probe's value, the peer's (iperf3, or the truth the figure is judged
// against), their ratio, the bound and whether it holds. The figures:
// aggregate throughput at 1 and 8 streams on loopback and on an unshaped veth
// testbed, probe and iperf3 alternating; 1024 streams on loopback; probe's
// byte counts against the receiving interface's counters; the goodput of a
// 20 Mbit/s tbf link. It exits non-zero when a bound fails or iperf3 is
// missing. Run as root, from the repository: make bench-tcp.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/probe-dev/probe/bench/internal/harness"
	"github.com/probe-dev/probe/testbed"
)

const (
	rounds      = harness.Runs    // alternating rounds per tool and case
	roundTime   = 5 * time.Second // each throughput round
	manyStreams = 1024
	manyBytes   = "256M"
	// wireHeader is what every data segment carries on the veth besides its
	// payload: 14 Ethernet + 20 IP + 32 TCP (20 + 12 of timestamps).
	wireHeader = 14 + 20 + 32
	mss        = 1500 - 20 - 32 // payload of a full frame at MTU 1500
	frame      = 1500 + 14      // what tbf counts per full frame
	slowRate   = 20e6           // the shaped testbed, bit/s of frames
)

// tcpResult holds the fields of probe measure --mode tcp --json the bounds
// read.
type tcpResult struct {
	Client    side `json:"client"`
	AgentSide side `json:"agent_side"`
}

type side struct {
	Streams []struct {
		Err string
	}
	Elapsed time.Duration // ns
	CPU     time.Duration // user + system of this side's process during the test
	Totals  struct {
		Sent, Received     uint64
		SendRate, RecvRate float64 // bit/s
		Retrans            uint32
		Errors             int
	} `json:"totals"`
}

// docSide is a side as probe's tcp JSON gives it (end.client, end.agent).
type docSide struct {
	BytesSent     uint64  `json:"bytes_sent"`
	BytesReceived uint64  `json:"bytes_received"`
	SendBps       float64 `json:"send_bps"`
	ReceiveBps    float64 `json:"receive_bps"`
	ElapsedS      float64 `json:"elapsed_s"`
	CPUUserS      float64 `json:"cpu_user_s"`
	CPUSystemS    float64 `json:"cpu_system_s"`
	Retransmits   uint32  `json:"retransmits"`
	StreamErrors  int     `json:"stream_errors"`
	Streams       []struct {
		Error *string `json:"error"`
	} `json:"streams"`
}

func (d docSide) side() side {
	s := side{Elapsed: time.Duration(d.ElapsedS * float64(time.Second)),
		CPU: time.Duration((d.CPUUserS + d.CPUSystemS) * float64(time.Second))}
	for _, st := range d.Streams {
		e := ""
		if st.Error != nil {
			e = *st.Error
		}
		s.Streams = append(s.Streams, struct{ Err string }{e})
	}
	s.Totals.Sent, s.Totals.Received, s.Totals.SendRate, s.Totals.RecvRate, s.Totals.Retrans, s.Totals.Errors =
		d.BytesSent, d.BytesReceived, d.SendBps, d.ReceiveBps, d.Retransmits, d.StreamErrors
	return s
}

// readResult reads probe's tcp JSON.
func readResult(b []byte) (tcpResult, error) {
	var doc struct {
		End struct {
			Client docSide `json:"client"`
			Agent  docSide `json:"agent"`
		} `json:"end"`
	}
	err := json.Unmarshal(b, &doc)
	return tcpResult{Client: doc.End.Client.side(), AgentSide: doc.End.Agent.side()}, err
}

func (s side) firstErr() string {
	for _, st := range s.Streams {
		if st.Err != "" {
			return st.Err
		}
	}
	return ""
}

// row is one line of the table. An info row has no bound and cannot fail.
type row struct {
	figure, probe, peer, ratio, bound, note string
	ok, info                                bool
}

// place is where a throughput case runs: the servers on one host listening
// on addr, the clients on another.
type place struct {
	name           string
	server, client harness.Host
	agent, iperf   netip.AddrPort
}

// bench holds what every figure needs.
type bench struct {
	probeBin string
	only     string
	commands harness.Commands // every command as run, once, printed under the table
}

func main() {
	bin := flag.String("bin", "bin", "directory with the probe binary")
	only := flag.String("only", "", "run only the places whose name contains this: loopback, veth, tbf")
	flag.Parse()
	if os.Geteuid() != 0 {
		harness.Fail("the tcp benchmark needs root (testbed namespaces, tc)")
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		harness.Fail("iperf3 not installed (apt-get install -y iperf3)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	b := &bench{probeBin: filepath.Join(*bin, "probe"), only: *only}
	rows := b.all(ctx) // every server and testbed is gone when it returns
	interrupted := ctx.Err() != nil
	stop()

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tprobe\tpeer\tprobe/peer\tbound\tok\tnote\t")
	allOK := !interrupted
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
	fmt.Printf("\nthroughput: the receiver's rate (probe: end.received_bps; iperf3: end.sum_received.bits_per_second),\n")
	fmt.Printf("%d rounds of %v per tool, probe and iperf3 alternating; the median, the rounds in brackets.\n", rounds, roundTime)
	fmt.Printf("veth: the testbed's unshaped a — b veth, offloads off, MTU 1500; servers in a, clients in b.\n")
	fmt.Printf("wire payload: the receiving veth's rx_bytes − %d × rx_packets (14 Ethernet + 20 IP + 32 TCP with\n", wireHeader)
	fmt.Printf("timestamps per frame; offloads off, so every segment is one frame of at most the MTU). Pure ACKs\n")
	fmt.Printf("travel the other way; handshakes, the control connection and retransmissions count as noise.\n")
	fmt.Printf("tbf truth: the TCP goodput of the link, %s × %d/%d (payload per full frame).\n",
		testbed.FormatRate(slowRate), mss, frame)
	if v, err := exec.Command("iperf3", "--version").Output(); err == nil {
		fmt.Printf("%s; before 3.16 iperf3 runs every stream of a test on one thread.\n", strings.SplitN(string(v), "\n", 2)[0])
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

// all runs every figure and returns its rows; it stops every process it
// started and takes every testbed down before it returns.
func (b *bench) all(ctx context.Context) []row {
	var rows []row
	// Loopback: throughput, then 1024 streams against the same agent.
	if b.want("loopback") {
		addrs, err := harness.FreeAddrs(2)
		if err != nil {
			return []row{{figure: "loopback", probe: "error", note: err.Error()}}
		}
		p := &place{name: "loopback", agent: addrs[0], iperf: addrs[1]}
		rows = append(rows, b.withServers(ctx, p, func() []row {
			return append(b.throughput(ctx, p), b.many(ctx, p))
		})...)
	}
	// The unshaped veth: throughput and byte accounting.
	if ctx.Err() == nil && b.want("veth") {
		rows = append(rows, b.withTestbed(ctx, "veth", 0, func(tb *testbed.Testbed, p *place) []row {
			return append(b.throughput(ctx, p), b.accounting(ctx, tb, p)...)
		})...)
	}
	// The 20 Mbit/s tbf link: goodput.
	if ctx.Err() == nil && b.want("tbf") {
		rows = append(rows, b.withTestbed(ctx, "tbf", slowRate, func(tb *testbed.Testbed, p *place) []row {
			return b.goodput(ctx, tb, p)
		})...)
	}
	return rows
}

func (b *bench) want(place string) bool { return strings.Contains(place, b.only) }

// withTestbed brings a testbed up, runs fn with the servers in a and the
// clients in b, and takes it down.
func (b *bench) withTestbed(ctx context.Context, label string, rate uint64, fn func(*testbed.Testbed, *place) []row) []row {
	fmt.Fprintf(os.Stderr, "bench: testbed %s up...\n", label)
	name := fmt.Sprintf("bt%s%d", label, os.Getpid()%100000)
	tb, err := testbed.Up(testbed.Config{Name: name, Rate: rate})
	if err != nil {
		return []row{{figure: label + " testbed", probe: "error", note: err.Error()}}
	}
	defer func() {
		if err := tb.Down(); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
	}()
	// Fresh namespaces: the usual ports are free.
	p := &place{name: label, server: harness.Host{TB: tb.A}, client: harness.Host{TB: tb.B},
		agent: netip.AddrPortFrom(tb.A.Addr, 7323), iperf: netip.AddrPortFrom(tb.A.Addr, 5201)}
	return b.withServers(ctx, p, func() []row { return fn(tb, p) })
}

// withServers starts the probe agent and the iperf3 server of p, runs fn and
// stops them.
func (b *bench) withServers(ctx context.Context, p *place, fn func() []row) []row {
	agent, err := b.startServer(ctx, p.server, "probe agent", p.agent,
		b.probeBin, "serve", "--listen", p.agent.String(), "--ebpf", "off")
	if err != nil {
		return []row{{figure: p.name, probe: "error", note: err.Error()}}
	}
	defer agent.Stop()
	// No -1: one server for every round; it is killed at the end.
	iperf, err := b.startServer(ctx, p.server, "iperf3 server", p.iperf,
		"iperf3", "-s", "-B", p.iperf.Addr().String(), "-p", strconv.Itoa(int(p.iperf.Port())))
	if err != nil {
		return []row{{figure: p.name, peer: "error", note: err.Error()}}
	}
	defer iperf.Stop()
	return fn()
}

// throughput is figure 1 at one place: at 1 and 8 streams, probe and iperf3
// alternating, the medians of the receivers' rates, and beside them each
// tool's CPU seconds per GB received: probe's client and agent (their own
// accounts of their processes), iperf3's client and server (its
// cpu_utilization_percent over the test's length).
func (b *bench) throughput(ctx context.Context, p *place) []row {
	var rows []row
	for _, n := range []int{1, 8} {
		r := row{figure: fmt.Sprintf("%s -P %d: throughput", p.name, n), bound: "probe ≥ 0.95 × iperf3 (medians)"}
		cpu := row{figure: fmt.Sprintf("%s -P %d: CPU s/GB, client + server", p.name, n), bound: "(info)", info: true}
		var pr, ir, pc, pa, ic, is []float64
		var errs, loads []string
		for k := range rounds {
			if ctx.Err() != nil {
				break
			}
			loads = append(loads, harness.Load())
			fmt.Fprintf(os.Stderr, "bench: %s -P %d round %d (load %s): probe...\n", p.name, n, k+1, loads[k])
			res, err := b.measure(ctx, p, 30*time.Second, "-P", strconv.Itoa(n), "-t", roundTime.String())
			if err == nil && res.AgentSide.Totals.Errors > 0 {
				err = fmt.Errorf("probe: %d streams failed: %s", res.AgentSide.Totals.Errors, res.AgentSide.firstErr())
			}
			if err != nil {
				errs = append(errs, err.Error())
			} else {
				pr = append(pr, res.AgentSide.Totals.RecvRate)
				gb := float64(res.AgentSide.Totals.Received) / 1e9
				pc, pa = append(pc, res.Client.CPU.Seconds()/gb), append(pa, res.AgentSide.CPU.Seconds()/gb)
			}
			fmt.Fprintf(os.Stderr, "bench: %s -P %d round %d: iperf3...\n", p.name, n, k+1)
			ip, err := b.iperf3Run(ctx, p, n, roundTime)
			if err != nil {
				errs = append(errs, err.Error())
			} else {
				ir = append(ir, ip.bps)
				ic, is = append(ic, ip.clientCPU/ip.gb), append(is, ip.serverCPU/ip.gb)
			}
		}
		r.probe, r.peer = medianText(pr), medianText(ir)
		if len(pr) > 0 && len(ir) > 0 {
			pm, im := harness.Median(pr), harness.Median(ir)
			r.ratio = harness.Ratio(pm, im, 3)
			r.ok = len(errs) == 0 && len(pr) == rounds && len(ir) == rounds && pm >= 0.95*im
		}
		r.note = "load " + strings.Join(loads, ", ")
		if len(errs) > 0 {
			r.note = harness.Join(r.note, strings.Join(errs, "; "))
		}
		cpu.probe = harness.Spread(pc, 3) + " + " + harness.Spread(pa, 3)
		cpu.peer = harness.Spread(ic, 3) + " + " + harness.Spread(is, 3)
		if len(pc) > 0 && len(ic) > 0 {
			cpu.ratio = harness.Ratio(harness.Median(pc)+harness.Median(pa), harness.Median(ic)+harness.Median(is), 2)
		}
		cpu.note = "median (min–max) per side"
		rows = append(rows, r, cpu)
	}
	return rows
}

// many is figure 2: 1024 streams on loopback carry a fixed amount.
func (b *bench) many(ctx context.Context, p *place) row {
	want, _ := strconv.ParseInt(strings.TrimSuffix(manyBytes, "M"), 10, 64)
	want <<= 20
	r := row{figure: fmt.Sprintf("%s -P %d --bytes %s", p.name, manyStreams, manyBytes), peer: "-", ratio: "-",
		bound: "exit 0, totals.Errors = 0 both sides, all bytes received"}
	fmt.Fprintf(os.Stderr, "bench: %s -P %d --bytes %s...\n", p.name, manyStreams, manyBytes)
	res, err := b.measure(ctx, p, 60*time.Second, "-P", strconv.Itoa(manyStreams), "--bytes", manyBytes)
	c, a := res.Client, res.AgentSide
	if err != nil {
		r.probe, r.note = "error", err.Error()
		if e := harness.Join(c.firstErr(), a.firstErr()); e != "" {
			r.note = harness.Join(r.note, "e.g. "+e)
		}
		return r
	}
	r.probe = fmt.Sprintf("exit 0; errors %d/%d; %d B in %.2f s", c.Totals.Errors, a.Totals.Errors,
		a.Totals.Received, a.Elapsed.Seconds())
	r.ok = c.Totals.Errors == 0 && a.Totals.Errors == 0 && c.Totals.Sent == uint64(want) && a.Totals.Received == uint64(want)
	r.note = fmt.Sprintf("errors client/agent; streams client %d, agent %d; client sent %d B, agent received %d B (%s), retransmits %d",
		len(c.Streams), len(a.Streams), c.Totals.Sent, a.Totals.Received, harness.FormatRate(a.Totals.RecvRate), c.Totals.Retrans)
	if e := harness.Join(c.firstErr(), a.firstErr()); e != "" {
		r.note = harness.Join(r.note, "e.g. "+e)
	}
	return r
}

// accounting is figure 3: the client's bytes sent equal the agent's bytes
// received, and both the payload the receiving interface carried.
func (b *bench) accounting(ctx context.Context, tb *testbed.Testbed, p *place) []row {
	eq := row{figure: p.name + " -P 4: client Sent = agent Received", ratio: "-", bound: "equal"}
	wire := row{figure: p.name + " -P 4: agent Received vs wire payload", bound: "|wire − retransmitted − received| ≤ 1 % of received"}
	fmt.Fprintf(os.Stderr, "bench: %s byte accounting, -P 4 for 3 s...\n", p.name)
	b0, p0, err := tb.A.RxCounters()
	if err != nil {
		eq.probe, wire.probe, eq.note = "error", "error", err.Error()
		return []row{eq, wire}
	}
	res, merr := b.measure(ctx, p, 30*time.Second, "-P", "4", "-t", "3s")
	b1, p1, err := tb.A.RxCounters()
	if merr != nil || err != nil {
		eq.probe, wire.probe, eq.note = "error", "error", harness.Join(errText(merr), errText(err))
		return []row{eq, wire}
	}
	sent, got := res.Client.Totals.Sent, res.AgentSide.Totals.Received
	eq.probe = fmt.Sprintf("%d B sent, %d B received", sent, got)
	eq.peer = "-"
	eq.ok = sent == got && got > 0
	eq.note = fmt.Sprintf("difference %d B; %s", int64(sent)-int64(got), harness.FormatRate(res.AgentSide.Totals.RecvRate))

	db, dp := b1-b0, p1-p0
	payload := int64(db) - wireHeader*int64(dp)
	wire.probe = fmt.Sprintf("%d B", got)
	wire.peer = fmt.Sprintf("%d B", payload)
	wire.ratio = harness.Ratio(float64(got), float64(payload), 3)
	dev := 100 * math.Abs(float64(payload)-float64(got)) / float64(max(got, 1))
	// Retransmitted segments cross the wire twice but are received once
	// (1 % of the bytes in one run, 0.6–0.9 % in others: the bound is on
	// what is left).
	rt := res.Client.Totals.Retrans
	devRT := 100 * math.Abs(float64(payload-int64(rt)*mss)-float64(got)) / float64(max(got, 1))
	wire.ok = got > 0 && devRT <= 1
	wire.note = fmt.Sprintf("%s rx on %s: %d B, %d packets; deviation %.3f %%; client retransmits %d, "+
		"deviation less them (× %d B) %.3f %%", tb.A.NS, tb.A.Ifname, db, dp, dev, rt, mss, devRT)
	return []row{eq, wire}
}

// goodput is figure 4: one stream over the 20 Mbit/s link against the
// link's TCP goodput, and iperf3's figure for reference. The link's rate is
// a bracket: from what a backlogged flood realizes (tbf's timer wakes late
// on a loaded host, which only lowers it) to the configured rate.
func (b *bench) goodput(ctx context.Context, tb *testbed.Testbed, p *place) []row {
	truth := slowRate * mss / frame
	r := row{figure: fmt.Sprintf("%s %s -P 1 -t 10s: goodput", p.name, testbed.FormatRate(slowRate)),
		bound: "within [0.95 × realized, 1.05 × configured] link goodput"}
	ref := row{figure: fmt.Sprintf("%s %s -P 1 -t 10s: iperf3", p.name, testbed.FormatRate(slowRate)),
		bound: "(info)", info: true}
	realized, err := tb.RealizedRate(slowRate, 2*time.Second)
	if err != nil {
		r.probe, r.note = "error", err.Error()
		return []row{r, ref}
	}
	lo := truth * min(realized/(slowRate*1500/frame), 1)
	r.peer = fmt.Sprintf("truth [%s, %s]", harness.FormatRate(lo), harness.FormatRate(truth))
	load := harness.Load()
	fmt.Fprintf(os.Stderr, "bench: %s -P 1 for 10 s (load %s): probe...\n", p.name, load)
	res, err := b.measure(ctx, p, 40*time.Second, "-P", "1", "-t", "10s")
	var rate float64
	if err != nil {
		r.probe, ref.probe, r.note = "error", "error", err.Error()
	} else {
		rate = res.AgentSide.Totals.RecvRate
		r.probe, ref.probe = harness.FormatRate(rate), harness.FormatRate(rate)
		r.ratio = harness.Ratio(rate, truth, 3)
		r.ok = rate >= 0.95*lo && rate <= 1.05*truth
		r.note = fmt.Sprintf("%+.2f %% of the configured goodput; %d B in %.2f s; client retransmits %d; load %s", 100*(rate-truth)/truth,
			res.AgentSide.Totals.Received, res.AgentSide.Elapsed.Seconds(), res.Client.Totals.Retrans, load)
	}
	fmt.Fprintf(os.Stderr, "bench: %s -P 1 for 10 s: iperf3...\n", p.name)
	ip, err := b.iperf3Run(ctx, p, 1, 10*time.Second)
	bps, rt := ip.bps, ip.retrans
	if err != nil {
		ref.peer, ref.note = "error", err.Error()
	} else {
		ref.peer = harness.FormatRate(bps)
		ref.note = fmt.Sprintf("iperf3 %+.2f %% of truth; iperf3 retransmits %d", 100*(bps-truth)/truth, rt)
		if rate > 0 {
			ref.ratio = harness.Ratio(rate, bps, 3)
		}
	}
	return []row{r, ref}
}

// measure runs one probe TCP measurement from p's client host and reads its
// JSON.
func (b *bench) measure(ctx context.Context, p *place, limit time.Duration, args ...string) (tcpResult, error) {
	args = append([]string{"measure", "-h", p.agent.String(), "--mode", "tcp"}, args...)
	args = append(args, "--json", "--ebpf", "off")
	var res tcpResult
	out, err := b.run(ctx, p.client, limit, b.probeBin, args...)
	// A failed run may still print its JSON; keep what it says.
	res, jerr := readResult(out)
	if err != nil {
		return res, err
	}
	if jerr != nil {
		return res, fmt.Errorf("read probe measure output: %w", jerr)
	}
	return res, nil
}

// iperfRun is what one iperf3 test gave: the receiver's rate, GB
// received, both ends' CPU seconds and the sender's retransmits.
type iperfRun struct {
	bps, gb              float64
	clientCPU, serverCPU float64
	retrans              int
}

// iperf3Run runs one iperf3 TCP test from p's client host.
func (b *bench) iperf3Run(ctx context.Context, p *place, streams int, d time.Duration) (iperfRun, error) {
	out, err := b.run(ctx, p.client, d+25*time.Second, "iperf3", "-c", p.iperf.Addr().String(),
		"-p", strconv.Itoa(int(p.iperf.Port())), "-P", strconv.Itoa(streams), "-t", strconv.Itoa(int(d.Seconds())), "--json")
	// iperf3 exits non-zero on failure but still prints its JSON with the
	// reason.
	var doc struct {
		Error string `json:"error"`
		End   struct {
			SumReceived *struct {
				Seconds float64 `json:"seconds"`
				Bytes   float64 `json:"bytes"`
				Bps     float64 `json:"bits_per_second"`
			} `json:"sum_received"`
			SumSent *struct {
				Seconds     float64 `json:"seconds"`
				Retransmits int     `json:"retransmits"`
			} `json:"sum_sent"`
			CPU struct {
				Host   float64 `json:"host_total"`
				Remote float64 `json:"remote_total"`
			} `json:"cpu_utilization_percent"`
		} `json:"end"`
	}
	if jerr := json.Unmarshal(out, &doc); jerr != nil {
		if err != nil {
			return iperfRun{}, err
		}
		return iperfRun{}, fmt.Errorf("read iperf3 output: %w", jerr)
	}
	if doc.Error != "" {
		return iperfRun{}, fmt.Errorf("iperf3: %s", doc.Error)
	}
	if err != nil {
		return iperfRun{}, err
	}
	if doc.End.SumReceived == nil || doc.End.SumReceived.Seconds <= 0 {
		return iperfRun{}, errors.New("iperf3 output has no end.sum_received")
	}
	r := iperfRun{bps: doc.End.SumReceived.Bps, gb: doc.End.SumReceived.Bytes / 1e9}
	// iperf3's CPU percentages are of the test's wall time, 100 = one core.
	secs := doc.End.SumReceived.Seconds
	if doc.End.SumSent != nil {
		r.retrans = doc.End.SumSent.Retransmits
		secs = max(secs, doc.End.SumSent.Seconds)
	}
	r.clientCPU, r.serverCPU = doc.End.CPU.Host/100*secs, doc.End.CPU.Remote/100*secs
	return r, nil
}

// medianText is the median and, in brackets, every round.
func medianText(xs []float64) string {
	if len(xs) == 0 {
		return "error"
	}
	var each []string
	scale, unit := harness.RateUnit(harness.Median(xs))
	for _, x := range xs {
		each = append(each, fmt.Sprintf("%.2f", x/scale))
	}
	return fmt.Sprintf("%.2f %s (%s)", harness.Median(xs)/scale, unit, strings.Join(each, ", "))
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// run records a command and runs it in h within limit; see harness.Run.
func (b *bench) run(ctx context.Context, h harness.Host, limit time.Duration, bin string, args ...string) ([]byte, error) {
	b.commands.Record(h, bin, args...)
	return harness.Run(ctx, h, limit, bin, args...)
}

// startServer records a command and starts it in h as a server listening on
// TCP addr.
func (b *bench) startServer(ctx context.Context, h harness.Host, name string, addr netip.AddrPort, bin string, args ...string) (*harness.Server, error) {
	b.commands.Record(h, bin, args...)
	return harness.Start(ctx, h, name, harness.Listening("tcp", addr), bin, args...)
}
