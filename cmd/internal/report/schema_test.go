package report

import (
	"bytes"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/estimator"
	"github.com/probe-dev/probe/probe"
)

func loadSchema(t *testing.T) Schema {
	t.Helper()
	md, err := os.ReadFile("../../../docs/json.md")
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseSchema(md)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sampleStart() Start {
	h := &Host{Addr: "10.77.0.2", Name: "b", Kernel: "6.18", TimestampSources: []string{"ebpf", "sw", "user"}}
	return Start{Tool: "probe", Version: "devel", Commit: "abc", CommandLine: []string{"probe", "measure"}, Time: "2026-01-01T00:00:00Z",
		Client: h, Agent: nil}
}

func sampleTCP() *probe.TCPResult {
	stream := func(sent, recv uint64) dump.TCPStream {
		return dump.TCPStream{Sent: sent, Received: recv, Samples: []dump.TCPSample{
			{T: 100 * time.Millisecond, Bytes: (sent + recv) / 2, RTT: time.Millisecond, SndCwnd: 10, DeliveryRate: 1000},
			{T: 200 * time.Millisecond, Bytes: sent + recv, RTT: time.Millisecond, SndCwnd: 12}}}
	}
	return &probe.TCPResult{Params: probe.TCPParams{Streams: 2, Direction: probe.DirForward, Duration: 200 * time.Millisecond, WriteSize: 1 << 17,
		Interval: 100 * time.Millisecond, GetOpts: []string{"SO_RCVBUF"}},
		Client: probe.TCPSide{Streams: []dump.TCPStream{stream(1e6, 0), stream(1e6, 0)}, Elapsed: 200 * time.Millisecond, ReadBack: map[string]string{"SO_RCVBUF": "1"}},
		Agent:  probe.TCPSide{Streams: []dump.TCPStream{stream(0, 1e6), stream(0, 1e6)}, Elapsed: 210 * time.Millisecond}}
}

func sampleQUIC(perf bool) *probe.QUICResult {
	stream := func(dir string, sent, recv uint64) dump.QUICStream {
		return dump.QUICStream{ID: 0, Dir: dir, Sent: sent, Received: recv, Samples: []dump.QUICStreamSample{
			{T: 100 * time.Millisecond, Bytes: (sent + recv) / 2}, {T: 200 * time.Millisecond, Bytes: sent + recv}}, Err: "reset"}
	}
	conn := []dump.QUICConnSample{{T: 100 * time.Millisecond, SmoothedRTT: time.Millisecond, Cwnd: 1e5, PacketsSent: 10},
		{T: 200 * time.Millisecond, SmoothedRTT: time.Millisecond, Cwnd: 1e5, PacketsSent: 20, PacketsLost: 1}}
	r := &probe.QUICResult{Params: probe.QUICParams{Streams: 1, Direction: probe.DirBidir, Bytes: 1e6, WriteSize: 1 << 14, Interval: 100 * time.Millisecond,
		Pings: 2, PingEvery: 10 * time.Millisecond}, PerfOnly: perf, Version: "v1",
		Handshakes: []dump.QUICHandshake{{Handshake: time.Millisecond, FirstByte: 2 * time.Millisecond}, {Resumed: true, Used0RTT: true}},
		Client:     probe.QUICSide{Streams: []dump.QUICStream{stream("up", 1e6, 0), stream("down", 0, 1e6)}, Conn: conn, Elapsed: 200 * time.Millisecond, GSO: true}}
	if !perf {
		r.Pings = []dump.QUICPing{{Seq: 0, RTT: time.Millisecond}, {Seq: 1, RTT: 2 * time.Millisecond, Loaded: true}, {Seq: 2, Loaded: true}}
		r.Agent = probe.QUICSide{Streams: []dump.QUICStream{stream("up", 0, 1e6), stream("down", 1e6, 0)}, Conn: conn, Elapsed: 200 * time.Millisecond,
			Warnings: []string{"buffers"}}
	}
	return r
}

func sampleEchoRows() []echoRow {
	full := estimator.EchoSummary{Sent: 100, Received: 99, LostThere: 1, RateSource: dump.SourceEBPF, SendRate: 1e6, RecvRate: 1e6,
		Kernel: estimator.RTT{ClientSource: dump.SourceEBPF, AgentSource: dump.SourceEBPF, N: 99, Min: time.Microsecond, Max: time.Millisecond},
		There:  estimator.Variation{N: 99}, ScheduledSends: 100}
	return []echoRow{{Point: dump.EchoPoint{Size: 64, Wait: time.Millisecond, Count: 100}, Stats: full},
		{Point: dump.EchoPoint{Index: 1, Size: 128, Count: 100}, Stats: estimator.EchoSummary{Sent: 100, LostThere: 100}, Err: "no reply"}}
}

func sampleSeries() dump.ResourceSeries {
	var s dump.ResourceSeries
	for i := range 3 {
		s.Samples = append(s.Samples, dump.ResourceSample{T: time.Duration(i) * 100 * time.Millisecond, User: time.Duration(i) * time.Millisecond,
			Net: map[string]dump.IfCounters{"lo": {RxBytes: uint64(i)}, "eth0": {TxBytes: 1000 * uint64(i), TxPackets: uint64(i)}}})
	}
	return s
}

// Every mode's document, of hand-made results with and without the
// optional figures, agrees with docs/json.md key by key, and nothing in it
// is HTML-escaped.
func TestSchemaOfEveryMode(t *testing.T) {
	s := loadSchema(t)
	start := sampleStart()
	capInfo := CapacityInfo{Start: start, From: "a<b>&", To: "b", Path: AgentToClient, Size: 1500}
	noUpper := sampleCapacity()
	noUpper.Upper, noUpper.Sustained, noUpper.Overhead, noUpper.Discarded = 0, 0, 0, nil
	withModes := sampleCapacity()
	withModes.Modes, withModes.Chosen, withModes.Discarded = []estimator.Mode{{Value: 1e6}, {Value: 2e6}}, 1, map[string]int{"lossy": 2}
	tcp := sampleTCP()
	quicByTime := sampleQUIC(false)
	quicByTime.Client.Streams[1].Requested = math.MaxUint64 // the perf protocol's "all you send"
	docs := map[string]any{
		"capacity":           CapacityDocument(capInfo, sampleCapacity()),
		"capacity, bounds":   CapacityDocument(capInfo, noUpper),
		"capacity, modes":    CapacityDocument(capInfo, withModes),
		"echo":               EchoDocument(EchoInfo{Start: start, Agent: "a"}, sampleEchoRows()),
		"tcp":                TCPDocument(tcp, TCPOptions{Start: start, Every: 100 * time.Millisecond}),
		"tcp, empty":         TCPDocument(&probe.TCPResult{Params: probe.TCPParams{Direction: probe.DirReverse, Bytes: 5}}, TCPOptions{Start: start, Every: time.Second}),
		"quic":               QUICDocument(sampleQUIC(false), QUICOptions{Start: start, Agent: "a", Every: 100 * time.Millisecond}),
		"quic, perf":         QUICDocument(sampleQUIC(true), QUICOptions{Start: start, Agent: "a:4433", Every: 100 * time.Millisecond}),
		"quic, by time":      QUICDocument(quicByTime, QUICOptions{Start: start, Agent: "a", Every: 100 * time.Millisecond}),
		"tcp+quic":           TCPQUICDoc{Schema: SchemaTCPQUIC, Start: start, TCP: TCPDocument(tcp, TCPOptions{Start: start}), QUIC: QUICDocument(sampleQUIC(false), QUICOptions{Start: start})},
		"echo, without meta": EchoDocument(EchoInfoFromMeta(nil), sampleEchoRows()[:1]),
		"watch":              WatchDocument(sampleSeries(), true, WatchOptions{Start: start}),
		"watch, no eBPF":     WatchDocument(sampleSeries(), false, WatchOptions{Start: start, Loopback: true}),
		"watch, no samples":  WatchDocument(dump.ResourceSeries{Name: "x"}, false, WatchOptions{Start: start}),
	}
	if _, ok := WatchDocument(sampleSeries(), true, WatchOptions{}).Summary.Interfaces["lo"]; ok {
		t.Error("lo without Loopback")
	}
	for name, d := range docs {
		var b bytes.Buffer
		if err := writeDoc(&b, d); err != nil {
			t.Fatal(err)
		}
		if err := s.CheckDoc(b.Bytes()); err != nil {
			t.Errorf("%s: %v\n%s", name, err, b.String())
		}
		if strings.Contains(b.String(), `\u00`) {
			t.Errorf("%s: escaped text in %s", name, b.String())
		}
	}
}

// The checker itself finds what it is for: an undocumented key, a missing
// one, a wrong type, a null where none is documented.
func TestSchemaCheckerFails(t *testing.T) {
	s := Schema{"Doc": {"schema": "string", "a_bps": "number", "b": "[Sub] or null"}, "Sub": {"n": "integer"}}
	for doc, want := range map[string]string{
		`{"schema":"x","a_bps":1,"b":null,"c":1}`:  `key "c" is not documented`,
		`{"schema":"x","b":[]}`:                    `documented key "a_bps" of Doc is missing`,
		`{"schema":"x","a_bps":"1","b":[]}`:        "documented as a number",
		`{"schema":"x","a_bps":null,"b":[]}`:       "null, documented as number",
		`{"schema":"x","a_bps":1,"b":[{"n":1.5}]}`: "documented as an integer",
	} {
		err := s.Check([]byte(doc), "Doc")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", doc, err, want)
		}
	}
	if err := s.Check([]byte(`{"schema":"x","a_bps":1,"b":[{"n":2}]}`), "Doc"); err != nil {
		t.Errorf("a good document: %v", err)
	}
}
