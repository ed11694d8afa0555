package collector

import (
	"context"
	"net"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// inPrivateNetns runs fn on a thread moved to a new network namespace with
// lo up, and moves the thread back afterwards. Sockets and ifindexes in fn
// belong to the new namespace.
func inPrivateNetns(t *testing.T, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("get netns: %v", err)
	}
	defer orig.Close()
	ns, err := netns.New() // unshares this thread into the new namespace
	if err != nil {
		runtime.UnlockOSThread()
		t.Skipf("cannot create a network namespace (needs CAP_SYS_ADMIN): %v", err)
	}
	defer ns.Close()
	defer func() {
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: it dies with the goroutine instead of
			// running other goroutines in the wrong namespace.
			t.Errorf("restore netns: %v", err)
			return
		}
		runtime.UnlockOSThread()
	}()
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatalf("find lo: %v", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		t.Fatalf("bring lo up: %v", err)
	}
	fn()
}

func progID(t *testing.T, p *ebpf.Program) ebpf.ProgramID {
	t.Helper()
	info, err := p.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, ok := info.ID()
	if !ok {
		t.Fatal("program id not available")
	}
	return id
}

// tcxPrograms lists the programs attached with TCX to ifindex.
func tcxPrograms(t *testing.T, ifindex int, attach ebpf.AttachType) []ebpf.ProgramID {
	t.Helper()
	res, err := link.QueryPrograms(link.QueryOptions{Target: ifindex, Attach: attach})
	if err != nil {
		t.Fatalf("query %s programs: %v", attach, err)
	}
	var ids []ebpf.ProgramID
	for _, p := range res.Programs {
		ids = append(ids, p.ID)
	}
	return ids
}

// clsactFilters lists the program IDs of the BPF filters under lo's clsact.
func clsactFilters(t *testing.T, parent uint32) []ebpf.ProgramID {
	t.Helper()
	lo, err := netlink.LinkByIndex(1)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := netlink.FilterList(lo, parent)
	if err != nil {
		t.Fatalf("list filters: %v", err)
	}
	var ids []ebpf.ProgramID
	for _, f := range fs {
		if bf, ok := f.(*netlink.BpfFilter); ok {
			ids = append(ids, ebpf.ProgramID(bf.Id))
		}
	}
	return ids
}

func haveClsact(t *testing.T) bool {
	t.Helper()
	lo, err := netlink.LinkByIndex(1)
	if err != nil {
		t.Fatal(err)
	}
	qs, err := netlink.QdiscList(lo)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		if q.Type() == "clsact" {
			return true
		}
	}
	return false
}

// sendProbes sends n probes of session to a UDP socket on 127.0.0.1 and
// returns the socket's port via register, which must add the session
// before any probe leaves.
func sendProbes(t *testing.T, session uint32, n int, register func(port uint16)) {
	t.Helper()
	srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	register(uint16(srv.LocalAddr().(*net.UDPAddr).Port))
	cli, err := net.DialUDP("udp4", nil, srv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	buf := make([]byte, ProbeHeaderLen+32)
	for seq := 1; seq <= n; seq++ {
		ProbeHeader{Session: session, Seq: uint32(seq), Kind: KindRequest, Index: uint16(seq - 1)}.Put(buf)
		if _, err := cli.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	// They went through lo both ways: egress, then ingress.
	srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := 0; i < n; i++ {
		if _, err := srv.Read(make([]byte, 2048)); err != nil {
			t.Fatalf("receive probe %d: %v", i, err)
		}
	}
}

// checkLoopbackEvents checks that each of n probes was seen at egress and
// ingress of lo, in order, with times that increase.
func checkLoopbackEvents(t *testing.T, got []ProbeEvent, session uint32, n int) {
	t.Helper()
	byDir := map[Direction][]ProbeEvent{}
	for _, ev := range got {
		if ev.Session != session || ev.Ifindex != 1 || ev.IPLen != 20+8+ProbeHeaderLen+32 || ev.Kind != KindRequest {
			t.Errorf("unexpected event %+v", ev)
		}
		byDir[ev.Dir] = append(byDir[ev.Dir], ev)
	}
	for _, dir := range []Direction{Egress, Ingress} {
		evs := byDir[dir]
		if len(evs) != n {
			t.Fatalf("%d %s events, want %d", len(evs), dir, n)
		}
		for i, ev := range evs {
			if ev.Seq != uint32(i+1) || ev.Index != uint16(i) {
				t.Errorf("%s event %d: seq %d index %d, want %d and %d", dir, i, ev.Seq, ev.Index, i+1, i)
			}
			if i > 0 && ev.Time <= evs[i-1].Time {
				t.Errorf("%s event %d: time %d not after %d", dir, i, ev.Time, evs[i-1].Time)
			}
		}
	}
	for i := range n {
		if out, in := byDir[Egress][i].Time, byDir[Ingress][i].Time; in < out {
			t.Errorf("seq %d: ingress at %d before egress at %d", i+1, in, out)
		}
	}
}

func TestAttachTCXLoopback(t *testing.T) {
	ts := newKernelTimestamper(t)
	inPrivateNetns(t, func() {
		in, out := progID(t, ts.objs.TcIngress), progID(t, ts.objs.TcEgress)
		// Counted: two attaches need two detaches.
		for range 2 {
			if err := ts.Attach(1); err != nil {
				t.Fatal(err)
			}
		}
		if got := tcxPrograms(t, 1, ebpf.AttachTCXIngress); !slices.Equal(got, []ebpf.ProgramID{in}) {
			t.Fatalf("tcx ingress programs %v, want [%d]", got, in)
		}
		if got := tcxPrograms(t, 1, ebpf.AttachTCXEgress); !slices.Equal(got, []ebpf.ProgramID{out}) {
			t.Fatalf("tcx egress programs %v, want [%d]", got, out)
		}
		if err := ts.Detach(1); err != nil {
			t.Fatal(err)
		}
		if got := tcxPrograms(t, 1, ebpf.AttachTCXIngress); len(got) != 1 {
			t.Fatalf("after one of two detaches: tcx ingress programs %v, want still attached", got)
		}

		const session, n = 77, 5
		var log eventLog
		sendProbes(t, session, n, func(port uint16) {
			if err := ts.AddSession(session, port, WantAll, log.sink); err != nil {
				t.Fatal(err)
			}
		})
		if err := ts.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		checkLoopbackEvents(t, log.take(), session, n)

		if err := ts.Close(); err != nil {
			t.Fatal(err)
		}
		for _, a := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
			if got := tcxPrograms(t, 1, a); len(got) != 0 {
				t.Errorf("after Close: %s programs %v, want none", a, got)
			}
		}
		if err := ts.Detach(1); err == nil {
			t.Error("Detach after Close returned nil")
		}
	})
}

func TestAttachClsactLoopback(t *testing.T) {
	for _, pre := range []bool{false, true} {
		name := "create clsact"
		if pre {
			name = "existing clsact"
		}
		t.Run(name, func(t *testing.T) {
			ts := newKernelTimestamper(t)
			ts.forceClsact = true
			inPrivateNetns(t, func() {
				if pre {
					if err := netlink.QdiscAdd(clsactQdisc(1)); err != nil {
						t.Fatalf("add clsact: %v", err)
					}
				}
				in, out := progID(t, ts.objs.TcIngress), progID(t, ts.objs.TcEgress)
				if err := ts.Attach(1); err != nil {
					t.Fatal(err)
				}
				if !haveClsact(t) {
					t.Fatal("no clsact qdisc on lo after Attach")
				}
				if got := clsactFilters(t, netlink.HANDLE_MIN_INGRESS); !slices.Equal(got, []ebpf.ProgramID{in}) {
					t.Fatalf("ingress filters %v, want [%d]", got, in)
				}
				if got := clsactFilters(t, netlink.HANDLE_MIN_EGRESS); !slices.Equal(got, []ebpf.ProgramID{out}) {
					t.Fatalf("egress filters %v, want [%d]", got, out)
				}
				if got := tcxPrograms(t, 1, ebpf.AttachTCXIngress); len(got) != 0 {
					t.Fatalf("tcx ingress programs %v with the fallback forced", got)
				}

				const session, n = 78, 5
				var log eventLog
				sendProbes(t, session, n, func(port uint16) {
					if err := ts.AddSession(session, port, WantAll, log.sink); err != nil {
						t.Fatal(err)
					}
				})
				if err := ts.Flush(context.Background()); err != nil {
					t.Fatal(err)
				}
				checkLoopbackEvents(t, log.take(), session, n)

				if err := ts.Close(); err != nil {
					t.Fatal(err)
				}
				for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
					if got := clsactFilters(t, parent); len(got) != 0 {
						t.Errorf("after Close: filters %v under %#x, want none", got, parent)
					}
				}
				// Ours goes, someone else's stays.
				if have := haveClsact(t); have != pre {
					t.Errorf("after Close: clsact present %v, want %v", have, pre)
				}
			})
		})
	}
}

// lo is ifindex 1 in every namespace: attaching in a second one must not
// be mistaken for a second attach of the first.
func TestAttachPerNetns(t *testing.T) {
	ts := newKernelTimestamper(t)
	inPrivateNetns(t, func() {
		if err := ts.Attach(1); err != nil {
			t.Fatal(err)
		}
		inPrivateNetns(t, func() {
			if err := ts.Attach(1); err != nil {
				t.Fatal(err)
			}
			if got := tcxPrograms(t, 1, ebpf.AttachTCXIngress); len(got) != 1 {
				t.Fatalf("second namespace: tcx ingress programs %v, want ours", got)
			}
			if err := ts.Detach(1); err != nil {
				t.Fatal(err)
			}
			if got := tcxPrograms(t, 1, ebpf.AttachTCXIngress); len(got) != 0 {
				t.Fatalf("second namespace after Detach: programs %v", got)
			}
		})
		if got := tcxPrograms(t, 1, ebpf.AttachTCXIngress); len(got) != 1 {
			t.Fatalf("first namespace: tcx ingress programs %v, want ours still", got)
		}
		if err := ts.Detach(1); err != nil {
			t.Fatal(err)
		}
	})
}
