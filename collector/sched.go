package collector

import (
	"errors"
	"fmt"
	"math/bits"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/probe-dev/probe/bpf"
)

// loadSched loads the named subset of bpf/sched.c into objs.
func loadSched(objs any) error {
	spec, err := bpf.LoadSched()
	if err != nil {
		return err
	}
	return spec.LoadAndAssign(objs, nil)
}

var watchNeeds = needs{caps: "CAP_BPF, CAP_PERFMON", kernel: "5.12", what: "tp_btf programs with task storage and atomics", btf: true}

// RunQueueBuckets is the size of the run-queue latency histogram, bpf/sched.c's.
const RunQueueBuckets = int(bpf.SchedSchedConstsRUNQ_BUCKETS)

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
	RunQueue [RunQueueBuckets]uint64
}

// Waits returns the number of run-queue waits, the sum of RunQueue.
func (s SchedStats) Waits() uint64 {
	var n uint64
	for _, c := range s.RunQueue {
		n += c
	}
	return n
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
	// The programs' arrays, mapped: watched has bit tgid%64 of word
	// tgid/64 set for each watched process; threads the watched threads'
	// entries, in the order first seen.
	watched []uint64
	threads []bpf.SchedThreadEntry
	mems    [][]byte
}

// watchObjects are the part of bpf/sched.c that SchedWatch uses.
type watchObjects struct {
	Switch *ebpf.Program `ebpf:"watch_sched_switch"`
	Fork   *ebpf.Program `ebpf:"watch_sched_process_fork"`

	Watched *ebpf.Map `ebpf:"watched"`
	Threads *ebpf.Map `ebpf:"threads"`
	TaskOf  *ebpf.Map `ebpf:"task_of"`

	ThreadsLost *ebpf.Variable `ebpf:"threads_lost"`
}

func (o *watchObjects) Close() error {
	return errors.Join(o.Switch.Close(), o.Fork.Close(), o.Watched.Close(), o.Threads.Close(), o.TaskOf.Close())
}

// NewSchedWatch loads the watch programs and attaches them; the watched set
// starts empty.
func NewSchedWatch() (*SchedWatch, error) {
	// Only kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK. If this
	// fails, loading fails too and says why more plainly.
	_ = rlimit.RemoveMemlock()
	w := &SchedWatch{}
	if err := loadSched(&w.objs); err != nil {
		return nil, loadError("load scheduler watch", watchNeeds, err)
	}
	watched, err := mapArray[uint64](w, w.objs.Watched)
	if err != nil {
		w.Close()
		return nil, err
	}
	threads, err := mapArray[bpf.SchedThreadEntry](w, w.objs.Threads)
	if err != nil {
		w.Close()
		return nil, err
	}
	w.watched, w.threads = watched, threads
	// Fork first, so that no child of a watched process is missed once
	// the others run.
	for _, p := range []struct {
		name string
		prog *ebpf.Program
	}{
		{"sched_process_fork", w.objs.Fork},
		{"sched_switch", w.objs.Switch},
	} {
		l, err := link.AttachTracing(link.TracingOptions{Program: p.prog})
		if err != nil {
			w.Close()
			return nil, loadError("attach scheduler watch to "+p.name, watchNeeds, err)
		}
		w.links = append(w.links, l)
	}
	return w, nil
}

// mapArray maps an mmapable array map's memory as a slice of its values
// (T is the value type, whose size is a multiple of 8 as the kernel lays
// them out).
func mapArray[T any](w *SchedWatch, m *ebpf.Map) ([]T, error) {
	size := int(unsafe.Sizeof(*new(T)))
	if int(m.ValueSize()) != size || size%8 != 0 {
		return nil, fmt.Errorf("scheduler watch map %v: values of %d bytes, want %d", m, m.ValueSize(), size)
	}
	n := int(m.MaxEntries())
	mem, err := unix.Mmap(m.FD(), 0, (n*size+os.Getpagesize()-1)&^(os.Getpagesize()-1), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map scheduler watch map %v: %w", m, err)
	}
	w.mems = append(w.mems, mem)
	return unsafe.Slice((*T)(unsafe.Pointer(&mem[0])), n), nil
}

// Watch adds process tgid, all its threads and, from now on, its new
// children to the watched set. A thread already on a CPU is accounted from
// its next switch in; start the process blocked to miss nothing.
func (w *SchedWatch) Watch(tgid uint32) error {
	word := int(tgid / 64)
	if tgid == 0 || word >= len(w.watched) {
		return fmt.Errorf("watch process %d: not a process id", tgid)
	}
	// Atomic: the fork program sets the bits of neighbouring children.
	atomic.OrUint64(&w.watched[word], 1<<(tgid%64))
	return nil
}

// Process returns the totals of process tgid, the sum of its threads'; ok
// is false when none of its threads has been switched in or out since it
// was watched.
func (w *SchedWatch) Process(tgid uint32) (stats SchedStats, ok bool) {
	w.each(func(t *bpf.SchedThreadEntry) {
		if t.Key.Tgid == tgid {
			ok = true
			stats.add(threadStats(t))
		}
	})
	return stats, ok
}

// Tree returns the totals of the processes watched with Watch(root), for
// each root given, and of their descendants (joined at fork, after the
// watch): the sum of their threads', exited ones included.
func (w *SchedWatch) Tree(roots ...uint32) SchedStats {
	var stats SchedStats
	w.each(func(t *bpf.SchedThreadEntry) {
		if slices.Contains(roots, t.Root) {
			stats.add(threadStats(t))
		}
	})
	return stats
}

// TreeProcesses returns the totals of each process (by tgid) in the tree of
// root: the process watched with Watch(root) and its descendants.
func (w *SchedWatch) TreeProcesses(root uint32) map[uint32]SchedStats {
	procs := make(map[uint32]SchedStats)
	w.each(func(t *bpf.SchedThreadEntry) {
		if t.Root == root {
			s := procs[t.Key.Tgid]
			s.add(threadStats(t))
			procs[t.Key.Tgid] = s
		}
	})
	return procs
}

// Threads returns the totals of each thread (by thread id) of process tgid
// that ran while watched, exited threads included.
func (w *SchedWatch) Threads(tgid uint32) map[uint32]SchedStats {
	threads := make(map[uint32]SchedStats)
	w.each(func(t *bpf.SchedThreadEntry) {
		if t.Key.Tgid == tgid {
			threads[t.Key.Pid] = threadStats(t)
		}
	})
	return threads
}

// Settle waits, up to timeout, until no thread of the processes tgids is
// marked on a CPU, and says whether none is. A process's threads are
// switched out for the last time after its parent's wait4 has returned
// (exit_notify comes before the final schedule), and until then their
// current run is only in /proc, which is gone once the process is reaped:
// a busy thread never switched out (a quiet CPU has no one else to run)
// read 0 on-CPU time for its whole run.
func (w *SchedWatch) Settle(timeout time.Duration, tgids ...uint32) bool {
	deadline := time.Now().Add(timeout)
	for {
		busy := false
		w.each(func(t *bpf.SchedThreadEntry) {
			if slices.Contains(tgids, t.Key.Tgid) && atomic.LoadUint32(&t.OnCpu) != 0 {
				busy = true
			}
		})
		if !busy {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// each calls fn for each thread slot filled so far. Slots fill in order;
// one whose key is not written yet ends the list for now. The programs
// write each counter whole (aligned 8 bytes).
func (w *SchedWatch) each(fn func(*bpf.SchedThreadEntry)) {
	for i := range w.threads {
		t := &w.threads[i]
		if atomic.LoadUint32(&t.Key.Tgid) == 0 {
			return
		}
		fn(t)
	}
}

func (s *SchedStats) add(t SchedStats) {
	s.OnCPU += t.OnCPU
	s.Voluntary += t.Voluntary
	s.Involuntary += t.Involuntary
	for i, n := range t.RunQueue {
		s.RunQueue[i] += n
	}
}

// threadStats reads a thread's totals. The program adds the growth of the
// kernel's runtime counter to the on-CPU time only when the thread is
// switched out, so a thread on a CPU now gets its current run from the
// same counter (updated at every tick: a few ms late at most).
// Without that, a busy thread that is rarely switched out would show
// nothing for a while and then seconds at once.
func threadStats(t *bpf.SchedThreadEntry) SchedStats {
	s := SchedStats{Voluntary: t.Stats.Voluntary, Involuntary: t.Stats.Involuntary, RunQueue: t.Stats.Runq}
	// The program stores the on-CPU time and where it was accounted up to
	// before clearing on_cpu; a switch while this reads shows as a
	// change, and the read starts again.
	for range 4 {
		on := atomic.LoadUint32(&t.OnCpu)
		oncpu := atomic.LoadUint64(&t.Stats.OncpuNs)
		in := atomic.LoadUint64(&t.RuntimeIn)
		s.OnCPU = time.Duration(oncpu)
		if on == 0 {
			return s
		}
		rt, err := threadRuntime(t.Key.Tgid, t.Key.Pid)
		if atomic.LoadUint32(&t.OnCpu) != on || atomic.LoadUint64(&t.Stats.OncpuNs) != oncpu || atomic.LoadUint64(&t.RuntimeIn) != in {
			continue
		}
		if err == nil && rt > in {
			s.OnCPU += time.Duration(rt - in)
		}
		return s
	}
	return s
}

// threadRuntime reads a thread's se.sum_exec_runtime, the first field of
// /proc/TGID/task/TID/schedstat, in ns.
func threadRuntime(tgid, tid uint32) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/schedstat", tgid, tid))
	if err != nil {
		return 0, err
	}
	f, _, _ := strings.Cut(string(b), " ")
	return strconv.ParseUint(f, 10, 64)
}

// RunQueueKnown says whether the kernel keeps the queueing times the
// run-queue histogram is made of (CONFIG_SCHED_INFO, which is also what
// makes /proc/PID/schedstat exist); without them the histogram stays empty.
func (w *SchedWatch) RunQueueKnown() bool {
	_, err := os.Stat("/proc/self/schedstat")
	return err == nil
}

// SwitchProgram is the program on sched_switch, for measuring what it costs
// (bench/sched reads its run-time statistics).
func (w *SchedWatch) SwitchProgram() *ebpf.Program { return w.objs.Switch }

// Lost returns the number of watched threads that found no slot (more than
// the programs hold) and so are not in any total.
func (w *SchedWatch) Lost() uint64 {
	var n uint64
	if w.objs.ThreadsLost != nil {
		w.objs.ThreadsLost.Get(&n)
	}
	return n
}

// LostWarning says, when threads were lost, that the eBPF figures miss
// them; "" otherwise.
func (w *SchedWatch) LostWarning() string {
	if n := w.Lost(); n > 0 {
		return fmt.Sprintf("%d watched threads found no slot among the tracer's %d: the eBPF figures leave them out", n, len(w.threads))
	}
	return ""
}

// Watched returns the watched tgids, children that joined included, in
// ascending order.
func (w *SchedWatch) Watched() []uint32 {
	var tgids []uint32
	for i := range w.watched {
		word := atomic.LoadUint64(&w.watched[i])
		for word != 0 {
			b := bits.TrailingZeros64(word)
			tgids = append(tgids, uint32(i*64+b))
			word &^= 1 << b
		}
	}
	return tgids
}

// Close detaches the programs and frees their maps.
func (w *SchedWatch) Close() error {
	var errs []error
	for _, l := range w.links {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach scheduler watch: %w", err))
		}
	}
	for _, m := range w.mems {
		unix.Munmap(m)
	}
	w.mems, w.watched, w.threads = nil, nil, nil
	if err := w.objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close scheduler watch: %w", err))
	}
	return errors.Join(errs...)
}
