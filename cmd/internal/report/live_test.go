package report

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/estimator"
)

// Fed one round of samples at a time, the live cutter gives the intervals
// estimator.TCPIntervals gives of the whole series: the same bytes, the
// same rates, the same retransmits.
func TestLiveCutterAgreesWithTheSeries(t *testing.T) {
	const every = time.Second
	// Two streams sampled every 100 ms, a little late each time, at 8 and
	// 24 Mbit/s with a stall of 700 ms in the second second.
	var streams [2]dump.TCPStream
	c := liveCutter{every: every}
	var live []estimator.TCPInterval
	var b [2]uint64
	for k := 1; k <= 35; k++ {
		at := time.Duration(k)*100*time.Millisecond + time.Duration(k%3)*time.Millisecond
		var round []dump.TCPSample
		for i := range streams {
			if at < 1200*time.Millisecond || at > 1900*time.Millisecond {
				b[i] += uint64(100_000 * (1 + 2*i))
			}
			x := dump.TCPSample{T: at, Bytes: b[i], TotalRetrans: uint32(k / 10), RTT: time.Millisecond, SndCwnd: 10}
			streams[i].Samples = append(streams[i].Samples, x)
			round = append(round, x)
		}
		if iv, ok := c.add(round); ok {
			live = append(live, iv)
		}
	}
	if iv, ok := c.flush(); ok {
		live = append(live, iv)
	}
	want := estimator.TCPIntervals(streams[:], every)
	if len(live) != len(want) || len(live) != 4 {
		t.Fatalf("%d live intervals, the series cuts %d (want 4: three seconds and a half)", len(live), len(want))
	}
	for i := range want {
		l, w := live[i], want[i]
		if l.Start != w.Start || l.Bytes != w.Bytes || math.Abs(l.Rate-w.Rate) > 1e-6*w.Rate || l.Retrans != w.Retrans {
			t.Errorf("interval %d: live %v–%v %d B %.0f bit/s %d retrans; series %v–%v %d B %.0f bit/s %d retrans",
				i, l.Start, l.End, l.Bytes, l.Rate, l.Retrans, w.Start, w.End, w.Bytes, w.Rate, w.Retrans)
		}
	}
	if r := live[0].PerStream; math.Abs(r[0]-8e6)/8e6 > 0.02 || math.Abs(r[1]-24e6)/24e6 > 0.02 {
		t.Errorf("first interval per stream %v bit/s, want 8 and 24 Mbit/s", r)
	}
}

// The lines every stream prints agree with docs/json.md, event by event;
// the checker refuses a stream without its end, out of order, or with a
// key the page does not have.
func TestStreamSchema(t *testing.T) {
	s := loadSchema(t)
	start := sampleStart()
	tcpRes := sampleTCP()
	quicRes := sampleQUIC(false)
	streams := map[string]func(*bytes.Buffer){
		"tcp": func(w *bytes.Buffer) {
			o := TCPOptions{Start: start, Every: 100 * time.Millisecond}
			st := NewTCPStream(w, tcpRes.Params, o)
			for _, k := range []int{0, 1} {
				var round []dump.TCPSample
				for _, x := range tcpRes.Client.Streams {
					round = append(round, x.Samples[k])
				}
				st.Live(round)
			}
			if err := st.End(tcpRes, o); err != nil {
				t.Fatal(err)
			}
		},
		"tcp -R": func(w *bytes.Buffer) {
			o := TCPOptions{Start: start, Every: 100 * time.Millisecond}
			p := tcpRes.Params
			p.Direction = "reverse"
			st := NewTCPStream(w, p, o)
			st.Live([]dump.TCPSample{{T: 100 * time.Millisecond, Bytes: 5, BytesRecv: 7}})
			if err := st.End(tcpRes, o); err != nil {
				t.Fatal(err)
			}
		},
		"quic": func(w *bytes.Buffer) {
			o := QUICOptions{Start: start, Agent: "a", Every: 100 * time.Millisecond}
			st := NewQUICStream(w, quicRes.Params, false, o)
			for k := range 2 {
				var ss []dump.QUICStream
				for _, x := range quicRes.Client.Streams {
					x.Samples = x.Samples[k : k+1]
					ss = append(ss, x)
				}
				st.Live(ss, quicRes.Client.Conn[k])
			}
			if err := st.End(quicRes, o); err != nil {
				t.Fatal(err)
			}
		},
		"quic, perf": func(w *bytes.Buffer) {
			o := QUICOptions{Start: start, Agent: "a:4433", Every: 100 * time.Millisecond}
			st := NewQUICStream(w, sampleQUIC(true).Params, true, o)
			if err := st.End(sampleQUIC(true), o); err != nil {
				t.Fatal(err)
			}
		},
		"watch": func(w *bytes.Buffer) {
			o := WatchOptions{Start: start}
			l := NewWatchLive(w, time.Second, true, true, o)
			for _, x := range sampleSeries().Samples {
				l.Sample(x)
			}
			if err := l.End(sampleSeries(), o); err != nil {
				t.Fatal(err)
			}
		},
		"echo": func(w *bytes.Buffer) {
			st := NewEchoStream(w, EchoInfo{Start: start, Agent: "a"}, estimator.AutoSource)
			st.Point(EchoMeasurement{Point: dump.EchoPoint{Size: 64, Count: 1}})
			if err := st.End(nil, ""); err != nil {
				t.Fatal(err)
			}
		},
	}
	wantIntervals := map[string]int{"tcp": 2, "tcp -R": 1, "quic": 4, "quic, perf": 0, "watch": 3, "echo": 1}
	for name, write := range streams {
		var b bytes.Buffer
		write(&b)
		n, err := s.CheckStream(b.Bytes())
		if err != nil || n != wantIntervals[name] {
			t.Errorf("%s: %d intervals, %v; want %d\n%s", name, n, err, wantIntervals[name], b.String())
		}
		if strings.Contains(b.String(), `\u00`) {
			t.Errorf("%s: escaped text", name)
		}
	}

	var b bytes.Buffer
	streams["tcp"](&b)
	lines := strings.SplitAfter(strings.TrimSuffix(b.String(), "\n"), "\n")
	for name, bad := range map[string]string{
		"no end":          strings.Join(lines[:len(lines)-1], ""),
		"no start":        strings.Join(lines[1:], ""),
		"undocumented":    strings.Replace(b.String(), `"bps":`, `"rate_bps":`, 1),
		"not an event":    lines[0] + "{\"data\":{}}\n" + lines[len(lines)-1],
		"interval at end": strings.Join(lines[:len(lines)-1], "") + lines[1],
	} {
		if _, err := s.CheckStream([]byte(bad)); err == nil {
			t.Errorf("%s: the checker let it pass", name)
		}
	}
}

// A live line says the CPU over the interval (eBPF's on-CPU time when
// there is one), storage I/O in kB/s and the network in bit/s.
func TestWatchLine(t *testing.T) {
	a := dump.ResourceSample{T: time.Second, User: time.Second, OnCPU: time.Second, Net: map[string]dump.IfCounters{"eth0": {RxBytes: 1000}, "lo": {RxBytes: 5}}}
	b := dump.ResourceSample{T: 3 * time.Second, User: 2 * time.Second, OnCPU: 2500 * time.Millisecond, RSS: 3 << 20, Threads: 2, Voluntary: 40,
		ReadBytes: 3000, WriteBytes: 5_000_000,
		Net: map[string]dump.IfCounters{"eth0": {RxBytes: 1000 + 2_500_000, TxBytes: 250}, "lo": {RxBytes: 1 << 30}}}
	line := WatchLine(time.Date(2026, 1, 1, 12, 0, 1, 0, time.UTC), a, b, true, false)
	for _, want := range []string{"12:00:01", " 75.0 ", " 3.0 ", " 20 ", "10.00 Mbit/s", "1.0 kbit/s", " 1.5 ", " 2500.0 "} {
		if !strings.Contains(line, want) {
			t.Errorf("line %q lacks %q", line, want)
		}
	}
	if line := WatchLine(time.Now(), a, b, false, false); !strings.Contains(line, " 50.0 ") {
		t.Errorf("without eBPF, CPU from user + system: %q", line)
	}
}
