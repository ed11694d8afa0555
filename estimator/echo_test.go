package estimator

import (
	"strings"
	"testing"
	"time"

	"github.com/probe-dev/probe/collector/dump"
)

// rec builds a probe answered with the given client and agent times (µs) in
// one source.
func rec(src dump.Source, ctx, arx, atx, crx int64) dump.EchoRecord {
	var r dump.EchoRecord
	r.Replies = 1
	r.ClientTx[src], r.AgentRx[src], r.AgentTx[src], r.ClientRx[src] = ctx*1000, arx*1000, atx*1000, crx*1000
	r.ClientTx[dump.SourceUser], r.ClientRx[dump.SourceUser] = ctx*1000, crx*1000+5000
	return r
}

func TestEchoSubtractsTurnaround(t *testing.T) {
	recs := []dump.EchoRecord{
		rec(dump.SourceEBPF, 100, 150, 160, 200), // 100 - 10 = 90 µs
		rec(dump.SourceEBPF, 300, 350, 380, 420), // 120 - 30 = 90
		rec(dump.SourceEBPF, 500, 600, 605, 700), // 200 - 5 = 195
		{Seq: 3},                                 // lost
	}
	s, err := Echo(recs, AutoSource)
	if err != nil {
		t.Fatal(err)
	}
	if s.Sent != 4 || s.Received != 3 || s.Lost() != 1 || s.Unstamped != 0 {
		t.Fatalf("counts: %+v", s)
	}
	k := s.Kernel
	if k.Source() != "ebpf" || k.N != 3 || k.Min != 90*time.Microsecond || k.Median != 90*time.Microsecond ||
		k.Max != 195*time.Microsecond || k.Mean != 125*time.Microsecond {
		t.Fatalf("kernel rtt %+v", k)
	}
	// sample stddev of 90, 90, 195 µs: sqrt((35²+35²+70²)/2) = 60.62 µs
	if d := k.Stddev - 60622*time.Nanosecond; d < -time.Microsecond || d > time.Microsecond {
		t.Fatalf("stddev %v", k.Stddev)
	}
	// user space sees the whole round trip plus 5 µs, turnaround included
	if s.User.Min != 105*time.Microsecond || s.User.Max != 205*time.Microsecond {
		t.Fatalf("user rtt %+v", s.User)
	}
}

func TestEchoPrefersBestSourcePerEnd(t *testing.T) {
	r := rec(dump.SourceSW, 1000, 1050, 1060, 1100)
	r.ClientTx[dump.SourceEBPF], r.ClientRx[dump.SourceEBPF] = 1_010_000, 1_090_000
	s, err := Echo([]dump.EchoRecord{r}, AutoSource)
	if err != nil {
		t.Fatal(err)
	}
	if s.Kernel.Source() != "ebpf/sw" || s.Kernel.Min != 70*time.Microsecond {
		t.Fatalf("got %s %v, want ebpf/sw 70µs", s.Kernel.Source(), s.Kernel.Min)
	}
	// Forcing sw on both ends uses sw: 100 - 10.
	s, err = Echo([]dump.EchoRecord{r}, dump.SourceSW)
	if err != nil || s.Kernel.Min != 90*time.Microsecond {
		t.Fatalf("forced sw: %v %v", s.Kernel.Min, err)
	}
	// Forcing hw, which nobody has, is an error, not a number.
	if _, err := Echo([]dump.EchoRecord{r}, dump.SourceHW); err == nil || !strings.Contains(err.Error(), "hw") {
		t.Fatalf("forced hw: %v", err)
	}
}

func TestEchoCountsUnstampedAndDuplicates(t *testing.T) {
	a := rec(dump.SourceEBPF, 1, 10, 20, 40)
	a.Replies = 3
	b := rec(dump.SourceEBPF, 1, 10, 20, 40)
	b.AgentTx[dump.SourceEBPF] = 0 // its egress event was lost
	s, err := Echo([]dump.EchoRecord{a, b}, AutoSource)
	if err != nil {
		t.Fatal(err)
	}
	if s.Duplicates != 2 || s.Unstamped != 1 || s.Kernel.N != 1 {
		t.Fatalf("%+v", s)
	}
}

func TestEchoAllLost(t *testing.T) {
	_, err := Echo(make([]dump.EchoRecord, 5), AutoSource)
	if err == nil || !strings.Contains(err.Error(), "all 5 probes lost") {
		t.Fatalf("err = %v", err)
	}
}
