package probe

import (
	"context"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/collector/dump"
)

// Datagram pings (RFC 9221) are probe's own, beside the perf protocol:
// only an agent echoes them, so a test against another perf server has none.

// pinger sends datagrams on a connection and times their echoes.
type pinger struct {
	qc     *quic.Conn
	mu     sync.Mutex
	t0     time.Time
	sent   []time.Time
	pings  []dump.QUICPing
	loaded atomic.Bool
}

// pingLen is a ping's payload: magic, sequence number, padding.
const pingLen = 16

func newPinger(qc *quic.Conn) *pinger { return &pinger{qc: qc, t0: time.Now()} }

// load marks the pings from now on as sent during the data phase.
func (pg *pinger) load() { pg.loaded.Store(true) }

// every sends n pings (then goes on until ctx ends, in the background),
// one each d.
func (pg *pinger) every(ctx context.Context, n int, d time.Duration) {
	t := time.NewTicker(d)
	for range n {
		pg.send()
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	go func() {
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if pg.loaded.Load() {
					pg.send()
				}
			}
		}
	}()
}

func (pg *pinger) send() {
	var b [pingLen]byte
	binary.BigEndian.PutUint32(b[:], collector.ProbeMagic)
	pg.mu.Lock()
	seq := uint32(len(pg.pings))
	now := time.Now()
	pg.pings = append(pg.pings, dump.QUICPing{Seq: seq, Sent: now.Sub(pg.t0), Loaded: pg.loaded.Load()})
	pg.sent = append(pg.sent, now)
	pg.mu.Unlock()
	binary.BigEndian.PutUint32(b[4:], seq)
	pg.qc.SendDatagram(b[:])
}

func (pg *pinger) receive(ctx context.Context) {
	for {
		b, err := pg.qc.ReceiveDatagram(ctx)
		if err != nil {
			return
		}
		now := time.Now()
		if len(b) != pingLen || binary.BigEndian.Uint32(b) != collector.ProbeMagic {
			continue
		}
		seq := binary.BigEndian.Uint32(b[4:])
		pg.mu.Lock()
		if int(seq) < len(pg.pings) && pg.pings[seq].RTT == 0 {
			pg.pings[seq].RTT = now.Sub(pg.sent[seq])
		}
		pg.mu.Unlock()
	}
}

func (pg *pinger) results() []dump.QUICPing {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	return append([]dump.QUICPing(nil), pg.pings...)
}
