package probe

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/probe-dev/probe/probe/internal/wire"
	"golang.org/x/sys/unix"

	"github.com/probe-dev/probe/collector"
)

// SafeSockOpts are the socket options any client may have the agent set on
// its sockets: they shape the client's own test and reach no further.
// Options that pass system limits (SO_RCVBUFFORCE), steer packets (SO_MARK,
// SO_PRIORITY, IP_TRANSPARENT), share ports or spin CPUs (SO_BUSY_POLL) are
// left to the operator, who may allow them by name (serve --allow-sockopt).
var SafeSockOpts = []string{
	"SO_RCVBUF", "SO_SNDBUF", "SO_KEEPALIVE", "SO_RCVLOWAT", "SO_MAX_PACING_RATE",
	"IP_TOS", "IP_TTL", "IPV6_TCLASS", "IPV6_UNICAST_HOPS",
	"TCP_NODELAY", "TCP_MAXSEG", "TCP_CORK", "TCP_CONGESTION", "TCP_QUICKACK", "TCP_NOTSENT_LOWAT",
	"TCP_WINDOW_CLAMP", "TCP_USER_TIMEOUT", "TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT", "TCP_THIN_LINEAR_TIMEOUTS",
}

// System limits the safe options are held to, as an unprivileged process
// is.
const (
	rmemMaxPath       = "/proc/sys/net/core/rmem_max"
	wmemMaxPath       = "/proc/sys/net/core/wmem_max"
	allowedCongestion = "/proc/sys/net/ipv4/tcp_allowed_congestion_control"
)

// sockOptPolicy is what the agent lets clients set: the safe options within
// the system's limits, and whatever its operator widened it with, as asked.
type sockOptPolicy struct {
	widened map[collector.SockOpt]bool // by level and option, values cleared
}

func optKey(o collector.SockOpt) collector.SockOpt {
	return collector.SockOpt{Level: o.Level, Opt: o.Opt}
}

// CheckSockOptNames validates the names an operator widens the allow-list
// with.
func CheckSockOptNames(names []string) error {
	for _, n := range names {
		if _, err := collector.LookupSockOpt(n); err != nil {
			return err
		}
	}
	return nil
}

func newSockOptPolicy(widen []string) sockOptPolicy {
	p := sockOptPolicy{widened: make(map[collector.SockOpt]bool)}
	for _, n := range widen {
		if o, err := collector.LookupSockOpt(n); err == nil {
			p.widened[optKey(o)] = true
		}
	}
	return p
}

func safe(o collector.SockOpt) bool {
	for _, n := range SafeSockOpts {
		if s, err := collector.LookupSockOpt(n); err == nil && optKey(s) == optKey(o) {
			return true
		}
	}
	return false
}

// check refuses the first option a client may not set, or set to that
// value; the refusal is one line that names the way to allow it.
func (p sockOptPolicy) check(opts []string) error {
	for _, s := range opts {
		o, err := collector.ParseSockOpt(s)
		if err != nil {
			return refusal(wire.CodeBadRequest, "%v", err)
		}
		if p.widened[optKey(o)] {
			continue
		}
		if !safe(o) {
			return refusal(wire.CodeSockOpt, "socket option %s is not allowed on this agent (its operator may allow it: serve --allow-sockopt %s)",
				o.Name, o.Name)
		}
		if err := withinLimits(o); err != nil {
			return refusal(wire.CodeSockOpt, "%v (its operator may allow it: serve --allow-sockopt %s)", err, o.Name)
		}
	}
	return nil
}

// withinLimits holds a safe option to what an unprivileged process could
// set: the agent often runs as root, which passes these limits silently.
func withinLimits(o collector.SockOpt) error {
	switch {
	case o.Level == unix.SOL_SOCKET && (o.Opt == unix.SO_RCVBUF || o.Opt == unix.SO_SNDBUF):
		path := rmemMaxPath
		if o.Opt == unix.SO_SNDBUF {
			path = wmemMaxPath
		}
		limit, err := readSysctlInt(path)
		if err != nil {
			return err
		}
		if o.Value < 0 || o.Value > limit {
			return fmt.Errorf("socket option %s: %d bytes outside 0..%d (%s)", o.Name, o.Value, limit, sysctlName(path))
		}
	case o.Level == unix.IPPROTO_TCP && o.Opt == unix.TCP_CONGESTION:
		b, err := os.ReadFile(allowedCongestion)
		if err != nil {
			return fmt.Errorf("read the allowed congestion controls: %w", err)
		}
		allowed := strings.Fields(string(b))
		if !slices.Contains(allowed, o.StrValue) {
			return fmt.Errorf("socket option %s: %q is not among the allowed congestion controls (%s: %s)",
				o.Name, o.StrValue, sysctlName(allowedCongestion), strings.Join(allowed, " "))
		}
	}
	return nil
}

func readSysctlInt(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", sysctlName(path), err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", sysctlName(path), err)
	}
	return v, nil
}

// sysctlName is the sysctl a /proc/sys path is.
func sysctlName(path string) string {
	return strings.ReplaceAll(strings.TrimPrefix(path, "/proc/sys/"), "/", ".")
}
