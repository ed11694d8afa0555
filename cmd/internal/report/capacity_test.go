package report

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/estimator"
)

func sampleCapacity() estimator.Capacity {
	return estimator.Capacity{
		Estimate: 19.815e6, Lower: 19.7e6, Upper: 19.9e6, Sustained: 19.8e6, BinWidth: 0.1e6,
		Verdict: estimator.VerdictEasyPath, PrelimMean: 19.82e6, PrelimStd: 0.05e6, Overhead: 14,
		NoiseFloor: 2500 * time.Nanosecond, MinDispersion: 605600 * time.Nanosecond, KernelToUser: 14 * time.Microsecond,
		Source: dump.SourceEBPF, Trains: 45, Chosen: -1,
	}
}

func TestCapacityFormatTokens(t *testing.T) {
	info := CapacityInfo{Duration: 3500 * time.Millisecond}
	var b bytes.Buffer
	err := CapacityFormat(&b, `%be %bl %bu %bw %bs %bp|%pm %ps|%am %AM|%pd %ul %nf|%ts %lo %du %nt 100%%\n`, info, sampleCapacity())
	if err != nil {
		t.Fatal(err)
	}
	want := "19.82 19.70 19.90 0.10 19.80 -|19.82 0.05|" +
		string(rune('0'+int(estimator.VerdictEasyPath))) + " easy path|605.60 14.00 2.50|ebpf 14.00 3.50 45 100%\n"
	if b.String() != want {
		t.Fatalf("got  %q\nwant %q", b.String(), want)
	}
	for _, bad := range []string{"%zz", "%b"} {
		if err := CapacityFormat(&b, bad, info, sampleCapacity()); err == nil {
			t.Errorf("format %q: no error", bad)
		}
	}
}

func TestCapacityTextSaysTheLayer(t *testing.T) {
	var b bytes.Buffer
	CapacityText(&b, CapacityInfo{From: "10.77.0.1", To: "10.77.0.2", Path: "agent -> client", Size: 1500}, sampleCapacity())
	for _, want := range []string{"at the IP layer", "19.82 Mbit/s", "easy path", "ebpf", "14.0 B per packet"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}
