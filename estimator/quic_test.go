package estimator

import (
	"math"
	"testing"
	"time"

	"github.com/probe-dev/probe/collector/dump"
)

func TestQUICIntervals(t *testing.T) {
	ms := time.Millisecond
	streams := []dump.QUICStream{
		{Samples: []dump.QUICStreamSample{{T: 100 * ms, Bytes: 1000}, {T: 200 * ms, Bytes: 3000}, {T: 300 * ms, Bytes: 6000}}},
		{Samples: []dump.QUICStreamSample{{T: 100 * ms, Bytes: 500}, {T: 200 * ms, Bytes: 500}, {T: 300 * ms, Bytes: 1500}}},
	}
	conn := []dump.QUICConnSample{
		{T: 100 * ms, SmoothedRTT: 10 * ms, Cwnd: 1000, PacketsLost: 1},
		{T: 200 * ms, SmoothedRTT: 20 * ms, Cwnd: 2000, PacketsLost: 4, BytesInFlight: 700},
		{T: 300 * ms, SmoothedRTT: 30 * ms, Cwnd: 3000, PacketsLost: 3}, // a loss undone
	}
	ivs := QUICIntervals(streams, conn, 100*ms)
	if len(ivs) != 3 {
		t.Fatalf("%d intervals", len(ivs))
	}
	want := []struct {
		bytes uint64
		lost  uint64
		rtt   time.Duration
		cwnd  uint64
	}{{1500, 1, 10 * ms, 1000}, {2000, 3, 20 * ms, 2000}, {4000, 0, 30 * ms, 3000}}
	for i, w := range want {
		iv := ivs[i]
		if iv.Bytes != w.bytes || iv.Lost != w.lost || iv.RTT != w.rtt || iv.Cwnd != w.cwnd {
			t.Errorf("interval %d: %+v, want %+v", i, iv, w)
		}
		if math.Abs(iv.Rate-float64(8*w.bytes)/0.1) > 1e-6 {
			t.Errorf("interval %d: rate %v", i, iv.Rate)
		}
	}
	if ivs[1].InFlight != 700 || ivs[1].PerStream[1] != 0 {
		t.Errorf("interval 1: %+v", ivs[1])
	}
}

func TestQUICTotal(t *testing.T) {
	tot := QUICTotal([]dump.QUICStream{{Sent: 1000, Received: 10}, {Sent: 3000, Err: "x"}},
		[]dump.QUICConnSample{{PacketsSent: 10}, {PacketsSent: 200, PacketsLost: 5}}, 2*time.Second)
	if tot.Sent != 4000 || tot.Received != 10 || tot.SendRate != 16000 || tot.Errors != 1 || tot.PacketsSent != 200 || tot.LossRate != 0.025 {
		t.Fatalf("%+v", tot)
	}
}

func TestQUICPings(t *testing.T) {
	ms := time.Millisecond
	pings := []dump.QUICPing{
		{Seq: 0, RTT: 10 * ms}, {Seq: 1, RTT: 12 * ms}, {Seq: 2}, {Seq: 3, RTT: 11 * ms},
		{Seq: 4, RTT: 50 * ms, Loaded: true},
	}
	idle := QUICPings(pings, false)
	if idle.Sent != 4 || idle.Echoed != 3 || idle.Min != 10*ms || idle.Max != 12*ms || idle.Median != 11*ms {
		t.Fatalf("idle %+v", idle)
	}
	// RFC 3550: J = J + (|D| - J)/16 over the RTT changes 2 ms, then 1 ms.
	j := 2.0 / 16
	j += (1 - j) / 16
	if want := time.Duration(math.Round(j * 1e6)); idle.Jitter != want {
		t.Errorf("jitter %v, want %v", idle.Jitter, want)
	}
	if loaded := QUICPings(pings, true); loaded.Sent != 1 || loaded.Median != 50*ms {
		t.Errorf("loaded %+v", loaded)
	}
}

func TestQUICGoodput(t *testing.T) {
	o := QUICOverhead{IP: 20, UDP: 8, ShortHeader: 1 + 4 + 2, StreamHeader: 1 + 1 + 4, AEADTag: 16}
	if o.Total() != 57 {
		t.Fatalf("overhead %d", o.Total())
	}
	// 1480-byte IP packets (quic-go's 1452-byte UDP payload) on Ethernet.
	got := QUICGoodput(20e6, 1480, 14, o)
	if want := 20e6 * 1423 / 1494; math.Abs(got-want) > 1e-6 {
		t.Fatalf("%v, want %v", got, want)
	}
}
