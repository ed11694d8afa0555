package probe

import (
	"context"
	"net"
	"os/exec"
	"time"

	"github.com/probe-dev/probe/probe/internal/wire"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/resources"
)

// runFinishWait bounds how long the agent waits for the client's Finish once
// it has told the client that the command ended.
const runFinishWait = 30 * time.Second

// serveRun runs one command for the client: see the exchange in run.go.
func (s *Server) serveRun(ctx context.Context, conn net.Conn, fc *wire.Conn, p RunParams) error {
	if !s.cfg.AllowRun {
		return refusal(wire.CodeForbidden, "this agent does not run commands: start it with probe serve --allow-run --key-file FILE")
	}
	if len(s.cfg.Key) == 0 {
		// The handshake authenticated no one: running commands for
		// anyone who connects is never on.
		return refusal(wire.CodeForbidden, "this agent runs commands only for clients with its key, and has none: give it --key-file")
	}
	if err := p.Check(); err != nil {
		return refusal(wire.CodeBadRequest, "%v", err)
	}
	lookPath := exec.LookPath
	if s.runPath != nil {
		lookPath = s.runPath
	}
	path, err := lookPath(p.Path)
	if err != nil {
		return refusal(wire.CodeBadRequest, "run: %v", err)
	}
	sched, release := s.acquireSched()
	defer release()

	stdout, stderr := newTailBuffer(MaxRunOutput), newTailBuffer(MaxRunOutput)
	cmd := exec.Command(path, p.Args...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// A child that keeps the output open after the command ended must
	// not hold the session.
	cmd.WaitDelay = time.Second
	name := p.Name
	if name == "" {
		name = p.Path
	}
	// Its own process group, which Stop signals whole; its own tree in
	// the watch, which other sessions share.
	proc, err := resources.Start(cmd, resources.Config{Name: name, Interval: p.Interval, Sched: sched, Group: true})
	if err != nil {
		return refusal(wire.CodeRunFailed, "start %s: %v", path, err)
	}
	grace := p.GraceOrDefault()
	defer func() {
		// Whatever ended the session, the command does not outlive it.
		proc.Stop(grace)
		proc.Wait()
	}()
	s.log.Info("run", "pid", proc.PID(), "path", path, "args", p.Args)
	if err := fc.Write(&wire.Message{Opened: &wire.Opened{PID: proc.PID()}}); err != nil {
		return err
	}

	finish := make(chan error, 1)
	go func() {
		m, err := fc.Read()
		if err == nil && m.Finish == nil {
			err = refusal(wire.CodeProtocol, "unexpected %s message in a run session", m.Kind())
		}
		finish <- err
	}()
	limit := time.NewTimer(s.cfg.Limits.MaxDuration)
	defer limit.Stop()
	var finErr error
	finished := false
	select {
	case <-proc.Exited():
	case finErr = <-finish:
		finished = true
		proc.Stop(grace)
	case <-limit.C:
		s.log.Info("run: stopping the command at the session's duration limit", "pid", proc.PID(), "limit", s.cfg.Limits.MaxDuration)
		proc.Stop(grace)
	case <-ctx.Done():
		proc.Stop(grace)
	}
	series := proc.Wait()
	exit, _ := proc.Exit()
	code := exit.Code
	if finErr != nil {
		return finErr // the client is gone or broke the protocol
	}
	if err := fc.Write(&wire.Message{RunExited: &wire.RunExited{ExitCode: code}}); err != nil {
		return err
	}
	if !finished {
		conn.SetReadDeadline(time.Now().Add(runFinishWait))
		if err := <-finish; err != nil {
			return err
		}
		conn.SetReadDeadline(time.Time{})
	}
	return sendRunReport(fc, series, code, stdout, stderr)
}

// sendRunReport sends the output and the samples in frames of at most about
// runChunk bytes each, the last one with the totals.
func sendRunReport(fc *wire.Conn, series dump.ResourceSeries, code int, stdout, stderr *tailBuffer) error {
	out, outDropped := stdout.Bytes()
	errb, errDropped := stderr.Bytes()
	for len(out) > 0 || len(errb) > 0 {
		r := &wire.RunReport{}
		k := min(len(out), runChunk)
		r.Stdout, out = out[:k], out[k:]
		k = min(len(errb), runChunk-k)
		r.Stderr, errb = errb[:k], errb[k:]
		if err := fc.Write(&wire.Message{RunReport: r}); err != nil {
			return err
		}
	}
	r := &wire.RunReport{}
	size := 0
	for _, smp := range series.Samples {
		b, err := msgpack.Marshal(&smp)
		if err != nil {
			return err
		}
		if size+len(b) > runChunk && len(r.Samples) > 0 {
			if err := fc.Write(&wire.Message{RunReport: r}); err != nil {
				return err
			}
			r, size = &wire.RunReport{}, 0
		}
		r.Samples = append(r.Samples, smp)
		size += len(b)
	}
	r.Last, r.ExitCode, r.StdoutDropped, r.StderrDropped = true, code, outDropped, errDropped
	return fc.Write(&wire.Message{RunReport: r})
}

// acquireSched returns the agent's scheduler watch, loading it for the
// first run session and closing it after the last: one set of programs
// however many commands run. nil: /proc figures only.
func (s *Server) acquireSched() (*collector.SchedWatch, func()) {
	if !s.cfg.RunSched {
		return nil, func() {}
	}
	s.schedMu.Lock()
	defer s.schedMu.Unlock()
	if s.sched == nil {
		sw, err := collector.NewSchedWatch()
		if err != nil {
			if !s.schedWarned {
				s.log.Warn("run sessions: no eBPF scheduler accounting, /proc figures only", "reason", err)
				s.schedWarned = true
			}
			return nil, func() {}
		}
		s.sched = sw
	}
	s.schedUsers++
	return s.sched, func() {
		s.schedMu.Lock()
		defer s.schedMu.Unlock()
		if s.schedUsers--; s.schedUsers == 0 {
			if err := s.sched.Close(); err != nil {
				s.log.Warn("close scheduler watch", "err", err)
			}
			s.sched = nil
		}
	}
}
