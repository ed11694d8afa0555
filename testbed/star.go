package testbed

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// StarConfig says what UpStar builds: a router namespace with one veth to each host
// namespace, each host alone in its /24.
type StarConfig struct {
	Name  string   // tells stars apart, as Config.Name; namespaces are "probe-<name>-<host>"
	Hosts []string // host names; the first one is usually the server
	Rate  uint64   // tbf on the router's egress toward each host, bit/s; 0 unshaped
	Burst uint32   // tbf bucket; 0 the Config default
	Limit uint32   // tbf queue; 0 the Config default
	MTU   int      // default DefaultMTU
}

// Star is a running star testbed. Like Testbed, it holds no open files.
type Star struct {
	Name   string
	Router *Host // one interface per host: veth<i> toward Hosts[i]
	Hosts  []*Host
	MTU    int
}

// StarRouter names the router namespace of a star; no host may be called so.
const StarRouter = "router"

// starHostRE: host names end up in namespace names.
var starHostRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,15}$`)

// ValidStarHost says whether name may name a host of a star: 1 to 16
// lower-case letters, digits, '-' or '_', and not StarRouter.
func ValidStarHost(name string) bool { return starHostRE.MatchString(name) && name != StarRouter }

// maxStarHosts keeps each host in its own 10.78.<i+1>.0/24.
const maxStarHosts = 250

func starLayout(name string, hosts []string, mtu int) *Star {
	s := &Star{Name: name, MTU: mtu, Router: &Host{Name: StarRouter, NS: nsName(name, StarRouter)}}
	for i, h := range hosts {
		hostPfx := netip.MustParsePrefix(fmt.Sprintf("10.78.%d.1/24", i+1))
		rtrPfx := netip.MustParsePrefix(fmt.Sprintf("10.78.%d.254/24", i+1))
		s.Hosts = append(s.Hosts, &Host{
			Name: h, NS: nsName(name, h), Addr: hostPfx.Addr(), Ifname: "veth0",
			Ifaces:  []Iface{{Name: "veth0", Prefix: hostPfx}},
			gateway: rtrPfx.Addr(),
		})
		s.Router.Ifaces = append(s.Router.Ifaces, Iface{Name: fmt.Sprintf("veth%d", i), Prefix: rtrPfx, Bottleneck: true})
	}
	s.Router.Ifname, s.Router.Addr = s.Router.Ifaces[0].Name, s.Router.Ifaces[0].Prefix.Addr()
	return s
}

// all returns the router and then the hosts.
func (s *Star) all() []*Host { return append([]*Host{s.Router}, s.Hosts...) }

// Host returns the host of that name.
func (s *Star) Host(name string) (*Host, error) {
	for _, h := range s.Hosts {
		if h.Name == name {
			return h, nil
		}
	}
	return nil, fmt.Errorf("star %s has no host %q", s.Name, name)
}

// UpStar builds the star cfg describes, removing what it made if a step fails. Its
// namespaces start with "probe-", so DownAll finds leftovers.
func UpStar(cfg StarConfig) (_ *Star, err error) {
	if err := CheckPrivileges(); err != nil {
		return nil, err
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if err := checkName(cfg.Name); err != nil {
		return nil, err
	}
	if len(cfg.Hosts) == 0 || len(cfg.Hosts) > maxStarHosts {
		return nil, fmt.Errorf("star %s: want 1 to %d hosts, not %d", cfg.Name, maxStarHosts, len(cfg.Hosts))
	}
	seen := map[string]bool{}
	for _, h := range cfg.Hosts {
		if !ValidStarHost(h) || seen[h] {
			return nil, fmt.Errorf("star %s: bad or repeated host name %q", cfg.Name, h)
		}
		seen[h] = true
	}
	s := starLayout(cfg.Name, cfg.Hosts, cfg.MTU)
	var tbf *netlink.Tbf
	var burst uint32
	if cfg.Rate > 0 {
		// newTbf only needs the MTU of a testbed.
		if tbf, burst, err = (&Testbed{MTU: cfg.MTU}).newTbf(cfg.Rate, cfg.Burst, cfg.Limit); err != nil {
			return nil, err
		}
	}
	var names []string
	for _, h := range s.all() {
		if nsExists(h.NS) {
			return nil, fmt.Errorf("star %s already exists (namespace %s)", cfg.Name, h.NS)
		}
		names = append(names, h.NS)
	}
	created, err := createNamespaces(names, func(ns string) error {
		// No IPv6 on the veths: router solicitations, MLD and DAD add packets nobody asked for.
		err := writeSysctl("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1")
		if errors.Is(err, unix.ENOENT) {
			err = nil // a kernel without IPv6
		}
		if err == nil && ns == s.Router.NS {
			err = writeSysctl("/proc/sys/net/ipv4/ip_forward", "1")
		}
		if err != nil {
			return fmt.Errorf("in %s: %w", ns, err)
		}
		return nil
	})
	defer func() {
		if err != nil {
			for _, ns := range created {
				err = errors.Join(err, deleteNamespace(ns))
			}
		}
	}()
	if err != nil {
		return nil, fmt.Errorf("star %s up: %w", cfg.Name, err)
	}
	if err := s.build(); err != nil {
		return nil, fmt.Errorf("star %s up: %w", cfg.Name, err)
	}
	if tbf != nil {
		for _, ifc := range s.Router.Ifaces {
			if err := shapeIface(s.Router.NS, ifc.Name, tbf, burst); err != nil {
				return nil, fmt.Errorf("star %s up: %w", cfg.Name, err)
			}
		}
	}
	return s, nil
}

// build makes the star's wires (router to each host), addresses and routes, and
// turns offloads off.
func (s *Star) build() error {
	wires := make([][2]wireEnd, len(s.Hosts))
	for i, h := range s.Hosts {
		wires[i] = [2]wireEnd{{s.Router, s.Router.Ifaces[i].Name}, {h, h.Ifname}}
	}
	return wireUp(s.all(), wires, s.MTU)
}

// Down removes the star's namespaces.
func (s *Star) Down() error {
	if err := CheckPrivileges(); err != nil {
		return err
	}
	var errs []error
	for _, h := range s.all() {
		errs = append(errs, deleteNamespace(h.NS))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("star %s down: %w", s.Name, err)
	}
	return nil
}
