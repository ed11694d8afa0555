package main

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/probe"
	"golang.org/x/sys/unix"
)

// progress shows how far a capacity run is: a bar on a terminal, and on
// SIGUSR1 one line "progress%,PHASE,best-estimate" (Mbit/s) for scripts.
type progress struct {
	mu   sync.Mutex
	last probe.Progress
	tty  bool
	sig  chan os.Signal
	done chan struct{}
}

func newProgress() *progress {
	_, err := unix.IoctlGetTermios(int(os.Stderr.Fd()), unix.TCGETS)
	p := &progress{tty: err == nil, sig: make(chan os.Signal, 1), done: make(chan struct{})}
	signal.Notify(p.sig, syscall.SIGUSR1)
	go func() {
		for {
			select {
			case <-p.sig:
				p.mu.Lock()
				l := p.last
				p.mu.Unlock()
				fmt.Fprintf(os.Stderr, "%.0f%%,%s,%.2f\n", 100*l.Fraction, phaseName(l.Phase), l.Estimate/1e6)
			case <-p.done:
				return
			}
		}
	}()
	return p
}

func (p *progress) update(pr probe.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last = pr
	if p.tty {
		const width = 30
		n := int(pr.Fraction * width)
		fmt.Fprintf(os.Stderr, "\r[%s%s] %3.0f%% %-11s %8.2f Mbit/s", strings.Repeat("=", n), strings.Repeat(" ", width-n),
			100*pr.Fraction, phaseName(pr.Phase), pr.Estimate/1e6)
	}
}

func (p *progress) stop() {
	signal.Stop(p.sig)
	close(p.done)
	if p.tty {
		fmt.Fprint(os.Stderr, "\r\033[K")
	}
}

// timedProgress shows, on a terminal only, how much of a run of known
// length has passed (echo -d, tcp and quic -t); stop clears the line.
func timedProgress(what string, total time.Duration) (stop func()) {
	if _, err := unix.IoctlGetTermios(int(os.Stderr.Fd()), unix.TCGETS); err != nil || total < 2*time.Second {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				fmt.Fprint(os.Stderr, "\r\033[K")
				return
			case <-t.C:
				const width = 30
				f := min(time.Since(start).Seconds()/total.Seconds(), 1)
				n := int(f * width)
				fmt.Fprintf(os.Stderr, "\r[%s%s] %3.0f%% %s %.0f of %.0f s", strings.Repeat("=", n), strings.Repeat(" ", width-n),
					100*f, what, time.Since(start).Seconds(), total.Seconds())
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			<-finished
		})
	}
}

// phaseName says "starting" before the first batch has reported a phase.
func phaseName(p dump.Phase) string {
	if p == 0 {
		return "starting"
	}
	return p.String()
}
