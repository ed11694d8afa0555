package collector

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// With UseGSO, runs of equal datagrams leave as GSO sends and arrive as the
// same datagrams, in order, byte for byte: a shorter one ends a run, a
// longer one starts the next, and batches longer than MaxBatch and a GSO
// send's 64 KiB are split.
func TestSendBatchGSO(t *testing.T) {
	ctx := context.Background()
	srv, err := ListenUDP(ctx, netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if _, _, err := srv.Apply(SocketOptions{RcvBuf: 8 << 20}); err != nil {
		t.Fatal(err)
	}
	cli, err := DialUDP(ctx, srv.LocalAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if err := cli.UseGSO(); err != nil {
		t.Skipf("kernel without UDP GSO: %v", err)
	}
	sizes := []int{}
	for range 70 {
		sizes = append(sizes, 64) // more than MaxBatch
	}
	sizes = append(sizes, 30, 64, 64, 100, 100, 100) // short end, then a new run, a longer one
	for range 50 {
		sizes = append(sizes, 1472) // more than 64 KiB
	}
	var bufs [][]byte
	for i, n := range sizes {
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(i + j)
		}
		bufs = append(bufs, b)
	}
	sent := 0
	for sent < len(bufs) {
		_, _, n, err := cli.SendBatch(bufs[sent:], netip.AddrPort{})
		if err != nil {
			t.Fatalf("sent %d of %d: %v", sent+n, len(bufs), err)
		}
		sent += n
	}
	if cli.Sent() >= uint32(len(bufs)) {
		t.Errorf("%d sends for %d datagrams: no GSO", cli.Sent(), len(bufs))
	}
	in := make([][]byte, MaxBatch)
	for i := range in {
		in[i] = make([]byte, 65536)
	}
	out := make([]Datagram, MaxBatch)
	got := 0
	srv.SetReadDeadline(time.Now().Add(time.Second))
	for got < len(bufs) {
		n, err := srv.RecvBatch(in, out)
		if err != nil {
			t.Fatalf("received %d of %d: %v", got, len(bufs), err)
		}
		for k := range n {
			want := bufs[got]
			if d := in[k][:out[k].N]; string(d) != string(want) {
				t.Fatalf("datagram %d: %d bytes, want %d (%x… vs %x…)", got, len(d), len(want), d[:min(4, len(d))], want[:4])
			}
			got++
		}
	}
	t.Logf("%d datagrams in %d sends", len(bufs), cli.Sent())
}

// A GSO send needs each segment to fit the path's MTU, where a single
// datagram would be fragmented; SendBatch then falls back to single
// datagrams, and every one still arrives whole.
func TestSendBatchGSOFallsBackAboveMTU(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace with a 1500-byte loopback MTU")
	}
	type result struct {
		got int
		gso bool
		err error
	}
	done := make(chan result, 1)
	go func() {
		// This thread joins a fresh namespace and is never given back.
		runtime.LockOSThread()
		var r result
		defer func() { done <- r }()
		if r.err = unix.Unshare(unix.CLONE_NEWNET); r.err != nil {
			return
		}
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetMTU(lo, 1500)
		}
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		if r.err = err; err != nil {
			return
		}
		r.got, r.gso, r.err = sendBig(10, 3000)
	}()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.got != 10 || r.gso {
		t.Fatalf("%d of 10 datagrams of 3000 B arrived; GSO still on: %v", r.got, r.gso)
	}
}

// sendBig sends n datagrams of size bytes with UseGSO over loopback and
// counts those that arrive whole.
func sendBig(n, size int) (got int, gso bool, err error) {
	ctx := context.Background()
	srv, err := ListenUDP(ctx, netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		return 0, false, err
	}
	defer srv.Close()
	cli, err := DialUDP(ctx, srv.LocalAddr())
	if err != nil {
		return 0, false, err
	}
	defer cli.Close()
	if err := cli.UseGSO(); err != nil {
		return 0, false, err
	}
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	if _, _, sent, err := cli.SendBatch(bufs, netip.AddrPort{}); err != nil || sent != n {
		return 0, cli.GSO(), fmt.Errorf("sent %d of %d: %v", sent, n, err)
	}
	in := [][]byte{make([]byte, 65536)}
	out := make([]Datagram, 1)
	srv.SetReadDeadline(time.Now().Add(time.Second))
	for got < n {
		k, err := srv.RecvBatch(in, out)
		if err != nil || k != 1 || out[0].N != size {
			break
		}
		got++
	}
	return got, cli.GSO(), nil
}
