package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/probe-dev/probe/bench/internal/harness"
	"github.com/probe-dev/probe/probe"
)

// bpfOf lists the ids of kind ("prog" or "link") that pid holds
// descriptors of, from /proc/PID/fdinfo (this bpftool lists no pids).
func bpfOf(kind string, pid int) ([]int, error) {
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var ids []int
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, kind+"_id:"); ok {
				if id, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && !slices.Contains(ids, id) {
					ids = append(ids, id)
				}
			}
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// stillThere are the ids of kind that exist yet.
func stillThere(kind string, ids []int) []int {
	var left []int
	for _, id := range ids {
		if exec.Command("bpftool", kind, "show", "id", fmt.Sprint(id)).Run() == nil {
			left = append(left, id)
		}
	}
	return left
}

// ebpfAfterDeath starts an agent with eBPF on, holds an echo session on
// it, ends the agent with SIGKILL or SIGTERM and says which of its
// programs and links are left.
func (b *bench) ebpfAfterDeath(ctx context.Context) string {
	var lines []string
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		lines = append(lines, b.ebpfAfter(ctx, sig))
	}
	b.cmds.Record(harness.Host{}, "bpftool", "prog", "show", "id", "ID")
	b.cmds.Record(harness.Host{}, "bpftool", "link", "show", "id", "ID")
	return "eBPF after the agent ends (the ids the agent held, from /proc/PID/fdinfo; then bpftool prog/link show id N):\n" + strings.Join(lines, "\n")
}

func (b *bench) ebpfAfter(ctx context.Context, sig syscall.Signal) string {
	ag, err := b.startAgent(ctx, "--ebpf", "on")
	if err != nil {
		return fmt.Sprintf("- %v: %v", sig, err)
	}
	defer ag.kill()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		c, err := probe.Dial(sctx, ag.addr.String(), b.clientConfig(netip.MustParseAddr("127.0.0.1")))
		if err != nil {
			return
		}
		defer c.Close()
		c.Echo(sctx, probe.EchoParams{Count: 100000, Size: 64, Interval: time.Millisecond}, probe.EchoOptions{Wait: time.Second})
	}()
	pid := ag.cmd.Process.Pid
	var progs, links []int
	deadline := time.Now().Add(5 * time.Second)
	for len(links) == 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		progs, _ = bpfOf("prog", pid)
		links, _ = bpfOf("link", pid)
	}
	ag.cmd.Process.Signal(sig)
	select {
	case <-ag.done:
	case <-time.After(10 * time.Second):
		return fmt.Sprintf("- %v during an echo session: the agent did not exit within 10 s", sig)
	}
	time.Sleep(500 * time.Millisecond) // the kernel frees what the last descriptor held
	lp, ll := stillThere("prog", progs), stillThere("link", links)
	return fmt.Sprintf("- %v during an echo session: the agent held %d programs %v and %d links %v; after it exited, %d programs %v and %d links %v are left",
		sig, len(progs), progs, len(links), links, len(lp), lp, len(ll), ll)
}
