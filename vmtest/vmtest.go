// Package vmtest checks probe across the multi-VM testbed (the repository's
// Vagrantfile, brought up by vm/up.sh) against the truth netem is told in
// the guests: RTT, loss, capacity, TCP and QUIC goodput, and a scenario whose
// hosts are the VMs' agents. Its tests skip unless PROBE_VM_ENV names the env
// file of a running testbed; vm/test.sh sets it.
package vmtest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Env is a running testbed as vm/up.sh describes it.
type Env struct {
	NetNS     string            // the network namespace holding libvirt's networks
	SSHConfig string            // ssh -F file naming every VM
	KeyFile   string            // the agents' key, on the host
	Probe     string            // the host's probe binary (also installed in the VMs)
	Shape     string            // vm/shape.sh
	Paths     string            // the shaping file the testbed came up with
	HostAddr  string            // the host's address on the private network
	VMs       []string          // server first, then client1..N
	Addr      map[string]string // VM name -> private address
}

// GuestKey and GuestProbe are where vm/provision.sh installs them.
const (
	GuestKey   = "/etc/probe/probe.key"
	GuestProbe = "/usr/local/bin/probe"
)

// Load reads an env file of key=value lines.
func Load(path string) (*Env, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	e := &Env{Addr: map[string]string{}}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		switch {
		case k == "netns":
			e.NetNS = v
		case k == "ssh_config":
			e.SSHConfig = v
		case k == "key_file":
			e.KeyFile = v
		case k == "probe":
			e.Probe = v
		case k == "shape":
			e.Shape = v
		case k == "paths":
			e.Paths = v
		case k == "host_address":
			e.HostAddr = v
		case k == "vms":
			e.VMs = strings.Fields(v)
		case strings.HasPrefix(k, "address."):
			e.Addr[strings.TrimPrefix(k, "address.")] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if e.NetNS == "" || e.SSHConfig == "" || len(e.VMs) < 2 {
		return nil, fmt.Errorf("%s: not a testbed env file (netns, ssh_config and at least 2 vms needed)", path)
	}
	for _, vm := range e.VMs {
		if e.Addr[vm] == "" {
			return nil, fmt.Errorf("%s: no address for %s", path, vm)
		}
	}
	return e, nil
}

// Clients are the VMs other than the server.
func (e *Env) Clients() []string {
	var c []string
	for _, vm := range e.VMs {
		if vm != "server" {
			c = append(c, vm)
		}
	}
	return c
}

// Host runs a command in the testbed's namespace on the host, whose
// private-network address is HostAddr.
func (e *Env) Host(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", e.NetNS, name}, args...)...)
}

// Guest runs a shell command line in a VM over ssh.
func (e *Env) Guest(ctx context.Context, vm, command string) *exec.Cmd {
	return e.Host(ctx, "ssh", "-F", e.SSHConfig, "-o", "BatchMode=yes", vm, command)
}

// Output runs cmd and returns its stdout, or an error holding its stderr.
func Output(cmd *exec.Cmd) (string, error) {
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %w after %.1f s\n%s", strings.Join(cmd.Args, " "), err, time.Since(start).Seconds(), errb.String())
	}
	return out.String(), nil
}

// ShapeWith applies a shaping file's text to every VM through vm/shape.sh.
func (e *Env) ShapeWith(ctx context.Context, conf string) (string, error) {
	f, err := os.CreateTemp("", "probe-vm-paths")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(conf); err != nil {
		return "", err
	}
	f.Close()
	return Output(exec.CommandContext(ctx, e.Shape, f.Name()))
}

// netemStats finds the netem qdisc in `tc -s qdisc show` output.
var netemStats = regexp.MustCompile(`qdisc netem [^\n]*\n\s*Sent (\d+) bytes (\d+) pkt \(dropped (\d+),`)

// NetemDrops is what the netem qdisc on a VM's private interface has dropped.
func (e *Env) NetemDrops(ctx context.Context, vm string) (uint64, error) {
	out, err := Output(e.Guest(ctx, vm, "sudo /usr/local/sbin/probe-shape --show"))
	if err != nil {
		return 0, err
	}
	m := netemStats.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("%s: no netem qdisc in\n%s", vm, out)
	}
	return strconv.ParseUint(m[3], 10, 64)
}

// NetemRealized is the rate (bit/s, of Ethernet frames as netem counts
// them) at which a VM's netem qdisc sends while it holds a backlog: 900
// back-to-back echo probes of 1400 B to the agent at to fill its queue
// (5.3 s of it at 2 Mbit/s), and its byte counter is read 0.5 s and 3.5 s
// later, each read stamped in the guest at the middle of two clock reads
// around it (a starved guest takes tens of ms for one). A TCG guest starved
// of the host's CPU fires netem's timer late and sends less than the
// configured rate, as tbf does on a loaded host.
func (e *Env) NetemRealized(ctx context.Context, vm, to string) (float64, error) {
	script := fmt.Sprintf(`ifc=$(cat /etc/probe/iface)
read_at() { s=$(date +%%s%%N); q=$(tc -s qdisc show dev $ifc); e=$(date +%%s%%N); printf '%%s\n%%s\n' $(( (s + e) / 2 )) "$q"; }
%s measure -h %s --key-file %s -i 0 -n 900 -l 1400 --no-gso --wait 100ms >/dev/null 2>&1 &
sleep 0.5; a=$(read_at)
sleep 3; b=$(read_at)
wait
sleep 2.5
printf '%%s\n---\n%%s\n' "$a" "$b"
`, GuestProbe, e.Addr[to], GuestKey)
	cmd := e.Guest(ctx, vm, "sudo sh -s")
	cmd.Stdin = strings.NewReader(script)
	out, err := Output(cmd)
	if err != nil {
		return 0, err
	}
	var at [2]float64
	var sent [2]uint64
	for i, part := range strings.SplitN(out, "\n---\n", 2) {
		t, rest, _ := strings.Cut(part, "\n")
		m := netemStats.FindStringSubmatch(rest)
		ns, terr := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
		if m == nil || terr != nil {
			return 0, fmt.Errorf("%s: no netem counters in\n%s", vm, out)
		}
		at[i] = float64(ns) / 1e9
		sent[i], _ = strconv.ParseUint(m[1], 10, 64)
	}
	if at[1] <= at[0] || sent[1] <= sent[0] {
		return 0, fmt.Errorf("%s: netem sent %d then %d bytes at %.3f and %.3f s", vm, sent[0], sent[1], at[0], at[1])
	}
	return float64(sent[1]-sent[0]) * 8 / (at[1] - at[0]), nil
}

// BinomialInterval is the central interval of Binomial(n, p) holding at
// least conf of its mass: P(X < lo) ≤ (1-conf)/2 and P(X > hi) ≤ (1-conf)/2.
func BinomialInterval(n int, p, conf float64) (lo, hi int) {
	tail := (1 - conf) / 2
	// pmf(k) by the recurrence pmf(k+1) = pmf(k)·(n-k)/(k+1)·p/(1-p), from
	// pmf(0) = (1-p)^n in logs so that large n does not underflow at once.
	logq := float64(n) * math.Log1p(-p)
	pmf := math.Exp(logq)
	cdf := 0.0
	lo, hi = -1, n
	for k := 0; k <= n; k++ {
		if k > 0 {
			pmf *= float64(n-k+1) / float64(k) * p / (1 - p)
		}
		cdf += pmf
		if lo < 0 && cdf > tail {
			lo = k
		}
		if cdf >= 1-tail {
			hi = k
			break
		}
	}
	return lo, hi
}
