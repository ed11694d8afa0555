package testbed

import (
	"errors"
	"fmt"
	"math"

	"github.com/vishvananda/netlink"
)

// Shape puts a tbf qdisc at the root of every bottleneck egress, both directions: a's and
// b's interface in the direct topology, r's two interfaces with a router. rate is in
// bit/s (rounded down to whole bytes/s), burst (the bucket) and limit (the queue) in
// bytes, 0 for the Config defaults.
// tbf counts Ethernet frames (IP packet + 14 bytes), so the IP-layer rate of full-size
// packets is rate·MTU/(MTU+14). Rate 0 removes the shaping. The qdisc is read back and
// compared with what was asked.
func (tb *Testbed) Shape(rate uint64, burst, limit uint32) error {
	if err := CheckPrivileges(); err != nil {
		return err
	}
	var q *netlink.Tbf
	if rate > 0 {
		var err error
		if q, burst, err = tb.newTbf(rate, burst, limit); err != nil {
			return err
		}
	}
	for _, h := range tb.Hosts() {
		for _, ifc := range h.Ifaces {
			if !ifc.Bottleneck {
				continue
			}
			if err := shapeIface(h.NS, ifc.Name, q, burst); err != nil {
				return err
			}
		}
	}
	return nil
}

// newTbf fills in the default burst and limit, refuses values that would turn tbf into a
// black hole, and returns the qdisc (without its attributes) and the burst in bytes.
func (tb *Testbed) newTbf(rate uint64, burst, limit uint32) (*netlink.Tbf, uint32, error) {
	frame := uint32(tb.MTU + ethHeader)
	if burst == 0 {
		burst = frame + min(burstSlack, frame-1)
	}
	if limit == 0 {
		limit = limitFrames * frame
	}
	switch {
	case rate < 8:
		return nil, 0, fmt.Errorf("shape %dbit: below tbf's 1 byte/s", rate)
	case burst < frame:
		// tbf drops every packet larger than its bucket.
		return nil, 0, fmt.Errorf("shape %s: burst %d bytes is below one full frame (%d bytes); tbf would drop full-size packets", FormatRate(rate), burst, frame)
	case limit < frame:
		return nil, 0, fmt.Errorf("shape %s: limit %d bytes is below one full frame (%d bytes)", FormatRate(rate), limit, frame)
	}
	ticks, err := bufferTicks(rate/8, burst)
	if err != nil {
		return nil, 0, fmt.Errorf("shape %s: %w", FormatRate(rate), err)
	}
	return &netlink.Tbf{Rate: rate / 8, Buffer: ticks, Limit: limit}, burst, nil
}

// bufferTicks converts a bucket of burst bytes at rate bytes/s into the psched ticks tbf
// takes, rounding up. netlink.Xmittime would do the same but truncates to whole
// microseconds first: at 10gbit that makes a 1600-byte bucket smaller than a frame.
func bufferTicks(rate uint64, burst uint32) (uint32, error) {
	tick := netlink.TickInUsec()
	if tick == 0 {
		return 0, errors.New("read psched clock from /proc/net/psched: unavailable")
	}
	t := math.Ceil(float64(burst) * 1e6 / float64(rate) * tick)
	if t > math.MaxUint32 {
		return 0, fmt.Errorf("burst %d bytes lasts too long at %d bytes/s", burst, rate)
	}
	return uint32(t), nil
}

// bucketBytes is the inverse of bufferTicks: how many bytes the bucket of a tbf holds.
func bucketBytes(rate uint64, ticks uint32) uint32 {
	tick := netlink.TickInUsec()
	if tick == 0 || rate == 0 {
		return 0
	}
	return uint32(math.Round(float64(ticks) / tick * float64(rate) / 1e6))
}

// shapeIface replaces the root qdisc of ifname in ns with q, or with the default when q
// is nil, and reads it back.
func shapeIface(ns, ifname string, q *netlink.Tbf, burst uint32) error {
	nh, err := handleAt(ns)
	if err != nil {
		return err
	}
	defer nh.Close()
	l, err := nh.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", ifname, ns, err)
	}
	if q == nil {
		root, err := rootQdisc(nh, l)
		if err != nil {
			return fmt.Errorf("in %s: %w", ns, err)
		}
		if root == nil || root.Type() != "tbf" {
			return nil
		}
		if err := nh.QdiscDel(root); err != nil {
			return fmt.Errorf("remove tbf from %s in %s: %w", ifname, ns, err)
		}
		return nil
	}
	tbf := *q
	tbf.QdiscAttrs = netlink.QdiscAttrs{
		LinkIndex: l.Attrs().Index,
		Handle:    netlink.MakeHandle(1, 0),
		Parent:    netlink.HANDLE_ROOT,
	}
	if err := nh.QdiscReplace(&tbf); err != nil {
		return fmt.Errorf("set tbf %s on %s in %s: %w", FormatRate(q.Rate*8), ifname, ns, err)
	}
	root, err := rootQdisc(nh, l)
	if err != nil {
		return fmt.Errorf("in %s: %w", ns, err)
	}
	got, ok := root.(*netlink.Tbf)
	if !ok {
		return fmt.Errorf("read back tbf on %s in %s: root qdisc is %v", ifname, ns, root)
	}
	gotBurst := bucketBytes(got.Rate, got.Buffer)
	// Rounding the bucket up to whole ticks may add up to one tick's worth of bytes.
	if got.Rate != q.Rate || got.Limit != q.Limit || gotBurst < burst || gotBurst > burst+bucketBytes(q.Rate, 1)+1 {
		return fmt.Errorf("read back tbf on %s in %s: rate %d B/s burst %d B limit %d B, want %d B/s %d B %d B",
			ifname, ns, got.Rate, gotBurst, got.Limit, q.Rate, burst, q.Limit)
	}
	return nil
}

// rootQdisc returns the root qdisc of l, nil if it has none.
func rootQdisc(nh *netlink.Handle, l netlink.Link) (netlink.Qdisc, error) {
	qs, err := nh.QdiscList(l)
	if err != nil {
		return nil, fmt.Errorf("list qdiscs of %s: %w", l.Attrs().Name, err)
	}
	for _, q := range qs {
		if q.Attrs().Parent == netlink.HANDLE_ROOT {
			return q, nil
		}
	}
	return nil, nil
}

// ShapeHTB shapes the bottleneck egress with an htb class of rate bit/s
// (rate = ceil, the kernel's default buffer) instead of tbf. htb lets a
// couple of packets through back to back before it paces, so it is the
// testbed's example of a shaper that packet pairs misread.
func (tb *Testbed) ShapeHTB(rate uint64) error {
	if err := CheckPrivileges(); err != nil {
		return err
	}
	for _, h := range tb.Hosts() {
		for _, ifc := range h.Ifaces {
			if !ifc.Bottleneck {
				continue
			}
			if err := htbIface(h.NS, ifc.Name, rate); err != nil {
				return err
			}
		}
	}
	return nil
}

func htbIface(ns, ifname string, rate uint64) error {
	nh, err := handleAt(ns)
	if err != nil {
		return err
	}
	defer nh.Close()
	l, err := nh.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", ifname, ns, err)
	}
	if root, err := rootQdisc(nh, l); err != nil {
		return fmt.Errorf("in %s: %w", ns, err)
	} else if root != nil && root.Type() != "noqueue" {
		if err := nh.QdiscDel(root); err != nil {
			return fmt.Errorf("remove %s from %s in %s: %w", root.Type(), ifname, ns, err)
		}
	}
	q := netlink.NewHtb(netlink.QdiscAttrs{LinkIndex: l.Attrs().Index, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT})
	q.Defcls = 1
	if err := nh.QdiscAdd(q); err != nil {
		return fmt.Errorf("set htb on %s in %s: %w", ifname, ns, err)
	}
	class := netlink.NewHtbClass(netlink.ClassAttrs{LinkIndex: l.Attrs().Index, Parent: netlink.MakeHandle(1, 0), Handle: netlink.MakeHandle(1, 1)},
		netlink.HtbClassAttrs{Rate: rate, Ceil: rate}) // bit/s: netlink divides
	if err := nh.ClassAdd(class); err != nil {
		return fmt.Errorf("add htb class %s on %s in %s: %w", FormatRate(rate), ifname, ns, err)
	}
	return nil
}

// QdiscDrops is how many packets the root qdiscs of h's bottleneck egress
// interfaces have dropped: the truth a loss measurement is checked against.
func (tb *Testbed) QdiscDrops(h *Host) (uint64, error) {
	st, err := tb.QdiscStats(h)
	return st.Drops, err
}

// QdiscStats are the counters of the root qdiscs of a host's bottleneck
// egress interfaces, summed.
type QdiscStats struct {
	Packets, Bytes uint64 // sent
	Drops          uint64
	// Overlimits counts the times tbf held a packet back for want of
	// tokens: it grows while the link is the limit, not while the sender is.
	Overlimits uint64
	// Backlog is what waits in the queue now: bytes and packets.
	BacklogBytes, BacklogPackets uint32
}

// QdiscStats reads the root qdiscs of h's bottleneck egress interfaces.
func (tb *Testbed) QdiscStats(h *Host) (QdiscStats, error) {
	var out QdiscStats
	nh, err := handleAt(h.NS)
	if err != nil {
		return out, err
	}
	defer nh.Close()
	for _, ifc := range h.Ifaces {
		if !ifc.Bottleneck {
			continue
		}
		l, err := nh.LinkByName(ifc.Name)
		if err != nil {
			return out, fmt.Errorf("find %s in %s: %w", ifc.Name, h.NS, err)
		}
		root, err := rootQdisc(nh, l)
		if err != nil {
			return out, fmt.Errorf("in %s: %w", h.NS, err)
		}
		if root == nil {
			continue
		}
		st := root.Attrs().Statistics
		if st == nil || st.Queue == nil {
			return out, fmt.Errorf("qdisc %s on %s in %s: no statistics", root.Type(), ifc.Name, h.NS)
		}
		if st.Basic != nil {
			out.Packets += uint64(st.Basic.Packets)
			out.Bytes += st.Basic.Bytes
		}
		out.Drops += uint64(st.Queue.Drops)
		out.Overlimits += uint64(st.Queue.Overlimits)
		out.BacklogBytes += st.Queue.Backlog
		out.BacklogPackets += st.Queue.Qlen
	}
	return out, nil
}
