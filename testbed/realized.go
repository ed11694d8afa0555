package testbed

import (
	"fmt"
	"net"
	"sync"
	"time"
)

// RealizedRate measures the rate the a -> b path really carries, at the IP
// layer, in bit/s: a backlogged UDP flood of full-size packets from a, counted
// by b's interface byte counters over window. tbf is a faithful serialiser
// only at low rates (its timer wakes late at high ones), so benchmarks judge
// a capacity estimate against this as well as against the configured rate.
// rate is the configured rate; the flood is paced at 1.25 times it, since
// tbf drops what its queue cannot hold and UDP does not block on that: the
// queue fills within ~150 ms and stays full, and the count stays bounded.
func (tb *Testbed) RealizedRate(rate float64, window time.Duration) (float64, error) {
	const warmup = 300 * time.Millisecond
	var rx, tx *net.UDPConn
	err := tb.B.Do(func() (err error) {
		rx, err = net.ListenUDP("udp4", &net.UDPAddr{IP: tb.B.Addr.AsSlice()})
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("realized rate: listen in b: %w", err)
	}
	defer rx.Close()
	err = tb.A.Do(func() (err error) {
		tx, err = net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("realized rate: dial from a: %w", err)
	}
	defer tx.Close()

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		buf := make([]byte, 65536)
		rx.SetReadDeadline(time.Now().Add(warmup + window + 2*time.Second))
		for {
			if _, err := rx.Read(buf); err != nil {
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		payload := make([]byte, tb.MTU-20-8)
		pps := 1.25 * rate / 8 / float64(tb.MTU+ethHeader)
		start := time.Now()
		end := start.Add(warmup + window + 200*time.Millisecond)
		maxPackets := int(pps*(end.Sub(start).Seconds())) + 1
		for sent := 0; sent < maxPackets && time.Now().Before(end); {
			for sent < maxPackets && float64(sent) < time.Since(start).Seconds()*pps {
				if _, err := tx.Write(payload); err != nil {
					return
				}
				sent++
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()
	time.Sleep(warmup)
	b0, p0, t0, err := tb.B.rxCounters()
	if err != nil {
		return 0, err
	}
	time.Sleep(window)
	b1, p1, t1, err := tb.B.rxCounters()
	if err != nil {
		return 0, err
	}
	rx.Close()
	wg.Wait()
	ipBytes := (b1 - b0) - ethHeader*(p1-p0)
	if p1 == p0 {
		return 0, fmt.Errorf("realized rate: b received nothing")
	}
	return float64(ipBytes) * 8 / t1.Sub(t0).Seconds(), nil
}

// rxCounters reads the receive counters of h's testbed interface.
func (h *Host) rxCounters() (bytes, packets uint64, at time.Time, err error) {
	nh, err := handleAt(h.NS)
	if err != nil {
		return 0, 0, at, err
	}
	defer nh.Close()
	l, err := nh.LinkByName(h.Ifname)
	at = time.Now()
	if err != nil {
		return 0, 0, at, fmt.Errorf("read counters of %s in %s: %w", h.Ifname, h.NS, err)
	}
	s := l.Attrs().Statistics
	return s.RxBytes, s.RxPackets, at, nil
}

// RxCounters reads the bytes and packets h's testbed interface received.
func (h *Host) RxCounters() (bytes, packets uint64, err error) {
	bytes, packets, _, err = h.rxCounters()
	return bytes, packets, err
}
