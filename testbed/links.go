package testbed

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/safchain/ethtool"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// build makes the veths, addresses and routes in namespaces that already exist, and
// turns offloads off.
func (tb *Testbed) build() error { return wireUp(tb.Hosts(), tb.wires(), tb.MTU) }

// wireUp brings up lo in every host, creates the wires, gives each host's
// interfaces their addresses and default route, and turns offloads off. The
// two-host testbed and the star share it.
func wireUp(hosts []*Host, wires [][2]wireEnd, mtu int) error {
	handles := map[*Host]*netlink.Handle{}
	defer func() {
		for _, nh := range handles {
			nh.Close()
		}
	}()
	for _, h := range hosts {
		nh, err := handleAt(h.NS)
		if err != nil {
			return err
		}
		handles[h] = nh
		lo, err := nh.LinkByName("lo")
		if err == nil {
			err = nh.LinkSetUp(lo)
		}
		if err != nil {
			return fmt.Errorf("bring up lo in %s: %w", h.NS, err)
		}
	}
	for _, w := range wires {
		if err := addVeth(handles[w[0].host], w[0], w[1], mtu); err != nil {
			return err
		}
	}
	for _, h := range hosts {
		nh := handles[h]
		for _, ifc := range h.Ifaces {
			l, err := nh.LinkByName(ifc.Name)
			if err != nil {
				return fmt.Errorf("find %s in %s: %w", ifc.Name, h.NS, err)
			}
			addr := &netlink.Addr{IPNet: ipNet(ifc.Prefix)}
			if err := nh.AddrAdd(l, addr); err != nil {
				return fmt.Errorf("add address %s to %s in %s: %w", ifc.Prefix, ifc.Name, h.NS, err)
			}
			if err := nh.LinkSetUp(l); err != nil {
				return fmt.Errorf("bring up %s in %s: %w", ifc.Name, h.NS, err)
			}
		}
		if h.gateway.IsValid() {
			r := &netlink.Route{Gw: net.IP(h.gateway.AsSlice())}
			if err := nh.RouteAdd(r); err != nil {
				return fmt.Errorf("add default route via %s in %s: %w", h.gateway, h.NS, err)
			}
		}
	}
	for _, h := range hosts {
		if err := h.disableOffloads(); err != nil {
			return err
		}
	}
	return nil
}

// addVeth creates the pair from inside x's namespace with y's end placed straight into
// y's namespace, so neither end ever appears in the caller's namespace.
func addVeth(nh *netlink.Handle, x, y wireEnd, mtu int) error {
	peer, err := netns.GetFromName(y.host.NS)
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", y.host.NS, err)
	}
	defer peer.Close()
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: x.ifname, MTU: mtu},
		PeerName:      y.ifname,
		PeerNamespace: netlink.NsFd(int(peer)),
		PeerMTU:       uint32(mtu),
	}
	if err := nh.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s/%s - %s/%s: %w", x.host.Name, x.ifname, y.host.Name, y.ifname, err)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// isOffload says whether an ethtool feature merges or splits packets: GRO, GSO, TSO, USO
// and their variants. Each would hand a shaper or a timestamp one packet for many.
func isOffload(feature string) bool {
	return strings.Contains(feature, "-gro") || strings.HasSuffix(feature, "-segmentation") ||
		strings.HasPrefix(feature, "tx-gso-")
}

// disableOffloads turns off every changeable offload on h's testbed interfaces. The
// ethtool ioctl socket must be made inside the namespace to reach its interfaces.
func (h *Host) disableOffloads() error {
	return h.Do(func() error {
		e, err := ethtool.NewEthtool()
		if err != nil {
			return fmt.Errorf("open ethtool socket in %s: %w", h.NS, err)
		}
		defer e.Close()
		for _, ifc := range h.Ifaces {
			states, err := e.FeaturesWithState(ifc.Name)
			if err != nil {
				return fmt.Errorf("read features of %s in %s: %w", ifc.Name, h.NS, err)
			}
			off := map[string]bool{}
			for name, st := range states {
				if isOffload(name) && st.Available && (st.Active || st.Requested) {
					off[name] = false
				}
			}
			if len(off) == 0 {
				continue
			}
			if err := e.Change(ifc.Name, off); err != nil {
				return fmt.Errorf("turn offloads off on %s in %s: %w", ifc.Name, h.NS, err)
			}
			on, err := activeOffloads(e, ifc.Name)
			if err != nil {
				return fmt.Errorf("in %s: %w", h.NS, err)
			}
			if on = slices.DeleteFunc(on, func(f string) bool { _, asked := off[f]; return !asked }); len(on) > 0 {
				return fmt.Errorf("turn offloads off on %s in %s: still on: %s", ifc.Name, h.NS, strings.Join(on, ", "))
			}
		}
		return nil
	})
}

// activeOffloads lists the offloads that are on, sorted; e must live in the interface's namespace.
func activeOffloads(e *ethtool.Ethtool, ifname string) ([]string, error) {
	feats, err := e.Features(ifname)
	if err != nil {
		return nil, fmt.Errorf("read features of %s: %w", ifname, err)
	}
	var on []string
	for name, active := range feats {
		if active && isOffload(name) {
			on = append(on, name)
		}
	}
	sort.Strings(on)
	return on, nil
}

// ActiveOffloads lists the GRO/GSO/TSO-like features that are on for each of h's testbed
// interfaces, read back with ethtool; Up leaves only ones the driver cannot turn off.
func (h *Host) ActiveOffloads() (map[string][]string, error) {
	out := map[string][]string{}
	err := h.Do(func() error {
		e, err := ethtool.NewEthtool()
		if err != nil {
			return fmt.Errorf("open ethtool socket in %s: %w", h.NS, err)
		}
		defer e.Close()
		for _, ifc := range h.Ifaces {
			on, err := activeOffloads(e, ifc.Name)
			if err != nil {
				return fmt.Errorf("in %s: %w", h.NS, err)
			}
			out[ifc.Name] = on
		}
		return nil
	})
	return out, err
}

// check verifies that the namespaces hold the interfaces and addresses of tb's layout and
// returns the MTU of a's interface.
func (tb *Testbed) check() (int, error) {
	mtu := 0
	for _, h := range tb.Hosts() {
		nh, err := handleAt(h.NS)
		if err != nil {
			return 0, err
		}
		err = func() error {
			defer nh.Close()
			for _, ifc := range h.Ifaces {
				l, err := nh.LinkByName(ifc.Name)
				if err != nil {
					return fmt.Errorf("find %s in %s: %w", ifc.Name, h.NS, err)
				}
				if mtu == 0 {
					mtu = l.Attrs().MTU
				}
				addrs, err := nh.AddrList(l, unix.AF_INET)
				if err != nil {
					return fmt.Errorf("list addresses of %s in %s: %w", ifc.Name, h.NS, err)
				}
				if !slices.ContainsFunc(addrs, func(a netlink.Addr) bool { return prefixOf(a.IPNet) == ifc.Prefix }) {
					return fmt.Errorf("%s in %s lacks address %s", ifc.Name, h.NS, ifc.Prefix)
				}
			}
			return nil
		}()
		if err != nil {
			return 0, err
		}
	}
	if mtu == 0 {
		return 0, errors.New("no interfaces")
	}
	return mtu, nil
}

func prefixOf(n *net.IPNet) netip.Prefix {
	if n == nil {
		return netip.Prefix{}
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones)
}
