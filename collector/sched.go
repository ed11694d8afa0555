package collector

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/cilium/ebpf"
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
	objs switchObjects
	link link.Link
}

// switchObjects are the part of bpf/sched.c that SwitchCounter uses; the
// watch programs and their maps are not loaded.
type switchObjects struct {
	OnSchedSwitch *ebpf.Program `ebpf:"on_sched_switch"`
	Switches      *ebpf.Map     `ebpf:"switches"`
}

// Close closes what was loaded; the methods accept nil.
func (o *switchObjects) Close() error {
	return errors.Join(o.OnSchedSwitch.Close(), o.Switches.Close())
}

// loadSched loads the named subset of bpf/sched.c into objs.
func loadSched(objs any) error {
	spec, err := bpf.LoadSched()
	if err != nil {
		return err
	}
	return spec.LoadAndAssign(objs, nil)
}

var schedNeeds = needs{caps: "CAP_BPF, CAP_PERFMON", kernel: "5.5", what: "tp_btf programs", btf: true}

// NewSwitchCounter loads the sched_switch program and attaches it; counting
// starts now, for every process on the host.
func NewSwitchCounter() (*SwitchCounter, error) {
	// Only kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK. If this
	// fails, loading fails too and says why more plainly.
	_ = rlimit.RemoveMemlock()
	c := &SwitchCounter{}
	if err := loadSched(&c.objs); err != nil {
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

// SchedStats are the scheduler totals of a watched process or thread since
// it was watched.
type SchedStats struct {
	OnCPU       time.Duration // between being switched in and out
	Voluntary   uint64        // switched out blocked (sleep, I/O, lock)
	Involuntary uint64        // switched out while still runnable (preempted)
	// RunQueue counts the waits from becoming runnable (woken, or
	// preempted) to running, per log2(µs): bucket k holds latencies in
	// [2^k, 2^(k+1)) µs, bucket 0 also those below 1 µs, bucket 31 also
	// those above.
	RunQueue [32]uint64
}

// Waits returns the number of run-queue waits, the sum of RunQueue.
func (s SchedStats) Waits() uint64 {
	var n uint64
	for _, c := range s.RunQueue {
		n += c
	}
	return n
}

func schedStats(v *bpf.SchedSchedStats) SchedStats {
	return SchedStats{
		OnCPU:       time.Duration(v.OncpuNs),
		Voluntary:   v.Voluntary,
		Involuntary: v.Involuntary,
		RunQueue:    v.Runq,
	}
}

// SchedWatch accounts on-CPU time, context switches and run-queue latency,
// per process and per thread, for a watched set of processes and their
// descendants (bpf/sched.c, the watch_* programs).
//
// A process stays in the set, and its totals in the maps, after it exits,
// until Close: a new process that reuses its pid would be watched too.
type SchedWatch struct {
	objs  watchObjects
	links []link.Link
}

// watchObjects are the part of bpf/sched.c that SchedWatch uses.
type watchObjects struct {
	Switch    *ebpf.Program `ebpf:"watch_sched_switch"`
	Wakeup    *ebpf.Program `ebpf:"watch_sched_wakeup"`
	WakeupNew *ebpf.Program `ebpf:"watch_sched_wakeup_new"`
	Fork      *ebpf.Program `ebpf:"watch_sched_process_fork"`

	Watched     *ebpf.Map `ebpf:"watched"`
	ProcStats   *ebpf.Map `ebpf:"proc_stats"`
	ThreadStats *ebpf.Map `ebpf:"thread_stats"`
	TaskTimes   *ebpf.Map `ebpf:"task_times"`
}

func (o *watchObjects) Close() error {
	return errors.Join(
		o.Switch.Close(), o.Wakeup.Close(), o.WakeupNew.Close(), o.Fork.Close(),
		o.Watched.Close(), o.ProcStats.Close(), o.ThreadStats.Close(), o.TaskTimes.Close())
}

// NewSchedWatch loads the watch programs and attaches them; the watched set
// starts empty.
func NewSchedWatch() (*SchedWatch, error) {
	_ = rlimit.RemoveMemlock() // see NewSwitchCounter
	w := &SchedWatch{}
	if err := loadSched(&w.objs); err != nil {
		return nil, loadError("load scheduler watch", schedNeeds, err)
	}
	// Fork first, so that no child of a watched process is missed once
	// the others run.
	for _, p := range []struct {
		name string
		prog *ebpf.Program
	}{
		{"sched_process_fork", w.objs.Fork},
		{"sched_wakeup", w.objs.Wakeup},
		{"sched_wakeup_new", w.objs.WakeupNew},
		{"sched_switch", w.objs.Switch},
	} {
		l, err := link.AttachTracing(link.TracingOptions{Program: p.prog})
		if err != nil {
			w.Close()
			return nil, loadError("attach scheduler watch to "+p.name, schedNeeds, err)
		}
		w.links = append(w.links, l)
	}
	return w, nil
}

// Watch adds process tgid, all its threads and, from now on, its new
// children to the watched set. A thread already on a CPU is accounted from
// its next switch in; start the process blocked to miss nothing.
func (w *SchedWatch) Watch(tgid uint32) error {
	if err := w.objs.Watched.Update(tgid, uint8(1), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("watch process %d: %w", tgid, err)
	}
	return nil
}

// Process returns the totals of process tgid; ok is false when none of its
// threads has been switched in or out since it was watched.
func (w *SchedWatch) Process(tgid uint32) (stats SchedStats, ok bool) {
	var v bpf.SchedSchedStats
	if err := w.objs.ProcStats.Lookup(tgid, &v); err != nil {
		return SchedStats{}, false
	}
	return schedStats(&v), true
}

// Threads returns the totals of each thread (by thread id) of process tgid
// that ran while watched, exited threads included.
func (w *SchedWatch) Threads(tgid uint32) map[uint32]SchedStats {
	threads := make(map[uint32]SchedStats)
	var k bpf.SchedThreadKey
	var v bpf.SchedSchedStats
	it := w.objs.ThreadStats.Iterate()
	for it.Next(&k, &v) {
		if k.Tgid == tgid {
			threads[k.Pid] = schedStats(&v)
		}
	}
	// An iteration cut short by concurrent deletes is still a useful
	// snapshot; nothing here deletes thread entries.
	return threads
}

// Watched returns the watched tgids, children that joined included, in
// ascending order.
func (w *SchedWatch) Watched() []uint32 {
	set := make(map[uint32]bool)
	var k uint32
	var v uint8
	it := w.objs.Watched.Iterate()
	for it.Next(&k, &v) {
		set[k] = true
	}
	return slices.Sorted(maps.Keys(set))
}

// Close detaches the programs and frees their maps.
func (w *SchedWatch) Close() error {
	var errs []error
	for _, l := range w.links {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach scheduler watch: %w", err))
		}
	}
	if err := w.objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close scheduler watch: %w", err))
	}
	return errors.Join(errs...)
}
