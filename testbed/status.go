package testbed

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"

	"github.com/safchain/ethtool"
	"github.com/vishvananda/netlink"
)

// Status is what the kernel holds of one testbed.
type Status struct {
	Name  string
	Hosts []HostStatus
}

// HostStatus is one namespace of a testbed.
type HostStatus struct {
	Name   string // "a", "b" or "r"; empty when the namespace name does not end in one
	NS     string
	Ifaces []IfaceStatus // all but lo
	Err    error         // why the namespace could not be read, if it could not
}

// IfaceStatus is one interface in a testbed namespace.
type IfaceStatus struct {
	Name       string
	Up         bool
	MTU        int
	Addrs      []netip.Prefix
	Qdisc      Qdisc
	OffloadsOn []string // GRO/GSO/TSO-like features still on
}

// Qdisc is the root qdisc of an interface.
type Qdisc struct {
	Kind  string // "tbf", "noqueue", ...
	Rate  uint64 // tbf rate in bit/s
	Burst uint32 // tbf bucket in bytes
	Limit uint32 // tbf queue in bytes
}

// String reads like tc: "tbf rate 20mbit burst 1600b limit 96896b", or the kind.
func (q Qdisc) String() string {
	if q.Kind != "tbf" {
		return q.Kind
	}
	return fmt.Sprintf("tbf rate %s burst %db limit %db", FormatRate(q.Rate), q.Burst, q.Limit)
}

// List reports every testbed whose namespaces exist, leftovers included, sorted by name.
// A namespace that cannot be read is reported with its error rather than failing List.
func List() ([]Status, error) {
	if err := CheckPrivileges(); err != nil {
		return nil, err
	}
	names, err := probeNamespaces()
	if err != nil {
		return nil, err
	}
	byName := map[string]*Status{}
	var out []*Status
	for _, ns := range names {
		tb, host := splitNS(ns)
		st := byName[tb]
		if st == nil {
			st = &Status{Name: tb}
			byName[tb] = st
			out = append(out, st)
		}
		st.Hosts = append(st.Hosts, hostStatus(ns, host))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	res := make([]Status, len(out))
	for i, st := range out {
		res[i] = *st
	}
	return res, nil
}

// Status reads tb's namespaces back from the kernel.
func (tb *Testbed) Status() Status {
	st := Status{Name: tb.Name}
	for _, h := range tb.Hosts() {
		st.Hosts = append(st.Hosts, hostStatus(h.NS, h.Name))
	}
	return st
}

// splitNS turns "probe-<name>-<host>" into name and host; a namespace that does not end
// in -a, -b or -r is a testbed of its own with no host name.
func splitNS(ns string) (tb, host string) {
	rest := strings.TrimPrefix(ns, nsPrefix)
	if i := strings.LastIndexByte(rest, '-'); i > 0 {
		switch h := rest[i+1:]; h {
		case "a", "b", "r":
			return rest[:i], h
		}
	}
	return rest, ""
}

func hostStatus(ns, host string) HostStatus {
	hs := HostStatus{Name: host, NS: ns}
	nh, err := handleAt(ns)
	if err != nil {
		hs.Err = err
		return hs
	}
	defer nh.Close()
	links, err := nh.LinkList()
	if err != nil {
		hs.Err = fmt.Errorf("list links in %s: %w", ns, err)
		return hs
	}
	for _, l := range links {
		a := l.Attrs()
		if a.Name == "lo" {
			continue
		}
		is := IfaceStatus{Name: a.Name, Up: a.Flags&net.FlagUp != 0, MTU: a.MTU}
		addrs, err := nh.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			hs.Err = fmt.Errorf("list addresses of %s in %s: %w", a.Name, ns, err)
			return hs
		}
		for _, ad := range addrs {
			if p := prefixOf(ad.IPNet); p.IsValid() {
				is.Addrs = append(is.Addrs, p)
			}
		}
		root, err := rootQdisc(nh, l)
		if err != nil {
			hs.Err = fmt.Errorf("in %s: %w", ns, err)
			return hs
		}
		if root != nil {
			is.Qdisc.Kind = root.Type()
		}
		if t, ok := root.(*netlink.Tbf); ok {
			is.Qdisc.Rate = t.Rate * 8
			is.Qdisc.Burst = bucketBytes(t.Rate, t.Buffer)
			is.Qdisc.Limit = t.Limit
		}
		hs.Ifaces = append(hs.Ifaces, is)
	}
	h := &Host{NS: ns}
	err = h.Do(func() error {
		e, err := ethtool.NewEthtool()
		if err != nil {
			return fmt.Errorf("open ethtool socket in %s: %w", ns, err)
		}
		defer e.Close()
		for i := range hs.Ifaces {
			on, err := activeOffloads(e, hs.Ifaces[i].Name)
			if err != nil {
				return fmt.Errorf("in %s: %w", ns, err)
			}
			hs.Ifaces[i].OffloadsOn = on
		}
		return nil
	})
	if err != nil {
		hs.Err = err
	}
	return hs
}
