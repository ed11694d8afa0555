package report

import (
	"bytes"
	"encoding/binary"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/estimator"
)

// values reads fuzz bytes as a stream of int64s, zero once spent.
type values struct{ b []byte }

func (v *values) next() int64 {
	if len(v.b) < 8 {
		x := int64(0)
		if len(v.b) > 0 {
			x = int64(int8(v.b[0])) // small values, negative ones too
			v.b = v.b[1:]
		}
		return x
	}
	x := int64(binary.BigEndian.Uint64(v.b))
	v.b = v.b[8:]
	return x
}

// small is next in [0, n).
func (v *values) small(n int64) int64 {
	x := v.next() % n
	if x < 0 {
		x = -x
	}
	return x
}

// hostileTrains builds well-formed trains of hostile values from fuzz
// bytes: reversed, equal and huge timestamps, odd sizes and phases.
func hostileTrains(b []byte) []dump.Train {
	v := &values{b}
	trains := make([]dump.Train, v.small(40)+1)
	for i := range trains {
		t := &trains[i]
		n := int(v.small(100) + 1)
		t.ID, t.Phase, t.Size, t.Dups = uint32(i), dump.Phase(v.small(6)), int(v.next()%100000), int(v.small(5))
		t.Tx, t.Rx = make([]dump.Stamps, n), make([]dump.Stamps, n)
		base, step := v.next(), v.next()%1_000_000
		for k := range n {
			for s := range dump.NumSources {
				if v.small(4) != 0 {
					t.Tx[k][s] = base + int64(k)*step
					t.Rx[k][s] = base + v.next()%10_000_000 + int64(k)*v.next()%1_000_000
				}
			}
		}
	}
	return trains
}

// hostileEcho builds a well-formed echo point of hostile values.
func hostileEcho(b []byte) EchoMeasurement {
	v := &values{b}
	p := dump.EchoPoint{Size: int(v.next()), Wait: time.Duration(v.next()), Count: int(v.next()), IPHeader: int(v.next()),
		AgentSocketDrops: uint64(v.next()), ClientSocketDrops: uint64(v.next()), AgentLimited: int(v.next()), AgentDuplicates: int(v.next())}
	recs := make([]dump.EchoRecord, v.small(300))
	for i := range recs {
		r := &recs[i]
		r.Seq, r.Size, r.Replies = uint32(v.small(400)), int(v.next()%70000), int(v.next()%4)
		for s := range dump.NumSources {
			r.ClientTx[s], r.ClientRx[s], r.AgentRx[s], r.AgentTx[s] = v.next(), v.next(), v.next(), v.next()
		}
		r.Scheduled, r.ClientOrder, r.AgentOrder, r.Corrupt = v.next(), uint32(v.small(400)), uint32(v.small(400)), uint8(v.small(4))
	}
	return EchoMeasurement{Point: p, Records: recs}
}

// bounded runs fn and fails if it does not return within a few seconds: the
// estimator must not loop on any input.
func bounded(t *testing.T, what string, fn func()) {
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s still running after 10 s", what)
	}
}

// FuzzEstimate: well-formed records of hostile values (reversed, equal and
// huge timestamps, huge counts, any bin width) give an error or a report,
// never a panic or a loop, as `estimate -r` runs them.
func FuzzEstimate(f *testing.F) {
	seed := make([]byte, 0, 4096)
	for i := range 512 {
		seed = binary.BigEndian.AppendUint64(seed, uint64(i)*7919)
	}
	f.Add(seed, 0.0, uint8(0))
	f.Add(seed[:100], 0.1, uint8(1))
	f.Add([]byte{}, math.NaN(), uint8(2))
	f.Add(bytes.Repeat([]byte{0xff}, 800), 1e-300, uint8(3))
	f.Add(bytes.Repeat([]byte{0x7f, 0, 0, 0, 0, 0, 0, 1}, 100), math.Inf(1), uint8(4))
	f.Fuzz(func(t *testing.T, b []byte, binWidth float64, src uint8) {
		source := dump.Source(src % (uint8(estimator.AutoSource) + 1))
		trains := hostileTrains(b)
		bounded(t, "capacity estimate", func() {
			est, err := EstimateCapacity(trains, source, binWidth)
			if err == nil {
				Capacity(io.Discard, "", false, "", CapacityInfo{}, est)
				Capacity(io.Discard, "", true, "", CapacityInfo{}, est)
			}
		})
		m := hostileEcho(b)
		bounded(t, "echo report", func() {
			for _, format := range []string{"text", "json", "csv"} {
				Echo(io.Discard, EchoInfo{}, []EchoMeasurement{m}, source, format, "")
			}
		})
	})
}

// FuzzCapacityFormat: any -f format string prints or is refused, and
// refusals name the token.
func FuzzCapacityFormat(f *testing.F) {
	for _, s := range []string{`%be %bl %bu %bw %bs %bp|%pm %ps|%am %AM|%pd %ul %nf|%ts %lo %du %nt 100%%\n`, "%", "%b", "%%", `\`, `\n\t%be`, "%zz"} {
		f.Add(s)
	}
	c := estimator.Capacity{Estimate: 19.8e6, Verdict: estimator.VerdictEasyPath}
	f.Fuzz(func(t *testing.T, format string) {
		var b bytes.Buffer
		err := CapacityFormat(&b, format, CapacityInfo{Duration: time.Second}, c)
		if err != nil && !strings.Contains(err.Error(), "format") {
			t.Fatalf("error %q does not say it is the format's", err)
		}
		if err == nil && b.Len() > 64*len(format)+64 {
			t.Fatalf("%d bytes printed for a %d-byte format", b.Len(), len(format))
		}
	})
}
