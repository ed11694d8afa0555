package collector

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/probe-dev/probe/bpf"
)

// Direction is where on an interface the TC program saw a packet.
type Direction uint8

const (
	Ingress Direction = 0
	Egress  Direction = 1
)

func (d Direction) String() string {
	switch d {
	case Ingress:
		return "ingress"
	case Egress:
		return "egress"
	}
	return fmt.Sprintf("direction(%d)", uint8(d))
}

// Want selects the events of a session the TC program records, by kind and
// direction; WantAll records every one.
type Want uint8

// WantAll records every event of a session.
const WantAll Want = 0

// WantEvent is the Want bit of probes of kind k seen in direction d, as
// bpf/probe.c tests it.
func WantEvent(k Kind, d Direction) Want { return 1 << ((uint(k)-1)*2 + uint(d)) }

// ProbeEvent is one probe packet seen by the TC program.
type ProbeEvent struct {
	Time    int64 // bpf_ktime_get_ns, CLOCK_MONOTONIC
	Session uint32
	Seq     uint32
	Index   uint16
	Kind    Kind
	Flags   uint8
	Dir     Direction
	IPLen   uint16 // IP total length, headers included
	Ifindex uint32
}

// What the probe objects need of the host (bpf/probe.c).
var probeNeeds = needs{caps: "CAP_BPF, CAP_NET_ADMIN", kernel: "5.8", what: "BPF ring buffer"}

// ring is the part of *ringbuf.Reader the timestamper uses, so that the
// dispatch and flush logic can be tested without a kernel.
type ring interface {
	ReadInto(*ringbuf.Record) error
	AvailableBytes() int
	Flush() error
	Close() error
}

// Timestamper timestamps the probe packets of registered sessions in the
// kernel, at TC ingress and egress of the attached interfaces, and hands
// each event to its session's sink.
type Timestamper struct {
	objs bpf.ProbeObjects
	ring ring
	done chan struct{} // closed when the reader goroutine returns

	// forceClsact skips TCX so that tests run the pre-6.6 path on new kernels.
	forceClsact bool

	mu       sync.Mutex // guards attached and closed
	attached map[attachKey]*attachment
	closed   bool

	// dispatchMu is held while a sink runs, so that RemoveSession can wait
	// for the last call of the sink it removes.
	dispatchMu sync.Mutex
	sinks      map[uint32]func(*ProbeEvent)

	flushMu  sync.Mutex
	flushes  []*flushReq
	stopped  bool
	stopErr  error
	nflushes atomic.Int32 // len(flushes), read without the lock per event

	// Bytes of the ring consumed so far; reader goroutine only.
	pos uint64

	unclaimed atomic.Uint64 // events whose session had no sink any more
	malformed atomic.Uint64 // records too short to be a probe_event
}

type flushReq struct {
	armed  bool
	target uint64 // pos that covers every record in the ring when armed
	done   chan error
}

// NewTimestamper loads the probe objects and starts the goroutine that
// reads the ring buffer. Nothing is attached yet.
func NewTimestamper() (*Timestamper, error) {
	// Only kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK. If this
	// fails, loading fails too and says why more plainly.
	_ = rlimit.RemoveMemlock()
	t := &Timestamper{
		attached: make(map[attachKey]*attachment),
		sinks:    make(map[uint32]func(*ProbeEvent)),
	}
	if err := bpf.LoadProbeObjects(&t.objs, nil); err != nil {
		return nil, loadError("load probe objects", probeNeeds, err)
	}
	rd, err := ringbuf.NewReader(t.objs.Events)
	if err != nil {
		t.objs.Close()
		return nil, fmt.Errorf("open probe event ring buffer: %w", err)
	}
	t.start(rd)
	return t, nil
}

func (t *Timestamper) start(r ring) {
	t.ring = r
	t.done = make(chan struct{})
	go t.read()
}

// AddSession makes the TC program record probes of session id whose UDP
// source or destination port is port, of the kinds and directions want
// selects. The reader goroutine calls sink for
// each of its events; sink must copy the event, which is reused, and must
// not call RemoveSession or Close.
func (t *Timestamper) AddSession(id uint32, port uint16, want Want, sink func(*ProbeEvent)) error {
	if sink == nil {
		return fmt.Errorf("add session %d: nil sink", id)
	}
	if port == 0 {
		return fmt.Errorf("add session %d: port 0", id)
	}
	t.dispatchMu.Lock()
	if _, ok := t.sinks[id]; ok {
		t.dispatchMu.Unlock()
		return fmt.Errorf("add session %d: already registered", id)
	}
	// The sink goes in before the kernel learns the session, so that no
	// event of it finds none.
	t.sinks[id] = sink
	t.dispatchMu.Unlock()

	if err := t.objs.Sessions.Update(id, bpf.ProbeSession{Port: port, Want: uint8(want)}, ebpf.UpdateNoExist); err != nil {
		t.dispatchMu.Lock()
		delete(t.sinks, id)
		t.dispatchMu.Unlock()
		return fmt.Errorf("add session %d: %w", id, err)
	}
	return nil
}

// RemoveSession stops recording session id. Once it returns, the sink is
// not called again; events still in the ring are dropped, so call Flush
// first to get them.
func (t *Timestamper) RemoveSession(id uint32) error {
	err := t.objs.Sessions.Delete(id)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("remove session %d: %w", id, err)
	}
	if !t.removeSink(id) {
		return fmt.Errorf("remove session %d: not registered", id)
	}
	return nil
}

// removeSink waits for a running sink call to end: taking dispatchMu does.
func (t *Timestamper) removeSink(id uint32) bool {
	t.dispatchMu.Lock()
	defer t.dispatchMu.Unlock()
	_, ok := t.sinks[id]
	delete(t.sinks, id)
	return ok
}

// Flush returns once every event that was in the ring buffer when it was
// called has been delivered to its sink.
func (t *Timestamper) Flush(ctx context.Context) error {
	f := &flushReq{done: make(chan error, 1)}
	t.flushMu.Lock()
	if t.stopped {
		err := t.stopErr
		t.flushMu.Unlock()
		return stoppedError(err)
	}
	t.flushes = append(t.flushes, f)
	t.nflushes.Add(1)
	t.flushMu.Unlock()

	// Wakes the reader even when it waits for data, so that it answers.
	if err := t.ring.Flush(); err != nil {
		t.dropFlush(f)
		return fmt.Errorf("flush probe event ring buffer: %w", err)
	}
	select {
	case err := <-f.done:
		return err
	case <-ctx.Done():
		t.dropFlush(f)
		return fmt.Errorf("flush probe events: %w", ctx.Err())
	}
}

func (t *Timestamper) dropFlush(f *flushReq) {
	t.flushMu.Lock()
	defer t.flushMu.Unlock()
	for i, g := range t.flushes {
		if g == f {
			t.flushes = append(t.flushes[:i], t.flushes[i+1:]...)
			t.nflushes.Add(-1)
			return
		}
	}
}

func stoppedError(err error) error {
	if err != nil {
		return fmt.Errorf("probe event reader stopped: %w", err)
	}
	return fmt.Errorf("timestamper closed: %w", ringbuf.ErrClosed)
}

// Stats returns the probes recorded and the probes lost because the ring
// buffer was full, summed over CPUs; zeros if the map cannot be read.
func (t *Timestamper) Stats() (probes, lost uint64) {
	var perCPU []bpf.ProbeProbeStats
	if err := t.objs.Stats.Lookup(uint32(0), &perCPU); err != nil {
		return 0, 0
	}
	for _, s := range perCPU {
		probes += s.Probes
		lost += s.Lost
	}
	return probes, lost
}

// Close detaches every interface, stops the reader and frees the objects.
// It must not be called from a sink.
func (t *Timestamper) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	var errs []error
	for key, a := range t.attached {
		if err := a.detach(); err != nil {
			errs = append(errs, fmt.Errorf("detach ifindex %d: %w", key.ifindex, err))
		}
		delete(t.attached, key)
	}
	t.mu.Unlock()

	// Closing from here interrupts the reader's ReadInto with ErrClosed.
	if err := t.ring.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close probe event ring buffer: %w", err))
	}
	<-t.done
	t.flushMu.Lock()
	if t.stopErr != nil {
		errs = append(errs, stoppedError(t.stopErr))
	}
	t.flushMu.Unlock()
	if err := t.objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close probe objects: %w", err))
	}
	return errors.Join(errs...)
}

// ringRecordLen is the ring space of a record: an 8-byte header, then the
// data padded to 8 bytes.
func ringRecordLen(n int) uint64 {
	return 8 + uint64(n+7)&^7
}

// read is the reader goroutine: one Record and one ProbeEvent, reused, so
// that nothing is allocated per event.
func (t *Timestamper) read() {
	defer close(t.done)
	rec := ringbuf.Record{RawSample: make([]byte, 0, bpf.ProbeEventSize)}
	var ev ProbeEvent
	for {
		err := t.ring.ReadInto(&rec)
		switch {
		case err == nil:
			t.pos += ringRecordLen(len(rec.RawSample))
			t.deliver(rec.RawSample, &ev)
		case errors.Is(err, ringbuf.ErrFlushed):
		case errors.Is(err, ringbuf.ErrClosed):
			t.stop(nil)
			return
		default:
			t.stop(err)
			return
		}
		if t.nflushes.Load() > 0 {
			t.serveFlushes(err != nil)
		}
	}
}

func (t *Timestamper) deliver(raw []byte, ev *ProbeEvent) {
	if !decodeProbeEvent(raw, ev) {
		t.malformed.Add(1)
		return
	}
	t.dispatchMu.Lock()
	if sink := t.sinks[ev.Session]; sink != nil {
		sink(ev)
	} else {
		t.unclaimed.Add(1)
	}
	t.dispatchMu.Unlock()
}

// serveFlushes answers the flushes whose records have all been delivered.
// It runs on the reader goroutine between reads, when no record is in
// flight, so pos is exactly the ring's consumer position and everything
// before it has reached its sink. A flush is armed at the first such point
// after it was queued: the records in the ring then are the ones it waits
// for. drained says the reader just emptied the ring after a wake-up.
func (t *Timestamper) serveFlushes(drained bool) {
	avail := uint64(t.ring.AvailableBytes())
	t.flushMu.Lock()
	keep := t.flushes[:0]
	for _, f := range t.flushes {
		if !f.armed {
			f.armed, f.target = true, t.pos+avail
		}
		// An empty ring also ends the wait, in case pos and the ring's
		// position ever differ (e.g. a discarded record).
		if t.pos >= f.target || avail == 0 {
			f.done <- nil
			continue
		}
		keep = append(keep, f)
	}
	clear(t.flushes[len(keep):])
	t.flushes = keep
	t.nflushes.Store(int32(len(keep)))
	t.flushMu.Unlock()
	if len(keep) > 0 && drained {
		// Records arrived after the drain: make sure the reader wakes for them.
		_ = t.ring.Flush()
	}
}

// stop fails pending and future flushes once the reader has ended.
func (t *Timestamper) stop(err error) {
	t.flushMu.Lock()
	defer t.flushMu.Unlock()
	t.stopped, t.stopErr = true, err
	for _, f := range t.flushes {
		f.done <- stoppedError(err)
	}
	t.flushes = nil
	t.nflushes.Store(0)
}

// decodeProbeEvent decodes a struct probe_event (bpf/layout.go) into ev
// without allocating; it reports false when b is too short.
func decodeProbeEvent(b []byte, ev *ProbeEvent) bool {
	if len(b) < bpf.ProbeEventSize {
		return false
	}
	le := binary.LittleEndian
	ev.Time = int64(le.Uint64(b[bpf.ProbeEventTs:]))
	ev.Session = le.Uint32(b[bpf.ProbeEventSession:])
	ev.Seq = le.Uint32(b[bpf.ProbeEventSeq:])
	ev.Ifindex = le.Uint32(b[bpf.ProbeEventIfindex:])
	ev.IPLen = le.Uint16(b[bpf.ProbeEventIPLen:])
	ev.Index = le.Uint16(b[bpf.ProbeEventIndex:])
	ev.Dir = Direction(b[bpf.ProbeEventDir])
	ev.Kind = Kind(b[bpf.ProbeEventKind])
	ev.Flags = b[bpf.ProbeEventFlags]
	return true
}
