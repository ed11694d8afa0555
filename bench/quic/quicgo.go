package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/probe-dev/probe/bench/internal/harness"
)

// quicgoEnv names quic-go's own perf tool (github.com/quic-go/perf, its
// cmd built into one binary): when set, the loopback place also runs it as
// client and server beside probe's perf client and server, so that what a
// QUIC byte costs in quic-go can be told from what it costs in probe.
const quicgoEnv = "PROBE_BENCH_QUICGO_PERF"

// findQUICGoPerf is the quic-go perf binary, or why there is none.
func findQUICGoPerf() (string, string) {
	v := os.Getenv(quicgoEnv)
	if v == "" {
		return "", quicgoEnv + " is not set: give it the path of a binary of github.com/quic-go/perf's cmd " +
			"(built with the quic-go version of go.mod) to run quic-go's perf client and server beside probe's"
	}
	if fi, err := os.Stat(v); err != nil || fi.IsDir() {
		return "", fmt.Sprintf("%s=%s is not a file", quicgoEnv, v)
	}
	return v, ""
}

// perfPair is one client and one server of the side-by-side runs.
type perfPair struct {
	name         string
	client       string // "quic-go", "probe perf" (--perf-server), "probe" (-h)
	server       string // "quic-go", "probe --quic-perf", "probe serve"
	rates        []float64
	cCPU, sCPU   []float64 // s/GB received
	loads, errs  []string
	bytesPerSecs float64 // the quic-go client's recent rate, B/s, to size its next request
}

// quicgoAddrs are the loopback places of the side-by-side runs.
type quicgoAddrs struct {
	control, probePerf, quicgo netip.AddrPort
}

// besideQUICGo runs every pair of quic-go's and probe's perf client and server
// (and probe's client and agent over a control connection) on loopback, a
// download by time (quic-go's client: by bytes, sized to the time from its
// previous rate), the pairs alternating in an order rotated each round,
// and returns the table and the ratios as lines. agent is the running probe serve.
func (b *bench) besideQUICGo(ctx context.Context, perf string, addrs quicgoAddrs, agent *harness.Server) []string {
	qg, err := harness.Start(ctx, harness.Host{}, "quic-go perf server", harness.Listening("udp", addrs.quicgo),
		perf, "--run-server", "--server-address", addrs.quicgo.String())
	if err != nil {
		return []string{"quic-go perf: error: " + err.Error()}
	}
	defer qg.Stop()
	b.commands.Record(harness.Host{}, perf, "--run-server", "--server-address", addrs.quicgo.String())
	pairs := []*perfPair{
		{name: "a", client: "quic-go", server: "quic-go"},
		{name: "b", client: "quic-go", server: "probe --quic-perf"},
		{name: "c", client: "probe --perf-server", server: "quic-go"},
		{name: "d", client: "probe --perf-server", server: "probe --quic-perf"},
		{name: "e", client: "probe -h", server: "probe serve"},
	}
	for k := range rounds {
		// The order rotates each round, so that a load that drifts within
		// a round favours no pair.
		for _, p := range slices.Concat(pairs[k%len(pairs):], pairs[:k%len(pairs)]) {
			if ctx.Err() != nil {
				break
			}
			load := harness.Load()
			fmt.Fprintf(os.Stderr, "bench: loopback beside quic-go, round %d (load %s): %s → %s...\n", k+1, load, p.client, p.server)
			server := agent
			if p.server == "quic-go" {
				server = qg
			}
			if err := b.perfRun(ctx, perf, addrs, p, server); err != nil {
				p.errs = append(p.errs, fmt.Sprintf("round %d: %v", k+1, err))
				continue
			}
			p.loads = append(p.loads, load)
		}
	}
	return besideTable(pairs)
}

// perfRun is one download of p, its CPU per GB received on either side.
func (b *bench) perfRun(ctx context.Context, perf string, addrs quicgoAddrs, p *perfPair, server *harness.Server) error {
	target := addrs.probePerf
	if p.server == "quic-go" {
		target = addrs.quicgo
	}
	var bin string
	var args []string
	switch p.client {
	case "quic-go":
		if p.bytesPerSecs == 0 {
			p.bytesPerSecs = 1e9 / 8 // a first guess: 1 Gbit/s
		}
		n := uint64(p.bytesPerSecs*roundTime.Seconds()) >> 20
		bin, args = perf, []string{"--server-address", target.String(), "--download-bytes", fmt.Sprintf("%dM", max(n, 1))}
	case "probe --perf-server":
		bin, args = b.probeBin, []string{"measure", "--perf-server", target.String(), "--insecure", "-R", "-P", "1", "-t", roundTime.String(),
			"--json", "--ebpf", "off"}
	default:
		bin, args = b.probeBin, []string{"measure", "-h", addrs.control.String(), "--mode", "quic", "-R", "-P", "1", "-t", roundTime.String(),
			"--ping-interval", "0", "--json", "--ebpf", "off"}
	}
	shown := args
	if p.client == "quic-go" {
		// One line for all rounds, whatever each asked for.
		shown = append(args[:len(args)-1:len(args)-1], fmt.Sprintf("NM (N: MiB in %v at its last rate)", roundTime))
	}
	b.commands.Record(harness.Host{}, bin, shown...)
	s0, err := server.CPU()
	if err != nil {
		return err
	}
	f, err := harness.RunAll(ctx, harness.Host{}, roundTime+30*time.Second, bin, args...)
	if err != nil {
		return err
	}
	s1, err := server.CPU()
	if err != nil {
		return err
	}
	var bytes uint64
	var rate float64
	if p.client == "quic-go" {
		if bytes, rate, err = readQUICGoPerf(f.Stdout, f.Stderr); err != nil {
			return err
		}
		p.bytesPerSecs = rate / 8
	} else {
		res, err := readResult(f.Stdout)
		if err != nil {
			return fmt.Errorf("read probe measure output: %w", err)
		}
		if n := res.Client.Totals.Errors; n > 0 {
			return fmt.Errorf("%d streams ended in an error", n)
		}
		bytes, rate = res.Client.Totals.Received, res.rate()
	}
	if bytes == 0 {
		return fmt.Errorf("nothing received")
	}
	gb := float64(bytes) / 1e9
	p.rates = append(p.rates, rate)
	p.cCPU = append(p.cCPU, f.CPU.Seconds()/gb)
	p.sCPU = append(p.sCPU, (s1-s0).Seconds()/gb)
	return nil
}

// quicgoDownload is the line quic-go's perf client logs at the end:
// "downloaded 1.00 GiB: 8.81s (975.15 mbps)".
var quicgoDownload = regexp.MustCompile(`downloaded [^:]*: ([0-9.]+)s`)

// readQUICGoPerf reads the bytes quic-go's perf client downloaded (its
// final JSON line) and its rate, bit/s, over the download's own time (its
// log line; the JSON's time includes the handshake).
func readQUICGoPerf(stdout, stderr []byte) (uint64, float64, error) {
	var bytes uint64
	for _, line := range strings.Split(string(stdout), "\n") {
		var r struct {
			Type          string `json:"type"`
			DownloadBytes uint64 `json:"downloadBytes"`
		}
		if json.Unmarshal([]byte(line), &r) == nil && r.Type == "final" {
			bytes = r.DownloadBytes
		}
	}
	m := quicgoDownload.FindSubmatch(stderr)
	if bytes == 0 || m == nil {
		return 0, 0, fmt.Errorf("quic-go perf client: no final result in its output: %.200q", string(stderr))
	}
	secs, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil || secs <= 0 {
		return 0, 0, fmt.Errorf("quic-go perf client: download time %q", m[1])
	}
	return bytes, float64(bytes) * 8 / secs, nil
}

// besideTable prints the pairs and the ratios that tell quic-go's cost
// from probe's: each role against the same peer.
func besideTable(pairs []*perfPair) []string {
	var out []string
	var sb strings.Builder
	tw := newTable(&sb)
	fmt.Fprintln(tw, "client → server\tGbit/s\tclient CPU s/GB\tserver CPU s/GB\tload\tnote\t")
	by := map[string]*perfPair{}
	for _, p := range pairs {
		by[p.name] = p
		fmt.Fprintf(tw, "%s → %s\t%s\t%s\t%s\t%s\t%s\t\n", p.client, p.server, harness.Spread(scale(p.rates, 1e-9), 2),
			harness.Spread(p.cCPU, 2), harness.Spread(p.sCPU, 2), strings.Join(p.loads, ", "), strings.Join(p.errs, "; "))
	}
	tw.Flush()
	out = append(out, strings.Split(strings.TrimRight(sb.String(), "\n"), "\n")...)
	ratio := func(x, y []float64) string { return harness.Ratio(harness.Median(x), harness.Median(y), 2) }
	a, b, c, d, e := by["a"], by["b"], by["c"], by["d"], by["e"]
	out = append(out,
		fmt.Sprintf("probe's perf client / quic-go's, CPU per GB: %s against quic-go's server, %s against probe's", ratio(c.cCPU, a.cCPU), ratio(d.cCPU, b.cCPU)),
		fmt.Sprintf("probe's perf server / quic-go's, CPU per GB: %s with quic-go's client, %s with probe's", ratio(b.sCPU, a.sCPU), ratio(d.sCPU, c.sCPU)),
		fmt.Sprintf("probe -h ↔ serve / quic-go ↔ quic-go: rate %s, client CPU per GB %s, server %s", ratio(e.rates, a.rates), ratio(e.cCPU, a.cCPU), ratio(e.sCPU, a.sCPU)),
		fmt.Sprintf("download, 1 connection, 1 stream, %d rounds of %v, the pairs alternating, their order rotated each round;", rounds, roundTime),
		"medians (min–max). quic-go's client asks for bytes, sized to the time from its previous rate; its rate is over its",
		"download's own time. CPU: user + system of each whole process per GB received: the client's from wait4, the",
		"server's from /proc/PID/stat before and after.")
	return out
}

func newTable(sb *strings.Builder) *tabwriter.Writer { return tabwriter.NewWriter(sb, 0, 0, 2, ' ', 0) }

func scale(xs []float64, k float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = x * k
	}
	return out
}
