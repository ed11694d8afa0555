package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/probe-dev/probe/testbed"
)

// linkWatch is what a run through a shaped testbed link looked like from
// the link's side and the sender's: whether the tbf queue held packets (the
// link was the limit) and how long the sending process's threads waited on
// a run queue (the host's CPU was). A goodput under the link's is the
// path's only when the link was busy; when it idled while the sender
// waited for a CPU, the sender was starved and the figure says nothing of
// the path.
type linkWatch struct {
	samples, busy int           // qdisc samples in the data phase, and those with a backlog
	runDelay      time.Duration // the sender's threads' run-queue wait, summed
	span          time.Duration // from the first sample with a backlog to the last
	overlimits    uint64        // times tbf held a packet back
	packets       uint64        // packets the qdisc sent
}

// idleShare is the share of the data phase the link's queue was empty.
func (w linkWatch) idleShare() float64 {
	if w.samples == 0 {
		return 1
	}
	return 1 - float64(w.busy)/float64(w.samples)
}

// starved says whether the run's shortfall is the sender's CPU: the link
// idled in more than 3 % of the samples, and the sender's threads waited on
// run queues for at least half as long as the link idled.
func (w linkWatch) starved() bool {
	idle := time.Duration(w.idleShare() * float64(w.span))
	return w.samples > 0 && w.idleShare() > 0.03 && w.runDelay >= idle/2
}

func (w linkWatch) String() string {
	return fmt.Sprintf("link queue empty in %.1f %% of %d samples over %.2f s, tbf overlimits %d for %d packets, sender's run-queue wait %.2f s",
		100*w.idleShare(), w.samples, w.span.Seconds(), w.overlimits, w.packets, w.runDelay.Seconds())
}

// measureWatched is measureReceived with a linkWatch of the sender's (b's)
// bottleneck egress, sampled every 5 ms while probe measure runs in b.
func measureWatched(t *testing.T, tb *testbed.Testbed, args ...string) (out string, rxBytes, rxPackets uint64, w linkWatch) {
	t.Helper()
	b0, p0, err := tb.A.RxCounters()
	if err != nil {
		t.Fatal(err)
	}
	q0, err := tb.QdiscStats(tb.B)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(probeBin, append([]string{"measure", "-h", tb.A.Addr.String(), "--ebpf", "on"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := tb.B.Start(cmd); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		delays := map[string]time.Duration{} // per thread, the last read
		var first, last time.Time
		var busyIdx []bool
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				// The data phase: from the first sample with a backlog to
				// the last.
				lo, hi := -1, -1
				for i, b := range busyIdx {
					if b {
						if lo < 0 {
							lo = i
						}
						hi = i
					}
				}
				if lo >= 0 {
					w.samples = hi - lo + 1
					for _, b := range busyIdx[lo : hi+1] {
						if b {
							w.busy++
						}
					}
					w.span = last.Sub(first)
				}
				for _, d := range delays {
					w.runDelay += d
				}
				return
			case now := <-tick.C:
				threadDelays(cmd.Process.Pid, delays)
				st, err := tb.QdiscStats(tb.B)
				if err != nil {
					continue
				}
				busy := st.BacklogPackets > 0
				if busy {
					if first.IsZero() {
						first = now
					}
					last = now
				}
				busyIdx = append(busyIdx, busy)
			}
		}
	}()
	werr := cmd.Wait()
	close(done)
	wg.Wait()
	if werr != nil {
		t.Fatalf("measure: %v\n%s", werr, stderr.String())
	}
	q1, err := tb.QdiscStats(tb.B)
	if err != nil {
		t.Fatal(err)
	}
	w.overlimits, w.packets = q1.Overlimits-q0.Overlimits, q1.Packets-q0.Packets
	b1, p1, _ := tb.A.RxCounters()
	return stdout.String(), b1 - b0, p1 - p0, w
}

// threadDelays records, per thread of pid, its run-queue wait so far (the
// second field of /proc/PID/task/TID/schedstat, ns); a thread that has
// exited keeps its last reading.
func threadDelays(pid int, delays map[string]time.Duration) {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "task")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "schedstat"))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) < 2 {
			continue
		}
		if ns, err := strconv.ParseInt(f[1], 10, 64); err == nil {
			delays[e.Name()] = time.Duration(ns)
		}
	}
}

func TestLinkWatchVerdict(t *testing.T) {
	for _, c := range []struct {
		w    linkWatch
		want bool
	}{
		{linkWatch{samples: 800, busy: 790, span: 4 * time.Second, runDelay: 3 * time.Second}, false}, // link busy: the path's
		{linkWatch{samples: 800, busy: 640, span: 4 * time.Second, runDelay: 2 * time.Second}, true},  // idle 0.8 s, waited 2 s
		{linkWatch{samples: 800, busy: 640, span: 4 * time.Second, runDelay: 100 * time.Millisecond}, false},
		{linkWatch{}, false}, // nothing sampled: no evidence of starvation
	} {
		if got := c.w.starved(); got != c.want {
			t.Errorf("%v: starved %v, want %v", c.w, got, c.want)
		}
	}
}
