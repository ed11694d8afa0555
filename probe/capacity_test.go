package probe

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/estimator"
	"github.com/probe-dev/probe/probe/internal/wire"
)

// A quick capacity run over loopback, both ways: every phase's trains come
// back complete, with both ends' software stamps, each train once to the
// dump hook, and the progress reaches the end. (Loopback has no bottleneck,
// so no figure is asserted here; the testbed tests do that.)
func TestCapacityOverLoopback(t *testing.T) {
	var log logLines
	_, addr := startAgent(t, ServerConfig{Logger: slog.New(slog.NewTextHandler(&log, nil))})
	for _, reverse := range []bool{false, true} {
		c, err := Dial(context.Background(), addr, ClientConfig{})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[uint32]bool{}
		var last Progress
		res, err := c.Capacity(context.Background(), CapacityConfig{
			Reverse: reverse, Quick: true, Source: estimator.AutoSource,
			OnTrain:    func(tr *dump.Train) error { seen[tr.ID] = true; return nil },
			OnProgress: func(p Progress) { last = p },
		})
		c.Close()
		if err != nil {
			t.Fatalf("reverse=%v: %v", reverse, err)
		}
		phases := map[dump.Phase]int{}
		for _, tr := range res.Trains {
			phases[tr.Phase]++
			if !seen[tr.ID] {
				t.Fatalf("train %d never reached OnTrain", tr.ID)
			}
			for i := range tr.Rx {
				if tr.Rx[i].Has(dump.SourceSW) && !tr.Tx[i].Has(dump.SourceUser) {
					t.Fatalf("train %d packet %d: received but no send stamp", tr.ID, i)
				}
			}
		}
		if phases[dump.PhaseCalibrate] == 0 || phases[dump.PhasePrelim] == 0 || phases[dump.PhaseTwo] == 0 {
			t.Fatalf("reverse=%v: trains per phase %v", reverse, phases)
		}
		if len(seen) != len(res.Trains) || last.Fraction < 0.99 || last.Phase != dump.PhaseTwo {
			t.Fatalf("reverse=%v: %d trains, %d seen, last progress %+v", reverse, len(res.Trains), len(seen), last)
		}
		// The agent's log names the side that sends the trains.
		want := map[bool]string{false: "sender=agent", true: "sender=client"}[reverse]
		if l := log.last("capacity session"); !strings.Contains(l, want) {
			t.Fatalf("reverse=%v: the agent logged %q, want %s", reverse, l, want)
		}
	}
}

// logLines is a log the agent writes to while the test reads it.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, string(b))
	return len(b), nil
}

// last is the newest line that holds s, or "".
func (l *logLines) last(s string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.lines) - 1; i >= 0; i-- {
		if strings.Contains(l.lines[i], s) {
			return l.lines[i]
		}
	}
	return ""
}

// The agent refuses trains it should not send, and keeps serving.
func TestCapacityRefusals(t *testing.T) {
	_, addr := startAgent(t, ServerConfig{Limits: Limits{MaxPackets: 500}})
	open := func() (*Client, *capacityEnd) {
		c, err := Dial(context.Background(), addr, ClientConfig{Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if err := c.fc.Write(&wire.Message{Open: &wire.Open{Mode: wire.ModeCapacity, Capacity: &wire.CapacityParams{}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.expect("opened"); err != nil {
			t.Fatal(err)
		}
		return c, nil
	}
	cases := []struct {
		specs []wire.TrainSpec
		want  string
	}{
		{[]wire.TrainSpec{{ID: 1, N: 10, Size: 1500}}, "no confirmed hello"},
		{[]wire.TrainSpec{{ID: 1, N: MaxTrainLen + 1, Size: 1500}}, "train of 101 packets"},
		{[]wire.TrainSpec{{ID: 1, N: 10, Size: 20}}, "packet size 20"},
		{[]wire.TrainSpec{{ID: 1, N: 10, Size: 1500, At: -time.Second}}, "train start"},
		{[]wire.TrainSpec{{ID: 1, N: 100, Size: 1500}, {ID: 2, N: 100, Size: 1500}, {ID: 3, N: 100, Size: 1500},
			{ID: 4, N: 100, Size: 1500}, {ID: 5, N: 100, Size: 1500, At: time.Second}, {ID: 6, N: 100, Size: 1500, At: time.Second}}, "exceed 500 packets"},
	}
	for _, tc := range cases {
		c, _ := open()
		c.fc.Write(&wire.Message{SendTrains: &wire.SendTrains{Trains: tc.specs}})
		_, err := c.expect("trains_sent")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err %v, want %q", tc.specs[0], err, tc.want)
		}
	}
	echoOK(t, addr, nil)
}
