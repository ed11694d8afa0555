package monitor

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// slots keeps pScheduler's class rules at run time: per end point, an
// exclusive run holds it alone against exclusive and normal runs, normal
// runs share it, background runs ignore it. An exclusive run waiting for an
// end point holds back new normal runs there, so that a stream of latency
// tests cannot starve it (a writer-preferring lock over several end points,
// taken all at once so that two tests cannot deadlock).
type slots struct {
	mu      sync.Mutex
	ends    map[string]*endPoint
	changed chan struct{} // closed and replaced on every release
}

type endPoint struct {
	exclusive string // the exclusive run holding it, "" none
	normal    map[string]int
	waiting   map[string]int // exclusive runs waiting for it
}

func newSlots() *slots {
	return &slots{ends: map[string]*endPoint{}, changed: make(chan struct{})}
}

func (s *slots) end(name string) *endPoint {
	e := s.ends[name]
	if e == nil {
		e = &endPoint{normal: map[string]int{}, waiting: map[string]int{}}
		s.ends[name] = e
	}
	return e
}

// blocker says what keeps a run of class c by test from its end points now,
// "" when nothing does; s.mu is held.
func (s *slots) blocker(test string, c Class, ends []string) string {
	for _, n := range ends {
		e := s.end(n)
		switch c {
		case Exclusive:
			if e.exclusive != "" {
				return fmt.Sprintf("end point %s held by exclusive test %s", n, e.exclusive)
			}
			for t := range e.normal {
				return fmt.Sprintf("end point %s held by normal test %s", n, t)
			}
		case Normal:
			if e.exclusive != "" {
				return fmt.Sprintf("end point %s held by exclusive test %s", n, e.exclusive)
			}
			for t := range e.waiting {
				if t != test {
					return fmt.Sprintf("end point %s reserved for exclusive test %s", n, t)
				}
			}
		}
	}
	return ""
}

// acquire takes the end points for a run of class c by test, waiting until
// deadline at most. It returns the release function, or why it could not.
func (s *slots) acquire(ctx context.Context, test string, c Class, ends []string, deadline time.Time) (func(), string) {
	if c == Background {
		return func() {}, ""
	}
	s.mu.Lock()
	if c == Exclusive {
		for _, n := range ends {
			s.end(n).waiting[test]++
		}
	}
	unwait := func() {
		if c == Exclusive {
			for _, n := range ends {
				e := s.end(n)
				if e.waiting[test]--; e.waiting[test] <= 0 {
					delete(e.waiting, test)
				}
			}
		}
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		why := s.blocker(test, c, ends)
		if why == "" {
			unwait()
			s.take(test, c, ends)
			s.mu.Unlock()
			var once sync.Once
			return func() { once.Do(func() { s.release(test, c, ends) }) }, ""
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			s.mu.Lock()
			why := s.blocker(test, c, ends)
			if why == "" {
				continue // freed at the very end: take it
			}
			unwait()
			s.changed = closeAndRenew(s.changed) // a normal run held back may go now
			s.mu.Unlock()
			return nil, why
		case <-ctx.Done():
			s.mu.Lock()
			unwait()
			s.changed = closeAndRenew(s.changed)
			s.mu.Unlock()
			return nil, "the monitor stopped"
		}
		s.mu.Lock()
	}
}

func (s *slots) take(test string, c Class, ends []string) {
	for _, n := range ends {
		e := s.end(n)
		if c == Exclusive {
			e.exclusive = test
		} else {
			e.normal[test]++
		}
	}
}

func (s *slots) release(test string, c Class, ends []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range ends {
		e := s.end(n)
		if c == Exclusive {
			e.exclusive = ""
		} else if e.normal[test]--; e.normal[test] <= 0 {
			delete(e.normal, test)
		}
	}
	s.changed = closeAndRenew(s.changed)
}

func closeAndRenew(ch chan struct{}) chan struct{} {
	close(ch)
	return make(chan struct{})
}
