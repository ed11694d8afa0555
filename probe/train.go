package probe

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/probe/internal/wire"
)

// Both ends of a capacity session can send trains and receive them: the agent
// sends and the client receives by default, the other way round with
// --reverse. These are the two roles.

// MaxTrainLen bounds a train's packets (docs/capacity.md: trains grow up to 50).
const MaxTrainLen = 100

// pktKey names packet index of train id.
func pktKey(id uint32, index uint16) uint64 { return uint64(id)<<16 | uint64(index) }

// trainWant records train packets both ways: either end may send.
var trainWant = collector.WantEvent(collector.KindTrain, collector.Egress) | collector.WantEvent(collector.KindTrain, collector.Ingress)

// trainStamps gathers the eBPF timestamps of a session's train packets:
// egress ones for what this end sends, ingress ones for what it receives.
type trainStamps struct {
	mu      sync.Mutex
	egress  map[uint64]int64
	ingress map[uint64]int64
}

func newTrainStamps() *trainStamps {
	return &trainStamps{egress: make(map[uint64]int64), ingress: make(map[uint64]int64)}
}

func (s *trainStamps) sink(ev *collector.ProbeEvent) {
	if ev.Kind != collector.KindTrain {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.ingress
	if ev.Dir == collector.Egress {
		m = s.egress
	}
	// The kernel reports every packet of the session's ID, whoever sent it:
	// keep no more than the trains a receiver may hold.
	if k := pktKey(ev.Seq, ev.Index); m[k] == 0 && len(m) < maxTrainStamps {
		m[k] = ev.Time
	}
}

// take removes and returns the timestamp of one packet (0: none).
func (s *trainStamps) take(dir collector.Direction, id uint32, index int) int64 {
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.ingress
	if dir == collector.Egress {
		m = s.egress
	}
	k := pktKey(id, uint16(index))
	t := m[k]
	delete(m, k)
	return t
}

// ipOverhead is the IP and UDP header bytes in front of a probe payload.
func ipOverhead(a netip.Addr) int {
	if a.Is4() || a.Is4In6() {
		return 20 + 8
	}
	return 40 + 8
}

// trainSender sends trains back to back, one sendmmsg each.
type trainSender struct {
	conn    *collector.Conn
	to      netip.AddrPort // zero: the connected peer
	session uint32
	hdr     int // IP+UDP header bytes
	stamper Stamper
	ebpf    *trainStamps
	bufs    [][]byte
}

func newTrainSender(conn *collector.Conn, to netip.AddrPort, session uint32, hdr int, st Stamper, ebpf *trainStamps) *trainSender {
	s := &trainSender{conn: conn, to: to, session: session, hdr: hdr, stamper: st, ebpf: ebpf}
	s.bufs = make([][]byte, MaxTrainLen)
	for i := range s.bufs {
		s.bufs[i] = make([]byte, 0, 65536)
	}
	return s
}

// send sends the batch on its schedule and returns each train's transmit
// timestamps, by train ID. Ending ctx stops it between trains.
func (s *trainSender) send(ctx context.Context, specs []wire.TrainSpec) (map[uint32][]dump.Stamps, error) {
	tx := make(map[uint32][]dump.Stamps, len(specs))
	refs := make(map[uint32][2]uint32) // transmit key -> train, index
	onTx := func(key uint32, st dump.Stamps) {
		if r, ok := refs[key]; ok {
			p := &tx[r[0]][r[1]]
			p[dump.SourceSW], p[dump.SourceHW] = st[dump.SourceSW], st[dump.SourceHW]
		}
	}
	start := time.Now()
	for _, sp := range specs {
		if d := time.Until(start.Add(sp.At)); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return tx, ctx.Err()
			}
		} else if ctx.Err() != nil {
			return tx, ctx.Err()
		}
		bufs := s.bufs[:sp.N]
		for i := range bufs {
			b := bufs[i][:sp.Size-s.hdr]
			collector.ProbeHeader{Session: s.session, Seq: sp.ID, Kind: collector.KindTrain, Index: uint16(i)}.Put(b)
			bufs[i] = b
		}
		first, user, n, err := s.conn.SendBatch(bufs, s.to)
		st := make([]dump.Stamps, sp.N)
		for i := range n {
			st[i][dump.SourceUser] = user
			refs[first+uint32(i)] = [2]uint32{sp.ID, uint32(i)}
		}
		tx[sp.ID] = st
		if err != nil {
			return tx, err
		}
		if _, err := s.conn.TxStamps(onTx); err != nil {
			return tx, err
		}
	}
	// Transmit stamps trail the sends; wait for them up to txStampWait.
	deadline := time.Now().Add(txStampWait)
	for missing(tx) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
		if _, err := s.conn.TxStamps(onTx); err != nil {
			return tx, err
		}
	}
	if s.stamper != nil {
		if err := flush(ctx, s.stamper); err != nil {
			return tx, err
		}
		for id, st := range tx {
			for i := range st {
				st[i][dump.SourceEBPF] = s.ebpf.take(collector.Egress, id, i)
			}
		}
	}
	return tx, nil
}

// missing reports whether a sent packet still lacks its software stamp.
func missing(tx map[uint32][]dump.Stamps) bool {
	for _, st := range tx {
		for i := range st {
			if st[i].Has(dump.SourceUser) && !st[i].Has(dump.SourceSW) {
				return true
			}
		}
	}
	return false
}

func flush(ctx context.Context, st Stamper) error {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	return st.Flush(fctx)
}

// maxPendingTrains bounds what a receiver keeps for trains nobody collects.
const maxPendingTrains = 10000

// maxTrainStamps bounds the eBPF stamps kept per direction.
const maxTrainStamps = maxPendingTrains * MaxTrainLen

// helloFlags mark a hello (collector.KindHello) in the header's flags.
//
// The receiver answers a hello with a reply of the same size that carries
// in Seq a nonce of the hello's source port; a hello that carries its own
// port's nonce confirms that port, which the receiver then pins: trains go
// there, and only there do they come from. An off-path sender who spoofs the
// client's address gets the nonce of its port sent to the client, not to
// itself, so it cannot pin a port the client does not answer from.
type helloFlags uint8

const (
	helloReply  helloFlags = 1 << 0 // an answer to a hello, never answered itself
	helloPinned helloFlags = 1 << 1 // in a reply: the hello's port is the session's now
)

// helloAnswer is the last reply to this end's hellos.
type helloAnswer struct {
	nonce  uint32
	pinned bool
}

// trainReceiver records the train packets of a session as they arrive.
type trainReceiver struct {
	conn    *collector.Conn
	session uint32
	peer    netip.Addr // only packets from the session's client or agent count
	stamper Stamper
	ebpf    *trainStamps
	key     [16]byte // the nonces' secret, this session's alone

	mu     sync.Mutex
	trains map[uint32]*rxTrain
	hello  netip.AddrPort // the peer's confirmed port
	answer helloAnswer    // the peer's reply to our hellos
}

type rxTrain struct {
	rx   [MaxTrainLen]dump.Stamps
	got  int
	dups int
}

func newTrainReceiver(conn *collector.Conn, session uint32, peer netip.Addr, st Stamper, ebpf *trainStamps) *trainReceiver {
	r := &trainReceiver{conn: conn, session: session, peer: peer, stamper: st, ebpf: ebpf, trains: make(map[uint32]*rxTrain)}
	rand.Read(r.key[:])
	return r
}

// nonce is what a hello from port must carry to confirm it; never 0,
// which a first hello carries.
func (r *trainReceiver) nonce(port uint16) uint32 {
	m := hmac.New(sha256.New, r.key[:])
	m.Write(binary.BigEndian.AppendUint16(nil, port))
	return max(binary.BigEndian.Uint32(m.Sum(nil)), 1)
}

// run reads until the socket is closed or its read deadline passes. Hellos
// are answered, once per datagram and at their own size.
func (r *trainReceiver) run() {
	buf := make([]byte, 65536)
	for {
		d, err := r.conn.Recv(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || collector.IsTimeout(err) {
				return
			}
			continue
		}
		if r.handle(buf[:d.N], &d) {
			r.conn.Send(buf[:d.N], d.From)
		}
	}
}

// handle takes one datagram; it returns true for a hello to answer, with
// b rewritten into the reply. Only the session's peer counts: its address
// is the control connection's, and its port the one a hello confirmed, so
// that trains, which are much larger than the hello, go nowhere else.
func (r *trainReceiver) handle(b []byte, d *collector.Datagram) (echo bool) {
	h, ok := collector.ParseProbeHeader(b)
	if !ok || h.Session != r.session || d.From.Addr().Unmap() != r.peer {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch h.Kind {
	case collector.KindHello:
		if helloFlags(h.Flags)&helloReply != 0 {
			r.answer = helloAnswer{nonce: h.Seq, pinned: helloFlags(h.Flags)&helloPinned != 0}
			return false
		}
		if r.hello.IsValid() && d.From != r.hello {
			return false
		}
		n := r.nonce(d.From.Port())
		f := helloReply
		if h.Seq == n {
			r.hello = d.From
			f |= helloPinned
		}
		h.Seq, h.Flags = n, uint8(f)
		h.Put(b)
		return true
	case collector.KindTrain:
		if int(h.Index) >= MaxTrainLen || (r.hello.IsValid() && d.From != r.hello) {
			return false
		}
		t := r.trains[h.Seq]
		if t == nil && len(r.trains) < maxPendingTrains {
			t = new(rxTrain)
			r.trains[h.Seq] = t
		}
		if t != nil {
			if t.rx[h.Index] == (dump.Stamps{}) {
				t.rx[h.Index] = d.Stamps
				t.got++
			} else {
				t.dups++
			}
		}
	}
	return false
}

// peerAddr is the peer's confirmed port, if it confirmed one.
func (r *trainReceiver) peerAddr() netip.AddrPort {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hello
}

// answered is the peer's last reply to this end's hellos.
func (r *trainReceiver) answered() helloAnswer {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.answer
}

// collect waits until every packet of specs has arrived or wait has passed,
// then hands over and forgets those trains.
func (r *trainReceiver) collect(ctx context.Context, specs []wire.TrainSpec, wait time.Duration) ([]wire.RecvTrain, error) {
	deadline := time.Now().Add(wait)
	for !r.complete(specs) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	if r.stamper != nil {
		if err := flush(ctx, r.stamper); err != nil {
			return nil, err
		}
	}
	out := make([]wire.RecvTrain, len(specs))
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, sp := range specs {
		out[i] = wire.RecvTrain{ID: sp.ID, Rx: make([]dump.Stamps, sp.N)}
		if t := r.trains[sp.ID]; t != nil {
			copy(out[i].Rx, t.rx[:sp.N])
			out[i].Dups = t.dups
			delete(r.trains, sp.ID)
		}
		for j := range out[i].Rx {
			if t := r.ebpf.take(collector.Ingress, sp.ID, j); t != 0 && out[i].Rx[j] != (dump.Stamps{}) {
				out[i].Rx[j][dump.SourceEBPF] = t
			}
		}
	}
	return out, nil
}

func (r *trainReceiver) complete(specs []wire.TrainSpec) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, sp := range specs {
		if t := r.trains[sp.ID]; t == nil || t.got < sp.N {
			return false
		}
	}
	return true
}
