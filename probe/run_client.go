package probe

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/probe/internal/wire"
)

// RunResult is what an agent returns of a command it ran.
type RunResult struct {
	Series         dump.ResourceSeries
	ExitCode       int    // 128+signal when a signal ended it, as shells say
	Stdout, Stderr []byte // the last MaxRunOutput bytes of each
	StdoutDropped  int64  // bytes written before the kept tail
	StderrDropped  int64
}

// RemoteProcess is a command running on an agent, in a run session that
// holds the Client's connection until Wait returns.
type RemoteProcess struct {
	c      *Client
	pid    int
	grace  time.Duration
	exited chan struct{} // closed when the agent says it ended, or the session broke
	done   chan struct{} // closed when res or err is final
	finish sync.Once
	res    RunResult
	err    error
}

// Run asks the agent to start a command (the agent must allow it, and the
// client must hold its key). ctx bounds the start only: the command runs
// until it ends, Stop, or the agent's session duration limit.
func (c *Client) Run(ctx context.Context, p RunParams) (*RemoteProcess, error) {
	if err := p.Check(); err != nil {
		return nil, err
	}
	if err := c.fc.Write(&wire.Message{Open: &wire.Open{Mode: wire.ModeRun, Run: &p}}); err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		c.conn.SetReadDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.conn.SetReadDeadline(time.Now()) })
	m, err := c.expect("opened")
	stop()
	c.conn.SetReadDeadline(time.Time{})
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", p.Path, err)
	}
	r := &RemoteProcess{c: c, pid: m.Opened.PID, grace: p.GraceOrDefault(), exited: make(chan struct{}), done: make(chan struct{})}
	r.res.Series = dump.ResourceSeries{Name: p.Name, PID: r.pid}
	if r.res.Series.Name == "" {
		r.res.Series.Name = p.Path
	}
	go r.read()
	return r, nil
}

// PID is the command's process id on the agent's host.
func (r *RemoteProcess) PID() int { return r.pid }

// Exited is closed when the command has ended (or the session broke).
func (r *RemoteProcess) Exited() <-chan struct{} { return r.exited }

// Stop asks the agent to end the command (SIGINT, then SIGKILL after the
// grace period) and to send its results. It returns at once; Wait waits.
func (r *RemoteProcess) Stop() {
	r.finish.Do(func() {
		// The command's end and the report follow within the grace
		// period; a dead agent must not hold the caller forever.
		r.c.conn.SetReadDeadline(time.Now().Add(r.grace + r.c.cfg.Timeout + 5*time.Second))
		if err := r.c.fc.Write(&wire.Message{Finish: &wire.Finish{}}); err != nil {
			r.c.conn.Close() // read ends with an error
		}
	})
}

// Wait waits for the command's end and its results. It does not stop the
// command: call Stop for that.
func (r *RemoteProcess) Wait() (*RunResult, error) {
	<-r.done
	return &r.res, r.err
}

func (r *RemoteProcess) read() {
	exited := false
	defer func() {
		if !exited {
			close(r.exited)
		}
		close(r.done)
	}()
	for {
		m, err := r.c.fc.Read()
		if err != nil {
			r.err = fmt.Errorf("run session: %w", err)
			return
		}
		switch {
		case m.Error != nil:
			r.err = fmt.Errorf("agent: %w", m.Error)
			return
		case m.RunExited != nil && !exited:
			exited = true
			r.res.ExitCode = m.RunExited.ExitCode
			close(r.exited)
			r.Stop() // the agent waits for Finish before its report
		case m.RunReport != nil && exited:
			rep := m.RunReport
			r.res.Stdout = append(r.res.Stdout, rep.Stdout...)
			r.res.Stderr = append(r.res.Stderr, rep.Stderr...)
			r.res.Series.Samples = append(r.res.Series.Samples, rep.Samples...)
			// More frames may follow: each one proves the agent alive.
			r.c.conn.SetReadDeadline(time.Now().Add(r.c.cfg.Timeout + 5*time.Second))
			if rep.Last {
				r.res.ExitCode, r.res.StdoutDropped, r.res.StderrDropped = rep.ExitCode, rep.StdoutDropped, rep.StderrDropped
				r.c.conn.SetReadDeadline(time.Time{})
				return
			}
		default:
			r.err = errors.New("run session: agent sent " + m.Kind() + " out of turn")
			return
		}
	}
}
