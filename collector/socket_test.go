package collector

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/probe-dev/probe/collector/dump"
)

// Datagrams over loopback carry software receive timestamps and every send
// gets its transmit timestamp back under the key Send returned.
func TestConnStamps(t *testing.T) {
	ctx := context.Background()
	hold, err := HoldRxStamps(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	srv, err := ListenUDP(ctx, netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli, err := DialUDP(ctx, srv.LocalAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()

	const n = 20
	buf := make([]byte, 64)
	sentAt := make([]int64, n)
	for i := range n {
		before := time.Now().UnixNano()
		key, user, err := cli.Send(buf, netip.AddrPort{})
		if err != nil {
			t.Fatal(err)
		}
		if key != uint32(i) || user == 0 {
			t.Fatalf("send %d: key %d user %d", i, key, user)
		}
		sentAt[i] = before
	}
	srv.SetReadDeadline(time.Now().Add(2 * time.Second))
	for i := range n {
		d, err := srv.Recv(buf)
		if err != nil {
			t.Fatalf("recv %d: %v", i, err)
		}
		if d.N != 64 || d.From != cli.LocalAddr() {
			t.Fatalf("recv %d: n=%d from %v, want 64 from %v", i, d.N, d.From, cli.LocalAddr())
		}
		sw := d.Stamps[dump.SourceSW]
		if sw < sentAt[i] || sw > time.Now().UnixNano() {
			t.Fatalf("recv %d: sw stamp %d outside [%d, now]", i, sw, sentAt[i])
		}
		if d.Stamps[dump.SourceUser] == 0 {
			t.Fatalf("recv %d: no user stamp", i)
		}
	}

	got := make(map[uint32]int64)
	deadline := time.Now().Add(2 * time.Second)
	for len(got) < n && time.Now().Before(deadline) {
		if _, err := cli.TxStamps(func(key uint32, s dump.Stamps) { got[key] = s[dump.SourceSW] }); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	if len(got) != n {
		t.Fatalf("got %d tx stamps, want %d", len(got), n)
	}
	for k, ts := range got {
		if k >= n || ts < sentAt[k] {
			t.Fatalf("tx stamp key %d at %d, sent at %d", k, ts, sentAt[k])
		}
	}
}

func TestRecvDoesNotAllocate(t *testing.T) {
	ctx := context.Background()
	srv, err := ListenUDP(ctx, netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli, err := DialUDP(ctx, srv.LocalAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	buf := make([]byte, 64)
	allocs := testing.AllocsPerRun(100, func() {
		if _, _, err := cli.Send(buf, netip.AddrPort{}); err != nil {
			t.Fatal(err)
		}
		if _, err := srv.Recv(buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("send+recv allocates %.1f times", allocs)
	}
}

// A receiver that reads nothing while 2000 datagrams arrive into a small
// buffer: what it then reads plus what Drops counts is exactly what was sent.
func TestDropsAccountForEveryDatagram(t *testing.T) {
	ctx := context.Background()
	srv, err := ListenUDP(ctx, netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	rcv, _, err := srv.Apply(SocketOptions{RcvBuf: 4096, DSCP: 46, TTL: 7})
	if err != nil {
		t.Fatal(err)
	}
	if rcv > 16384 {
		t.Fatalf("SO_RCVBUF reads back %d", rcv)
	}
	cli, err := DialUDP(ctx, srv.LocalAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	const sent = 2000
	bufs := make([][]byte, 50)
	for i := range bufs {
		bufs[i] = make([]byte, 200)
	}
	for range sent / len(bufs) {
		if _, _, n, err := cli.SendBatch(bufs, netip.AddrPort{}); err != nil || n != len(bufs) {
			t.Fatalf("sent %d: %v", n, err)
		}
	}
	got := 0
	out := make([]Datagram, 50)
	srv.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	for {
		n, err := srv.RecvBatch(bufs, out)
		if err != nil {
			break
		}
		for _, d := range out[:n] {
			if d.N != 200 || !d.Stamps.Has(dump.SourceUser) {
				t.Fatalf("datagram %+v", d)
			}
		}
		got += n
	}
	drops, err := srv.Drops()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sent %d, received %d, dropped %d", sent, got, drops)
	if drops == 0 || got+int(drops) != sent {
		t.Fatalf("received %d + dropped %d != sent %d", got, drops, sent)
	}
}

// MonotonicNow is the kernel's CLOCK_MONOTONIC, the clock of eBPF and socket
// stamps, and not some other clock of the runtime's.
func TestMonotonicNowIsClockMonotonic(t *testing.T) {
	for range 100 {
		var a, b unix.Timespec
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &a)
		now := MonotonicNow()
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &b)
		if now < a.Nano() || now > b.Nano() {
			t.Fatalf("MonotonicNow %d outside the CLOCK_MONOTONIC readings around it [%d, %d]", now, a.Nano(), b.Nano())
		}
	}
}
