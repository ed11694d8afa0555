package collector

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"

	"github.com/probe-dev/probe/bpf"
)

// SwitchCounts are a process's context switches since the counter started.
type SwitchCounts struct {
	Voluntary   uint64 // the task blocked (sleep, I/O, lock)
	Involuntary uint64 // the task was preempted while still runnable
}

// SwitchCounter counts context switches per process (tgid) with a
// tp_btf/sched_switch program (bpf/sched.c).
type SwitchCounter struct {
	objs bpf.SchedObjects
	link link.Link
}

var schedNeeds = needs{caps: "CAP_BPF, CAP_PERFMON", kernel: "5.5", what: "tp_btf programs", btf: true}

// NewSwitchCounter loads the sched_switch program and attaches it; counting
// starts now, for every process on the host.
func NewSwitchCounter() (*SwitchCounter, error) {
	// Only kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK. If this
	// fails, loading fails too and says why more plainly.
	_ = rlimit.RemoveMemlock()
	c := &SwitchCounter{}
	if err := bpf.LoadSchedObjects(&c.objs, nil); err != nil {
		return nil, loadError("load sched_switch counter", schedNeeds, err)
	}
	l, err := link.AttachTracing(link.TracingOptions{Program: c.objs.OnSchedSwitch})
	if err != nil {
		c.objs.Close()
		return nil, loadError("attach sched_switch counter", schedNeeds, err)
	}
	c.link = l
	return c, nil
}

// Counts returns the switches of process tgid; ok is false when it has not
// been switched out since the counter started (or aged out of the map).
func (c *SwitchCounter) Counts(tgid uint32) (counts SwitchCounts, ok bool) {
	var v bpf.SchedSwitchCounts
	if err := c.objs.Switches.Lookup(tgid, &v); err != nil {
		return SwitchCounts{}, false
	}
	return SwitchCounts{Voluntary: v.Voluntary, Involuntary: v.Involuntary}, true
}

// Close detaches the program and frees its map.
func (c *SwitchCounter) Close() error {
	var errs []error
	if err := c.link.Close(); err != nil {
		errs = append(errs, fmt.Errorf("detach sched_switch counter: %w", err))
	}
	if err := c.objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close sched_switch counter: %w", err))
	}
	return errors.Join(errs...)
}
