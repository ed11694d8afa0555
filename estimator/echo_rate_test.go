package estimator

import (
	"math"
	"testing"
	"time"

	"github.com/probe-dev/probe/collector/dump"
)

// 11 probes of 100 B every ms, answered 40 µs later: 10 × 100 B in 10 ms is
// 800 kbit/s of payload, 10 × 128 B is 1.024 Mbit/s with IPv4+UDP headers.
func TestEchoStatsRates(t *testing.T) {
	build := func() []dump.EchoRecord {
		var ps []probe
		for i := range int64(11) {
			ps = append(ps, probe{i * 1000, i*1000 + 10, i*1000 + 15, i*1000 + 40})
		}
		return echoRecs(100, ps...)
	}
	near := func(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Abs(b) }
	p := dump.EchoPoint{Size: 100, Wait: time.Millisecond, Count: 11, IPHeader: 28}

	lost := build()
	lost[5].Replies, lost[5].ClientRx, lost[5].ClientOrder = 0, dump.Stamps{}, 0
	noTx := build()
	noTx[5].ClientTx[dump.SourceEBPF] = 0
	for _, c := range []struct {
		name                 string
		recs                 []dump.EchoRecord
		p                    dump.EchoPoint
		source               dump.Source
		send, recv, sIP, rIP float64
		frame                time.Duration
	}{
		{"all", build(), p, dump.SourceEBPF, 800e3, 800e3, 1024e3, 1024e3, time.Millisecond},
		// 9 replies after the first in the same 10 ms.
		{"one lost", lost, p, dump.SourceEBPF, 800e3, 720e3, 1024e3, 921.6e3, time.Millisecond},
		// A send without its eBPF stamp: user space for all, same figures.
		{"user stamps", noTx, p, dump.SourceUser, 800e3, 800e3, 1024e3, 1024e3, time.Millisecond},
		{"header unknown", build(), dump.EchoPoint{Size: 100}, dump.SourceEBPF, 800e3, 800e3, 0, 0, time.Millisecond},
		{"one probe", build()[:1], p, dump.SourceEBPF, 0, 0, 0, 0, 0},
	} {
		s, err := EchoStats(c.p, c.recs, AutoSource)
		if err != nil {
			t.Fatal(err)
		}
		if s.RateSource != c.source || !near(s.SendRate, c.send) || !near(s.RecvRate, c.recv) ||
			!near(s.SendRateIP, c.sIP) || !near(s.RecvRateIP, c.rIP) || s.TimePerFrame != c.frame {
			t.Errorf("%s: source %s send %v recv %v bit/s, IP %v %v, frame %v", c.name, s.RateSource,
				s.SendRate, s.RecvRate, s.SendRateIP, s.RecvRateIP, s.TimePerFrame)
		}
	}
}

// Sends meant every ms went 10, 0, -20 (early), 1500 and 30 µs off; the
// sixth had no schedule. Mean |late| = 1560/5 = 312 µs, 31.2 % of the
// interval; the 1500 µs one missed its slot.
func TestEchoStatsSchedule(t *testing.T) {
	var ps []probe
	for i := range int64(6) {
		ps = append(ps, probe{i * 1000, i*1000 + 10, i*1000 + 15, i*1000 + 40})
	}
	recs := echoRecs(100, ps...)
	for i, late := range []int64{10, 0, -20, 1500, 30} {
		recs[i].Scheduled = clientBase + int64(i)*1_000_000
		recs[i].ClientTx[dump.SourceUser] = recs[i].Scheduled + late*1000
	}
	for _, c := range []struct {
		wait   time.Duration
		missed int
		pct    float64
	}{{time.Millisecond, 1, 31.2}, {0, 0, 0}, {2 * time.Millisecond, 0, 15.6}} {
		s, err := EchoStats(dump.EchoPoint{Size: 100, Wait: c.wait, Count: 6}, recs, AutoSource)
		if err != nil {
			t.Fatal(err)
		}
		if s.ScheduledSends != 5 || s.ScheduleMeanErr != 312*time.Microsecond || s.ScheduleMaxErr != 1500*time.Microsecond ||
			s.Missed != c.missed || math.Abs(s.ScheduleErrPct-c.pct) > 1e-9 {
			t.Errorf("wait %v: %d sends, mean %v max %v, missed %d, %v %%", c.wait, s.ScheduledSends,
				s.ScheduleMeanErr, s.ScheduleMaxErr, s.Missed, s.ScheduleErrPct)
		}
	}
}
