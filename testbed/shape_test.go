package testbed

import (
	"math"
	"net"
	"sync"
	"testing"
	"time"
)

// TestShapedRate checks the testbed's ground truth: b receives full-size packets at the
// tbf rate scaled from Ethernet frames to IP packets.
func TestShapedRate(t *testing.T) {
	needRoot(t)
	const (
		rate       = 20e6
		maxPackets = 4000 // more than the ~1.5 s below needs; a bound whatever the clock does
		warmup     = 300 * time.Millisecond
		window     = time.Second
	)
	tb := up(t, Config{Name: uniqueName("r"), Rate: rate})

	var rx, tx *net.UDPConn
	err := tb.B.Do(func() (err error) {
		rx, err = net.ListenUDP("udp4", &net.UDPAddr{IP: tb.B.Addr.AsSlice()})
		return err
	})
	if err != nil {
		t.Fatalf("listen in b: %v", err)
	}
	defer rx.Close()
	err = tb.A.Do(func() (err error) {
		tx, err = net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
		return err
	})
	if err != nil {
		t.Fatalf("dial from a: %v", err)
	}
	defer tx.Close()

	var wg, rwg sync.WaitGroup
	wg.Add(1)
	rwg.Add(1)
	go func() {
		defer rwg.Done()
		buf := make([]byte, 2048)
		rx.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			if _, err := rx.Read(buf); err != nil {
				return
			}
		}
	}()
	sent := 0
	go func() {
		defer wg.Done()
		// tbf drops what its queue cannot hold and UDP does not block on that, so pace
		// the sender at 1.25 times the shaped rate: the queue fills within ~150 ms and
		// stays full, and the count stays bounded.
		payload := make([]byte, tb.MTU-20-8)
		pps := 1.25 * rate / 8 / float64(tb.MTU+ethHeader)
		start := time.Now()
		end := start.Add(warmup + window + 200*time.Millisecond)
		tx.SetWriteDeadline(end)
		for sent < maxPackets && time.Now().Before(end) {
			for sent < maxPackets && float64(sent) < time.Since(start).Seconds()*pps {
				if _, err := tx.Write(payload); err != nil {
					return
				}
				sent++
			}
			time.Sleep(time.Millisecond)
		}
	}()

	time.Sleep(warmup)
	b0, p0, t0 := rxCounters(t, tb.B)
	time.Sleep(window)
	b1, p1, t1 := rxCounters(t, tb.B)
	wg.Wait()
	rx.Close()
	rwg.Wait()

	packets := p1 - p0
	frameBytes := b1 - b0
	ipBytes := frameBytes - ethHeader*packets
	got := float64(ipBytes) * 8 / t1.Sub(t0).Seconds()
	want := rate * float64(tb.MTU) / float64(tb.MTU+ethHeader)
	t.Logf("sent %d datagrams; b received %d packets, %.1f bytes/frame, in %v: IP-layer %.4g bit/s, want %.4g (%+.2f %%)",
		sent, packets, float64(frameBytes)/float64(packets), t1.Sub(t0), got, want, (got-want)/want*100)
	if packets == 0 || math.Abs(got-want)/want > 0.03 {
		t.Errorf("shaped IP-layer rate %.4g bit/s, want %.4g within 3 %%", got, want)
	}
}

// rxCounters reads the receive counters of h's testbed interface.
func rxCounters(t *testing.T, h *Host) (bytes, packets uint64, at time.Time) {
	t.Helper()
	nh, err := handleAt(h.NS)
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	l, err := nh.LinkByName(h.Ifname)
	at = time.Now()
	if err != nil {
		t.Fatalf("read counters of %s in %s: %v", h.Ifname, h.NS, err)
	}
	s := l.Attrs().Statistics
	return s.RxBytes, s.RxPackets, at
}
