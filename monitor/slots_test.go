package monitor

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestSlotsClasses(t *testing.T) {
	s := newSlots()
	ctx := context.Background()
	soon := func() time.Time { return time.Now().Add(50 * time.Millisecond) }

	relA, why := s.acquire(ctx, "lat-a", Normal, []string{"m", "a"}, soon())
	if relA == nil {
		t.Fatalf("first normal test refused: %s", why)
	}
	relB, _ := s.acquire(ctx, "lat-b", Normal, []string{"m", "b"}, soon())
	if relB == nil {
		t.Fatal("normal tests on a shared end point must run together")
	}
	if rel, why := s.acquire(ctx, "tcp-a", Exclusive, []string{"m", "a"}, soon()); rel != nil || !strings.Contains(why, "normal test") {
		t.Fatalf("exclusive test beside normal ones: got a slot=%v, %q", rel != nil, why)
	}
	if rel, _ := s.acquire(ctx, "load", Background, []string{"m", "a"}, soon()); rel == nil {
		t.Fatal("a background test must always run")
	}
	// An exclusive test waiting holds back new normal ones, and gets the
	// end points once the running ones end.
	got := make(chan func(), 1)
	go func() {
		rel, _ := s.acquire(ctx, "tcp-c", Exclusive, []string{"m", "c"}, time.Now().Add(2*time.Second))
		got <- rel
	}()
	for waiting := false; !waiting; time.Sleep(time.Millisecond) {
		s.mu.Lock()
		waiting = s.end("c").waiting["tcp-c"] > 0
		s.mu.Unlock()
	}
	if rel, why := s.acquire(ctx, "lat-c", Normal, []string{"m", "c"}, soon()); rel != nil || !strings.Contains(why, "reserved for exclusive test tcp-c") {
		t.Fatalf("normal test while an exclusive one waits: slot=%v, %q", rel != nil, why)
	}
	relA()
	relB()
	relC := <-got
	if relC == nil {
		t.Fatal("the waiting exclusive test got no slot once the normal ones ended")
	}
	if rel, why := s.acquire(ctx, "tcp-d", Exclusive, []string{"m", "d"}, soon()); rel != nil || !strings.Contains(why, "exclusive test tcp-c") {
		t.Fatalf("two exclusive tests sharing end point m: slot=%v, %q", rel != nil, why)
	}
	// Exclusive tests on disjoint end points run together.
	if rel, _ := s.acquire(ctx, "tcp-x", Exclusive, []string{"x", "y"}, soon()); rel == nil {
		t.Fatal("exclusive tests without a shared end point must run together")
	}
	relC()
	if rel, _ := s.acquire(ctx, "lat-c", Normal, []string{"m", "c"}, soon()); rel == nil {
		t.Fatal("normal test refused after the exclusive one ended")
	}
}
