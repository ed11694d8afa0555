// Package testbed builds the embedded network testbed of docs/design.md: named network
// namespaces joined by veth, directly (a — b) or through a router namespace (a — r — b),
// with tbf shaping on the bottleneck egress and offloads off. Everything is done with
// netlink and ioctls from Go; nothing shells out to ip, tc or ethtool.
//
// Namespaces are named "probe-<name>-a", "probe-<name>-b" and "probe-<name>-r" under
// /run/netns, like `ip netns add` makes them, so `ip netns exec` works on them and
// leftovers of crashed runs can be found and removed (DownAll).
package testbed

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"

	"golang.org/x/sys/unix"
)

// Config says what testbed Up builds.
type Config struct {
	// Name tells testbeds apart; default "tb". Letters, digits, '-' and '_', at most 32.
	Name string
	// Router puts a router namespace between a and b instead of one direct veth.
	Router bool
	// Rate is the bottleneck rate in bit/s in each direction; 0 leaves the path unshaped.
	Rate uint64
	// Burst is the tbf bucket in bytes; 0 means one full frame plus a little slack
	// (MTU+100, 1600 for MTU 1500), never two frames: a larger bucket lets packet pairs
	// through unspread.
	Burst uint32
	// Limit is the tbf queue in bytes; 0 means 64 full frames, room for a 50-packet train.
	Limit uint32
	// MTU of the testbed links; default 1500.
	MTU int
}

// Testbed is a running testbed. It holds no open files: it can be used from any
// goroutine and needs no Close, only Down when it should go away.
type Testbed struct {
	Name string
	A, B *Host
	R    *Host // nil without a router
	MTU  int
}

// Host is one namespace of a testbed.
type Host struct {
	Name   string     // "a", "b" or "r"
	NS     string     // namespace name under /run/netns
	Addr   netip.Addr // the address the other side reaches it at (for r: its address on a's side)
	Ifname string     // its testbed interface (for r: the one toward a)
	Ifaces []Iface    // all its testbed interfaces

	gateway netip.Addr // default route, in the router topology
}

// Iface is one testbed interface of a host.
type Iface struct {
	Name       string       // e.g. "veth0"
	Prefix     netip.Prefix // its address and subnet
	Bottleneck bool         // tbf shapes its egress
}

// Defaults, and the sizes the tbf defaults derive from.
const (
	DefaultName = "tb"
	DefaultMTU  = 1500

	// ethHeader is what tbf counts per packet on top of the IP packet.
	ethHeader = 14
	// burstSlack is added to one full frame for the default bucket (less for tiny MTUs,
	// so the bucket stays below two frames).
	burstSlack = 86
	// limitFrames full frames fit in the default queue.
	limitFrames = 64
)

// testHookAfterBuild lets a test fail Up half-way.
var testHookAfterBuild func() error

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_-]{0,31}$`)

// ErrNotPrivileged is returned when the process lacks the capabilities namespaces,
// links and qdiscs need.
var ErrNotPrivileged = errors.New("testbed needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN)")

// ErrNoTestbed is returned by Open when the testbed's namespaces do not exist.
var ErrNoTestbed = errors.New("no such testbed")

// CheckPrivileges returns ErrNotPrivileged unless the process has CAP_NET_ADMIN and
// CAP_SYS_ADMIN in its effective set.
func CheckPrivileges() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	need := uint32(1)<<unix.CAP_NET_ADMIN | uint32(1)<<unix.CAP_SYS_ADMIN
	if data[0].Effective&need != need {
		return ErrNotPrivileged
	}
	return nil
}

func nsName(tb, host string) string { return nsPrefix + tb + "-" + host }

// layout is the one description of both topologies, used to build (Up) and to check (Open).
func layout(name string, router bool, mtu int) *Testbed {
	tb := &Testbed{Name: name, MTU: mtu}
	host := func(h string, gw string, ifs ...Iface) *Host {
		hh := &Host{Name: h, NS: nsName(name, h), Ifaces: ifs, Ifname: ifs[0].Name, Addr: ifs[0].Prefix.Addr()}
		if gw != "" {
			hh.gateway = netip.MustParseAddr(gw)
		}
		return hh
	}
	iface := func(n, p string, bottleneck bool) Iface {
		return Iface{Name: n, Prefix: netip.MustParsePrefix(p), Bottleneck: bottleneck}
	}
	if !router {
		tb.A = host("a", "", iface("veth0", "10.77.0.1/24", true))
		tb.B = host("b", "", iface("veth0", "10.77.0.2/24", true))
		return tb
	}
	tb.A = host("a", "10.77.1.254", iface("veth0", "10.77.1.1/24", false))
	tb.B = host("b", "10.77.2.254", iface("veth0", "10.77.2.1/24", false))
	// r's egress toward b shapes a->b, its egress toward a shapes b->a.
	tb.R = host("r", "", iface("veth0", "10.77.1.254/24", true), iface("veth1", "10.77.2.254/24", true))
	return tb
}

// Hosts returns a, b and, with a router, r.
func (tb *Testbed) Hosts() []*Host {
	if tb.R != nil {
		return []*Host{tb.A, tb.B, tb.R}
	}
	return []*Host{tb.A, tb.B}
}

// Host returns the host named "a", "b" or "r".
func (tb *Testbed) Host(name string) (*Host, error) {
	for _, h := range tb.Hosts() {
		if h.Name == name {
			return h, nil
		}
	}
	if name == "r" {
		return nil, fmt.Errorf("testbed %s has no host r: it was made without a router", tb.Name)
	}
	return nil, fmt.Errorf("testbed %s has no host %q: want a, b or r", tb.Name, name)
}

// wireEnd is one end of a veth pair.
type wireEnd struct {
	host   *Host
	ifname string
}

// wires lists the veth pairs.
func (tb *Testbed) wires() [][2]wireEnd {
	if tb.R == nil {
		return [][2]wireEnd{{{tb.A, "veth0"}, {tb.B, "veth0"}}}
	}
	return [][2]wireEnd{{{tb.A, "veth0"}, {tb.R, "veth0"}}, {{tb.R, "veth1"}, {tb.B, "veth0"}}}
}

func checkName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("testbed name %q: want 1 to 32 letters, digits, '-' or '_'", name)
	}
	return nil
}

// Up builds the testbed cfg describes. It fails if a testbed of that name exists, and
// removes what it made when a later step fails.
func Up(cfg Config) (_ *Testbed, err error) {
	if err := CheckPrivileges(); err != nil {
		return nil, err
	}
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if err := checkName(cfg.Name); err != nil {
		return nil, err
	}
	if cfg.MTU < 68 || cfg.MTU > 65535 {
		return nil, fmt.Errorf("testbed mtu %d: want 68 to 65535", cfg.MTU)
	}
	tb := layout(cfg.Name, cfg.Router, cfg.MTU)
	for _, h := range layout(cfg.Name, true, cfg.MTU).Hosts() {
		if nsExists(h.NS) {
			return nil, fmt.Errorf("testbed %s already exists (namespace %s)", cfg.Name, h.NS)
		}
	}
	// Validate shaping before building anything.
	if cfg.Rate > 0 {
		if _, _, err := tb.newTbf(cfg.Rate, cfg.Burst, cfg.Limit); err != nil {
			return nil, err
		}
	}

	var names []string
	for _, h := range tb.Hosts() {
		names = append(names, h.NS)
	}
	created, err := createNamespaces(names, func(ns string) error {
		return tb.setupSysctls(ns)
	})
	defer func() {
		if err != nil {
			for _, ns := range created {
				err = errors.Join(err, deleteNamespace(ns))
			}
		}
	}()
	if err != nil {
		return nil, fmt.Errorf("testbed %s up: %w", cfg.Name, err)
	}
	if err := tb.build(); err != nil {
		return nil, fmt.Errorf("testbed %s up: %w", cfg.Name, err)
	}
	if testHookAfterBuild != nil {
		if err := testHookAfterBuild(); err != nil {
			return nil, err
		}
	}
	if cfg.Rate > 0 {
		if err := tb.Shape(cfg.Rate, cfg.Burst, cfg.Limit); err != nil {
			return nil, fmt.Errorf("testbed %s up: %w", cfg.Name, err)
		}
	}
	return tb, nil
}

// setupSysctls runs on a thread inside the new namespace ns.
func (tb *Testbed) setupSysctls(ns string) error {
	// No IPv6 on the veths made later (lo keeps ::1): router solicitations, MLD and DAD
	// would otherwise add packets nobody asked for to every measurement.
	err := writeSysctl("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1")
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("in %s: %w", ns, err)
	}
	if tb.R != nil && ns == tb.R.NS {
		if err := writeSysctl("/proc/sys/net/ipv4/ip_forward", "1"); err != nil {
			return fmt.Errorf("in %s: %w", ns, err)
		}
	}
	return nil
}

// Open returns the existing testbed of that name, e.g. one made by `probe testbed up`,
// after checking that its interfaces and addresses are the ones Up makes.
func Open(name string) (*Testbed, error) {
	if err := CheckPrivileges(); err != nil {
		return nil, err
	}
	if name == "" {
		name = DefaultName
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	if !nsExists(nsName(name, "a")) || !nsExists(nsName(name, "b")) {
		return nil, fmt.Errorf("open testbed %s: %w (no namespaces %s and %s)", name, ErrNoTestbed, nsName(name, "a"), nsName(name, "b"))
	}
	tb := layout(name, nsExists(nsName(name, "r")), 0)
	mtu, err := tb.check()
	if err != nil {
		return nil, fmt.Errorf("open testbed %s: %w", name, err)
	}
	tb.MTU = mtu
	return tb, nil
}

// Down removes the testbed's namespaces, and with them its links and qdiscs. Sockets and
// processes still inside keep the kernel's namespace alive until they end.
func (tb *Testbed) Down() error {
	if err := CheckPrivileges(); err != nil {
		return err
	}
	var errs []error
	for _, h := range tb.Hosts() {
		errs = append(errs, deleteNamespace(h.NS))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("testbed %s down: %w", tb.Name, err)
	}
	return nil
}

// DownAll removes every probe-* namespace, leftovers of crashed runs included, and returns
// the names it removed. It also removes testbeds other processes are using.
func DownAll() ([]string, error) {
	if err := CheckPrivileges(); err != nil {
		return nil, err
	}
	names, err := probeNamespaces()
	if err != nil {
		return nil, err
	}
	return removeNamespaces(names)
}

func removeNamespaces(names []string) ([]string, error) {
	var removed []string
	var errs []error
	for _, ns := range names {
		if err := deleteNamespace(ns); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, ns)
	}
	return removed, errors.Join(errs...)
}
