// Command load puts one agent under load and faults and prints one table:
// many clients of every mode at once, clients killed mid-session, a burst
// of idle connections, and the attacks the agent must shrug off (a relay
// injecting frames, descriptor exhaustion, privileged socket options, a
// frame declaring 2^32-1 records). Per row: clients that succeeded, errors
// and the limit that explains each, and the agent's RSS, descriptors and
// goroutines before, at peak and 10 s after. Then whether any eBPF program
// or link outlives an agent killed with SIGKILL or stopped with SIGTERM.
// Needs root (eBPF, prlimit).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/probe-dev/probe/bench/internal/harness"
	"github.com/probe-dev/probe/probe"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == clientArg {
		runClient(os.Args[2:])
		return
	}
	load := flag.Duration("load", 60*time.Second, "how long the load row runs")
	settle := flag.Duration("settle", 10*time.Second, "wait after each row before the 'after' figures")
	bin := flag.String("probe", "bin/probe", "the probe binary")
	flag.Parse()
	if os.Geteuid() != 0 {
		harness.Fail("bench-load needs root: the agent attaches eBPF and the bench changes its descriptor limit")
	}
	abs, err := filepath.Abs(*bin)
	if err != nil {
		harness.Fail(err.Error())
	}
	if err := run(context.Background(), abs, *load, *settle); err != nil {
		harness.Fail(err.Error())
	}
}

func run(ctx context.Context, bin string, load, settle time.Duration) error {
	dir, err := os.MkdirTemp("", "h11a-load")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b := &bench{bin: bin, dir: dir, settle: settle}
	if err := b.writeKey(); err != nil {
		return err
	}
	ag, err := b.startAgent(ctx)
	if err != nil {
		return err
	}
	b.agent = ag
	defer ag.kill()
	// One session first, so that what the agent sets up once (eBPF
	// attachments, TLS state) is in every row's "before".
	if err := b.genuine(ctx); err != nil {
		return fmt.Errorf("a first session: %w", err)
	}
	time.Sleep(3 * time.Second)
	start := time.Now()

	rows := []struct {
		name string
		fn   func(context.Context) result
	}{
		{fmt.Sprintf("load %v: %d echo, %d tcp, mix of %d", load, echoClients, tcpClients, 4*mixEach), func(ctx context.Context) result { return b.load(ctx, load) }},
		{"kill -9 echo client", func(ctx context.Context) result { return b.killClient(ctx, probe.ModeEcho) }},
		{"kill -9 capacity client", func(ctx context.Context) result { return b.killClient(ctx, probe.ModeCapacity) }},
		{"kill -9 tcp client", func(ctx context.Context) result { return b.killClient(ctx, probe.ModeTCP) }},
		{"kill -9 quic client", func(ctx context.Context) result { return b.killClient(ctx, probe.ModeQUIC) }},
		{"kill -9 run client", func(ctx context.Context) result { return b.killClient(ctx, probe.ModeRun) }},
		{fmt.Sprintf("burst of %d idle connections", burstConns), b.burst},
		{"relay injects a run session", b.relayInjection},
		{"descriptors exhausted", b.exhaustFDs},
		{"privileged socket options", b.privilegedSockOpts},
		{"26-byte frame declaring 2^32-1 records", b.hugeArray},
	}
	var out []row
	for _, r := range rows {
		fmt.Fprintf(os.Stderr, "bench-load: %s\n", r.name)
		out = append(out, b.measure(ctx, r.name, r.fn))
	}
	alive := ag.alive()
	printTable(os.Stdout, out, alive, time.Since(start))
	fmt.Println()
	fmt.Println(b.ebpfAfterDeath(ctx))
	fmt.Println()
	fmt.Println("Commands:")
	for _, c := range b.cmds {
		fmt.Println("  " + c)
	}
	if !alive {
		return fmt.Errorf("the agent died during the bench: %s", strings.TrimSpace(ag.lastLines(3)))
	}
	return nil
}
