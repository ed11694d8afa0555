package probe

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/probe/internal/wire"
)

// maxBatchPackets bounds the packets of one SendTrains or Collect, so that
// the answer fits in a frame.
const maxBatchPackets = 4000

// maxCollectWait bounds how long the agent waits for a batch's stragglers.
const maxCollectWait = 5 * time.Second

// capacityEnd is one end of a capacity session: a timestamping UDP socket
// that can both send and receive trains.
type capacityEnd struct {
	conn   *collector.Conn
	id     uint32
	ebpf   *trainStamps
	send   *trainSender
	recv   *trainReceiver
	undo   func() // detaches eBPF timestamping
	done   chan struct{}
	eBPFOn bool
}

// newCapacityEnd sets up timestamping for session id on conn, talking to
// peer (whose packets alone count), and starts receiving.
func newCapacityEnd(conn *collector.Conn, id uint32, port uint16, peer netip.Addr, to netip.AddrPort, st Stamper) (*capacityEnd, error) {
	e := &capacityEnd{conn: conn, id: id, ebpf: newTrainStamps(), done: make(chan struct{})}
	if st != nil {
		undo, err := stampSession(st, id, port, peer, trainWant, e.ebpf.sink)
		if err != nil {
			return nil, err
		}
		e.undo, e.eBPFOn = undo, true
	} else {
		e.undo = func() {}
	}
	var stamper Stamper
	if e.eBPFOn {
		stamper = st
	}
	e.send = newTrainSender(conn, to, id, ipOverhead(peer), stamper, e.ebpf)
	e.recv = newTrainReceiver(conn, id, peer, stamper, e.ebpf)
	go func() {
		defer close(e.done)
		e.recv.run()
	}()
	return e, nil
}

// close stops receiving and detaches; the socket is closed too.
func (e *capacityEnd) close() {
	e.conn.Close()
	<-e.done
	e.undo()
}

func (s *Server) checkTrains(specs []wire.TrainSpec, hdr int, total *int) error {
	l := s.cfg.Limits
	n := 0
	var last time.Duration
	for _, sp := range specs {
		switch {
		case sp.N < 2 || sp.N > MaxTrainLen:
			return refusal(wire.CodeLimit, "train of %d packets outside 2..%d", sp.N, MaxTrainLen)
		case sp.Size < hdr+collector.ProbeHeaderLen || sp.Size > l.MaxPacketSize+hdr:
			return refusal(wire.CodeLimit, "packet size %d outside %d..%d IP bytes", sp.Size, hdr+collector.ProbeHeaderLen, l.MaxPacketSize+hdr)
		case sp.At < 0 || sp.At > l.MaxDuration:
			return refusal(wire.CodeLimit, "train start %v outside the session's %v", sp.At, l.MaxDuration)
		}
		n += sp.N
		last = max(last, sp.At)
	}
	if n > maxBatchPackets {
		return refusal(wire.CodeLimit, "batch of %d packets, limit %d", n, maxBatchPackets)
	}
	if *total+n > l.MaxPackets {
		return refusal(wire.CodeLimit, "session would exceed %d packets", l.MaxPackets)
	}
	// Trains go back to back, but on average the agent keeps to its rate.
	if float64(n)/max(last.Seconds(), 0.01) > float64(l.MaxRate) {
		return refusal(wire.CodeLimit, "batch of %d packets in %v exceeds the agent's rate limit of %d packets/s", n, last, l.MaxRate)
	}
	*total += n
	return nil
}

// serveCapacity is the agent's half of a capacity session: it sends the
// trains the client asks for and reports what it received of the client's.
func (s *Server) serveCapacity(ctx context.Context, conn net.Conn, fc *wire.Conn, p wire.CapacityParams) error {
	local := conn.LocalAddr().(*net.TCPAddr).AddrPort().Addr()
	peer := conn.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
	uc, err := collector.ListenUDP(ctx, netip.AddrPortFrom(local, 0))
	if err != nil {
		return err
	}
	id, port := newSessionID(), uc.LocalAddr().Port()
	end, err := newCapacityEnd(uc, id, port, peer, netip.AddrPort{}, s.cfg.Stamper)
	if err != nil {
		s.log.Warn("no eBPF timestamps for this session", "err", err)
		end, err = newCapacityEnd(uc, id, port, peer, netip.AddrPort{}, nil)
		if err != nil {
			uc.Close()
			return err
		}
	}
	defer end.close()
	sources := []string{dump.SourceSW.String(), dump.SourceUser.String()}
	if end.eBPFOn {
		sources = append([]string{dump.SourceEBPF.String()}, sources...)
	}
	if err := fc.Write(&wire.Message{Opened: &wire.Opened{Session: id, Port: port, Sources: sources}}); err != nil {
		return err
	}
	// The wire's Reverse is probe's own (the client sends), the opposite of
	// the command line's -R: the log names the sender instead.
	sender := "agent"
	if p.Reverse {
		sender = "client"
	}
	s.log.Info("capacity session", "client", peer.String(), "sender", sender)

	// The first request must come soon; the session ends at the agent's
	// duration limit.
	deadline := time.Now().Add(s.cfg.Limits.MaxDuration)
	conn.SetReadDeadline(time.Now().Add(min(s.cfg.Conn.SessionStartTimeout, s.cfg.Limits.MaxDuration)))
	defer conn.SetReadDeadline(time.Time{})
	hdr := ipOverhead(local)
	total := 0
	for first := true; ; first = false {
		m, err := fc.Read()
		if err != nil {
			if first && isTimeout(err) {
				return s.notStarted("no request")
			}
			return err
		}
		if first {
			conn.SetReadDeadline(deadline)
		}
		switch {
		case m.SendTrains != nil:
			if err := s.checkTrains(m.SendTrains.Trains, hdr, &total); err != nil {
				return err
			}
			to := end.recv.peerAddr()
			if !to.IsValid() {
				return refusal(wire.CodeProtocol, "no confirmed hello from the client yet: trains need its UDP port, confirmed by a round trip "+
					"(a client of an older release does not confirm it: use the same probe release on both ends)")
			}
			end.send.to = to
			tx, err := end.send.send(ctx, m.SendTrains.Trains)
			if err != nil {
				return err
			}
			out := make([]wire.SentTrain, len(m.SendTrains.Trains))
			for i, sp := range m.SendTrains.Trains {
				out[i] = wire.SentTrain{ID: sp.ID, Tx: tx[sp.ID]}
			}
			if err := fc.Write(&wire.Message{TrainsSent: &wire.TrainsSent{Trains: out}}); err != nil {
				return err
			}
		case m.Collect != nil:
			if err := s.checkTrains(m.Collect.Trains, hdr, new(int)); err != nil {
				return err
			}
			rx, err := end.recv.collect(ctx, m.Collect.Trains, min(m.Collect.Wait, maxCollectWait))
			if err != nil {
				return err
			}
			if err := fc.Write(&wire.Message{TrainsReceived: &wire.TrainsReceived{Trains: rx}}); err != nil {
				return err
			}
		case m.Finish != nil:
			return fc.Write(&wire.Message{Done: &wire.Done{Received: total}})
		default:
			return fmt.Errorf("%w: unexpected %s in a capacity session", wire.ErrMalformed, m.Kind())
		}
	}
}
