package collector

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// TestAttachVeth sends probes across a veth pair between two namespaces
// and echoes them back: requests are seen at egress of our end, replies at
// its ingress, with the veth's ifindex.
func TestAttachVeth(t *testing.T) {
	ts := newKernelTimestamper(t)
	inPrivateNetns(t, func() {
		nsA, err := netns.Get()
		if err != nil {
			t.Fatal(err)
		}
		defer nsA.Close()
		nsB, err := netns.New() // moves this thread to B
		if err != nil {
			t.Fatal(err)
		}
		defer nsB.Close()
		if err := netns.Set(nsA); err != nil {
			t.Fatal(err)
		}

		veth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: "pa"},
			PeerName:      "pb",
			PeerNamespace: netlink.NsFd(int(nsB)),
		}
		if err := netlink.LinkAdd(veth); err != nil {
			t.Fatalf("add veth: %v", err)
		}
		pa, err := netlink.LinkByName("pa")
		if err != nil {
			t.Fatal(err)
		}
		setupLink(t, nil, pa, "10.99.0.1/24")
		hB, err := netlink.NewHandleAt(nsB)
		if err != nil {
			t.Fatal(err)
		}
		defer hB.Close()
		pb, err := hB.LinkByName("pb")
		if err != nil {
			t.Fatal(err)
		}
		setupLink(t, hB, pb, "10.99.0.2/24")

		// The echo server's socket must be created inside B.
		if err := netns.Set(nsB); err != nil {
			t.Fatal(err)
		}
		srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 99, 0, 2)})
		if err := netns.Set(nsA); err != nil {
			t.Fatal(err)
		}
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		go func() {
			buf := make([]byte, 2048)
			for {
				n, from, err := srv.ReadFromUDP(buf)
				if err != nil {
					return
				}
				if h, ok := ParseProbeHeader(buf[:n]); ok {
					h.Kind = KindReply
					h.Put(buf)
				}
				srv.WriteToUDP(buf[:n], from)
			}
		}()

		if err := ts.Attach(pa.Attrs().Index); err != nil {
			t.Fatal(err)
		}
		port := uint16(srv.LocalAddr().(*net.UDPAddr).Port)
		const session, n = 99, 10
		var log eventLog
		if err := ts.AddSession(session, port, WantAll, log.sink); err != nil {
			t.Fatal(err)
		}
		cli, err := net.DialUDP("udp4", nil, srv.LocalAddr().(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		buf := make([]byte, 100)
		cli.SetReadDeadline(time.Now().Add(5 * time.Second))
		for seq := 1; seq <= n; seq++ {
			ProbeHeader{Session: session, Seq: uint32(seq), Kind: KindRequest}.Put(buf)
			if _, err := cli.Write(buf); err != nil {
				t.Fatal(err)
			}
			if _, err := cli.Read(make([]byte, 2048)); err != nil {
				t.Fatalf("echo of probe %d: %v", seq, err)
			}
		}
		if err := ts.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		evs := log.take()
		if len(evs) != 2*n {
			t.Fatalf("%d events, want %d: %+v", len(evs), 2*n, evs)
		}
		for i, ev := range evs {
			seq := uint32(i/2 + 1)
			want := ProbeEvent{Time: ev.Time, Session: session, Seq: seq, Kind: KindRequest, Dir: Egress,
				IPLen: 20 + 8 + 100, Ifindex: uint32(pa.Attrs().Index)}
			if i%2 == 1 {
				want.Kind, want.Dir = KindReply, Ingress
			}
			if ev != want {
				t.Errorf("event %d: %+v, want %+v", i, ev, want)
			}
			if i > 0 && ev.Time <= evs[i-1].Time {
				t.Errorf("event %d: time %d not after %d", i, ev.Time, evs[i-1].Time)
			}
		}
	})
}

// setupLink gives l an address and brings it up; h nil is this namespace.
func setupLink(t *testing.T, h *netlink.Handle, l netlink.Link, cidr string) {
	t.Helper()
	if h == nil {
		var err error
		if h, err = netlink.NewHandle(); err != nil {
			t.Fatal(err)
		}
		defer h.Close()
	}
	addr, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.AddrAdd(l, addr); err != nil {
		t.Fatalf("add %s to %s: %v", cidr, l.Attrs().Name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		t.Fatalf("bring %s up: %v", l.Attrs().Name, err)
	}
}
