package collector

import (
	"errors"
	"fmt"
	"net"
	"runtime"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// attachKey names an interface across network namespaces: lo is ifindex 1
// in every one of them.
type attachKey struct {
	netnsDev, netnsIno uint64
	ifindex            int
}

// attachment is the TC programs on one interface: TCX links, or clsact
// filters on kernels before 6.6.
type attachment struct {
	refs   int
	links  []link.Link
	clsact *clsactAttachment
}

func (a *attachment) detach() error {
	var errs []error
	for _, l := range a.links {
		if err := l.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if a.clsact != nil {
		errs = append(errs, a.clsact.detach())
	}
	return errors.Join(errs...)
}

// currentAttachKey must run on the thread that attaches: the network
// namespace is per thread.
func currentAttachKey(ifindex int) (attachKey, error) {
	var st unix.Stat_t
	path := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
	if err := unix.Stat(path, &st); err != nil {
		return attachKey{}, fmt.Errorf("identify network namespace: %w", err)
	}
	return attachKey{netnsDev: st.Dev, netnsIno: st.Ino, ifindex: ifindex}, nil
}

// ifaceName names an interface for error messages.
func ifaceName(ifindex int) string {
	if ifi, err := net.InterfaceByIndex(ifindex); err == nil {
		return ifi.Name
	}
	return fmt.Sprintf("ifindex %d", ifindex)
}

// Attach runs the TC programs at ingress and egress of ifindex. Attaches
// are counted per interface: each needs a Detach. It must be called from
// the network namespace that owns ifindex, where netlink and TCX resolve it.
func (t *Timestamper) Attach(ifindex int) error {
	// The namespace lookup and the attach must happen on one thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	key, err := currentAttachKey(ifindex)
	if err != nil {
		return fmt.Errorf("attach to %s: %w", ifaceName(ifindex), err)
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return fmt.Errorf("attach to %s: timestamper closed", ifaceName(ifindex))
	}
	if a := t.attached[key]; a != nil {
		a.refs++
		return nil
	}
	a, err := t.attach(ifindex)
	if err != nil {
		return err
	}
	a.refs = 1
	t.attached[key] = a
	return nil
}

func (t *Timestamper) attach(ifindex int) (*attachment, error) {
	if !t.forceClsact {
		links, err := attachTCX(ifindex, t.objs.TcIngress, t.objs.TcEgress)
		if err == nil {
			return &attachment{links: links}, nil
		}
		if !errors.Is(err, ebpf.ErrNotSupported) {
			return nil, err
		}
		// Kernel before 6.6: clsact below.
	}
	c, err := attachClsact(ifindex, t.objs.TcIngress, t.objs.TcEgress)
	if err != nil {
		return nil, err
	}
	return &attachment{clsact: c}, nil
}

// Detach undoes one Attach of ifindex, from the same network namespace;
// the programs go when the last one is undone.
func (t *Timestamper) Detach(ifindex int) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	key, err := currentAttachKey(ifindex)
	if err != nil {
		return fmt.Errorf("detach from ifindex %d: %w", ifindex, err)
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.attached[key]
	if a == nil {
		return fmt.Errorf("detach from ifindex %d: not attached", ifindex)
	}
	if a.refs--; a.refs > 0 {
		return nil
	}
	delete(t.attached, key)
	if err := a.detach(); err != nil {
		return fmt.Errorf("detach from ifindex %d: %w", ifindex, err)
	}
	return nil
}

func attachTCX(ifindex int, ingress, egress *ebpf.Program) ([]link.Link, error) {
	// First at ingress and last at egress: the timestamps are the ones
	// nearest the wire, and no other program can redirect a probe away
	// before we see it on the way in.
	in, err := link.AttachTCX(link.TCXOptions{
		Interface: ifindex,
		Program:   ingress,
		Attach:    ebpf.AttachTCXIngress,
		Anchor:    link.Head(),
	})
	if err != nil {
		return nil, loadError("attach tcx ingress on "+ifaceName(ifindex), tcxNeeds, err)
	}
	out, err := link.AttachTCX(link.TCXOptions{
		Interface: ifindex,
		Program:   egress,
		Attach:    ebpf.AttachTCXEgress,
		Anchor:    link.Tail(),
	})
	if err != nil {
		in.Close()
		return nil, loadError("attach tcx egress on "+ifaceName(ifindex), tcxNeeds, err)
	}
	return []link.Link{in, out}, nil
}

var (
	tcxNeeds    = needs{caps: "CAP_BPF, CAP_NET_ADMIN", kernel: "6.6", what: "TCX"}
	clsactNeeds = needs{caps: "CAP_BPF, CAP_NET_ADMIN", kernel: "4.5", what: "clsact qdisc"}
)

// clsactAttachment is the pre-TCX way: direct-action BPF filters under a
// clsact qdisc.
type clsactAttachment struct {
	nl        *netlink.Handle // bound to the interface's netns, so Detach works from anywhere
	ifindex   int
	filters   []*netlink.BpfFilter
	ownQdisc  bool // we created the clsact qdisc, so we remove it
	ifaceName string
}

func clsactQdisc(ifindex int) *netlink.GenericQdisc {
	return &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{
			LinkIndex: ifindex,
			Handle:    netlink.MakeHandle(0xffff, 0),
			Parent:    netlink.HANDLE_CLSACT,
		},
		QdiscType: "clsact",
	}
}

func attachClsact(ifindex int, ingress, egress *ebpf.Program) (*clsactAttachment, error) {
	name := ifaceName(ifindex)
	nl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("attach clsact on %s: open netlink: %w", name, err)
	}
	c := &clsactAttachment{nl: nl, ifindex: ifindex, ifaceName: name}
	switch err := nl.QdiscAdd(clsactQdisc(ifindex)); {
	case err == nil:
		c.ownQdisc = true
	case errors.Is(err, unix.EEXIST):
		// Someone else's clsact: share it, and leave it when we go.
	default:
		nl.Close()
		return nil, loadError("add clsact qdisc on "+name, clsactNeeds, err)
	}
	for _, d := range []struct {
		parent uint32
		prog   *ebpf.Program
		dir    string
	}{
		{netlink.HANDLE_MIN_INGRESS, ingress, "ingress"},
		{netlink.HANDLE_MIN_EGRESS, egress, "egress"},
	} {
		f, err := c.addFilter(d.parent, d.prog, "probe_tc_"+d.dir)
		if err != nil {
			c.detach()
			return nil, loadError(fmt.Sprintf("attach clsact %s filter on %s", d.dir, name), clsactNeeds, err)
		}
		c.filters = append(c.filters, f)
	}
	return c, nil
}

// addFilter adds prog with a priority and handle the kernel picks, so as
// not to clash with filters of other software, then finds it again by
// program ID to learn them for the delete.
func (c *clsactAttachment) addFilter(parent uint32, prog *ebpf.Program, name string) (*netlink.BpfFilter, error) {
	info, err := prog.Info()
	if err != nil {
		return nil, fmt.Errorf("program info: %w", err)
	}
	id, ok := info.ID()
	if !ok {
		return nil, fmt.Errorf("program id: %w", ebpf.ErrNotSupported)
	}
	err = c.nl.FilterAdd(&netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: c.ifindex,
			Parent:    parent,
			Protocol:  unix.ETH_P_ALL,
		},
		Fd:           prog.FD(),
		Name:         name,
		DirectAction: true,
	})
	if err != nil {
		return nil, err
	}
	filters, err := c.listFilters(parent)
	if err != nil {
		return nil, err
	}
	for _, f := range filters {
		if bf, ok := f.(*netlink.BpfFilter); ok && bf.Id == int(id) {
			return bf, nil
		}
	}
	return nil, fmt.Errorf("filter of program %d not found after adding it", id)
}

func (c *clsactAttachment) listFilters(parent uint32) ([]netlink.Filter, error) {
	l, err := c.nl.LinkByIndex(c.ifindex)
	if err != nil {
		return nil, fmt.Errorf("look up %s: %w", c.ifaceName, err)
	}
	fs, err := c.nl.FilterList(l, parent)
	if err != nil {
		return nil, fmt.Errorf("list filters on %s: %w", c.ifaceName, err)
	}
	return fs, nil
}

func (c *clsactAttachment) detach() error {
	defer c.nl.Close()
	var errs []error
	for _, f := range c.filters {
		del := &netlink.BpfFilter{FilterAttrs: f.FilterAttrs, Fd: -1}
		// ENODEV: the interface went first, and its filters with it.
		if err := c.nl.FilterDel(del); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("delete filter on %s: %w", c.ifaceName, err))
		}
	}
	c.filters = nil
	if c.ownQdisc {
		if err := c.deleteQdiscIfUnused(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// deleteQdiscIfUnused removes the clsact we created, unless others have
// added filters to it since: deleting it would delete theirs.
func (c *clsactAttachment) deleteQdiscIfUnused() error {
	for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
		fs, err := c.listFilters(parent)
		var gone netlink.LinkNotFoundError
		if errors.As(err, &gone) || errors.Is(err, unix.ENODEV) {
			return nil // the interface is gone, and its qdisc with it
		}
		if err != nil {
			return err
		}
		if len(fs) > 0 {
			return nil
		}
	}
	err := c.nl.QdiscDel(clsactQdisc(c.ifindex))
	if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("delete clsact qdisc on %s: %w", c.ifaceName, err)
	}
	return nil
}
