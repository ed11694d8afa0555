package collector

import (
	"context"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/probe-dev/probe/bpf"
)

// fakeRing behaves like ringbuf.Reader: ReadInto blocks until a record, a
// Flush or Close; after a Flush it returns what is queued, then ErrFlushed.
type fakeRing struct {
	mu      sync.Mutex
	cond    *sync.Cond
	queue   [][]byte
	flushed bool
	closed  bool
}

func newFakeRing() *fakeRing {
	r := &fakeRing{}
	r.cond = sync.NewCond(&r.mu)
	return r
}

func (r *fakeRing) push(raw []byte) {
	r.mu.Lock()
	r.queue = append(r.queue, raw)
	r.mu.Unlock()
	r.cond.Broadcast()
}

func (r *fakeRing) ReadInto(rec *ringbuf.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		switch {
		case r.closed:
			return ringbuf.ErrClosed
		case len(r.queue) > 0:
			rec.RawSample = append(rec.RawSample[:0], r.queue[0]...)
			r.queue = r.queue[1:]
			return nil
		case r.flushed:
			r.flushed = false
			return ringbuf.ErrFlushed
		}
		r.cond.Wait()
	}
}

func (r *fakeRing) AvailableBytes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, q := range r.queue {
		n += int(ringRecordLen(len(q)))
	}
	return n
}

func (r *fakeRing) Flush() error {
	r.mu.Lock()
	r.flushed = true
	r.mu.Unlock()
	r.cond.Broadcast()
	return nil
}

func (r *fakeRing) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cond.Broadcast()
	return nil
}

// newFakeTimestamper runs the reader on r, with no kernel objects.
func newFakeTimestamper(t *testing.T, r ring) *Timestamper {
	t.Helper()
	ts := &Timestamper{
		attached: make(map[attachKey]*attachment),
		sinks:    make(map[uint32]func(*ProbeEvent)),
	}
	ts.start(r)
	t.Cleanup(func() { ts.Close() })
	return ts
}

// encodeEvent lays ev out as the kernel does (bpf/probe.c).
func encodeEvent(ev ProbeEvent) []byte {
	b := make([]byte, bpf.ProbeEventSize)
	le := binary.LittleEndian
	le.PutUint64(b[bpf.ProbeEventTs:], uint64(ev.Time))
	le.PutUint32(b[bpf.ProbeEventSession:], ev.Session)
	le.PutUint32(b[bpf.ProbeEventSeq:], ev.Seq)
	le.PutUint32(b[bpf.ProbeEventIfindex:], ev.Ifindex)
	le.PutUint16(b[bpf.ProbeEventIPLen:], ev.IPLen)
	le.PutUint16(b[bpf.ProbeEventIndex:], ev.Index)
	b[bpf.ProbeEventDir] = byte(ev.Dir)
	b[bpf.ProbeEventKind] = byte(ev.Kind)
	b[bpf.ProbeEventFlags] = ev.Flags
	return b
}

func TestDecodeProbeEvent(t *testing.T) {
	want := ProbeEvent{
		Time: 0x0102030405060708, Session: 0xdeadbeef, Seq: 7, Index: 0x1234,
		Kind: KindReply, Flags: 0x5a, Dir: Egress, IPLen: 1500, Ifindex: 42,
	}
	var got ProbeEvent
	if !decodeProbeEvent(encodeEvent(want), &got) {
		t.Fatal("decode failed")
	}
	if got != want {
		t.Errorf("decoded %+v, want %+v", got, want)
	}
	if decodeProbeEvent(make([]byte, bpf.ProbeEventSize-1), &got) {
		t.Error("decoded a short record")
	}
}

func TestDecodeProbeEventAllocs(t *testing.T) {
	raw := encodeEvent(ProbeEvent{Session: 1, Seq: 2})
	var ev ProbeEvent
	if n := testing.AllocsPerRun(1000, func() { decodeProbeEvent(raw, &ev) }); n != 0 {
		t.Errorf("decode allocates %v times per event, want 0", n)
	}
}

// The whole per-event path, sink lookup included, must not allocate either.
func TestDeliverAllocs(t *testing.T) {
	ts := &Timestamper{sinks: map[uint32]func(*ProbeEvent){1: func(*ProbeEvent) {}}}
	raw := encodeEvent(ProbeEvent{Session: 1, Seq: 2})
	var ev ProbeEvent
	if n := testing.AllocsPerRun(1000, func() { ts.deliver(raw, &ev) }); n != 0 {
		t.Errorf("deliver allocates %v times per event, want 0", n)
	}
}

func TestDirectionString(t *testing.T) {
	for d, want := range map[Direction]string{Ingress: "ingress", Egress: "egress", 7: "direction(7)"} {
		if got := d.String(); got != want {
			t.Errorf("Direction(%d).String() = %q, want %q", d, got, want)
		}
	}
}

func TestRingRecordLen(t *testing.T) {
	for n, want := range map[int]uint64{0: 8, 1: 16, 8: 16, 32: 40, 33: 48} {
		if got := ringRecordLen(n); got != want {
			t.Errorf("ringRecordLen(%d) = %d, want %d", n, got, want)
		}
	}
}

func TestFlushDeliversQueuedEvents(t *testing.T) {
	r := newFakeRing()
	ts := newFakeTimestamper(t, r)
	var got []ProbeEvent
	ts.sinks[5] = func(ev *ProbeEvent) { got = append(got, *ev) }
	for seq := uint32(1); seq <= 100; seq++ {
		r.push(encodeEvent(ProbeEvent{Session: 5, Seq: seq}))
		r.push(encodeEvent(ProbeEvent{Session: 6, Seq: seq})) // no sink
	}
	r.push(make([]byte, 3)) // malformed
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// Flush returning orders the sink's writes before this read.
	if len(got) != 100 {
		t.Fatalf("sink got %d events after Flush, want 100", len(got))
	}
	for i, ev := range got {
		if ev.Seq != uint32(i+1) {
			t.Fatalf("event %d has seq %d, want %d", i, ev.Seq, i+1)
		}
	}
	if n := ts.unclaimed.Load(); n != 100 {
		t.Errorf("unclaimed = %d, want 100", n)
	}
	if n := ts.malformed.Load(); n != 1 {
		t.Errorf("malformed = %d, want 1", n)
	}
	// An idle ring flushes at once.
	if err := ts.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// Flush must also wait for the event the reader has taken from the ring
// but not yet handed to its sink.
func TestFlushWaitsForInFlightSink(t *testing.T) {
	r := newFakeRing()
	ts := newFakeTimestamper(t, r)
	entered := make(chan struct{})
	release := make(chan struct{})
	ts.sinks[1] = func(*ProbeEvent) {
		close(entered)
		<-release
	}
	r.push(encodeEvent(ProbeEvent{Session: 1}))
	<-entered // the ring is empty now, the event is in flight

	flushed := make(chan error, 1)
	go func() { flushed <- ts.Flush(context.Background()) }()
	select {
	case err := <-flushed:
		t.Fatalf("Flush returned (%v) while the sink was still running", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
}

func TestRemoveSessionWaitsForSink(t *testing.T) {
	r := newFakeRing()
	ts := newFakeTimestamper(t, r)
	entered := make(chan struct{})
	release := make(chan struct{})
	var mu sync.Mutex
	calls := 0
	ts.sinks[1] = func(*ProbeEvent) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if n == 1 {
			close(entered)
			<-release
		}
	}
	r.push(encodeEvent(ProbeEvent{Session: 1}))
	<-entered

	removed := make(chan struct{})
	go func() {
		// No kernel map here: the sink half of RemoveSession.
		if !ts.removeSink(1) {
			t.Error("removeSink(1) found no sink")
		}
		close(removed)
	}()
	select {
	case <-removed:
		t.Fatal("removal finished while the sink was still running")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	<-removed
	r.push(encodeEvent(ProbeEvent{Session: 1}))
	if err := ts.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 1 {
		t.Errorf("sink called %d times, want 1: called after its removal", calls)
	}
}

func TestFlushHonoursContext(t *testing.T) {
	r := newFakeRing()
	ts := newFakeTimestamper(t, r)
	release := make(chan struct{})
	defer close(release)
	ts.sinks[1] = func(*ProbeEvent) { <-release }
	r.push(encodeEvent(ProbeEvent{Session: 1}))
	r.push(encodeEvent(ProbeEvent{Session: 1}))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := ts.Flush(ctx); err == nil {
		t.Fatal("Flush returned nil with the sink blocked")
	}
	ts.flushMu.Lock()
	defer ts.flushMu.Unlock()
	if len(ts.flushes) != 0 || ts.nflushes.Load() != 0 {
		t.Errorf("cancelled flush left queued: %d (count %d)", len(ts.flushes), ts.nflushes.Load())
	}
}

func TestCloseStopsReader(t *testing.T) {
	r := newFakeRing()
	ts := newFakeTimestamper(t, r)
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ts.done:
	default:
		t.Fatal("reader still running after Close")
	}
	if err := ts.Flush(context.Background()); err == nil {
		t.Error("Flush after Close returned nil")
	}
	if err := ts.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
