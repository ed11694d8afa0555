//go:build ignore

// Scheduler accounting (docs/resources.md).
//
// The watch_* programs account, for a watched set of processes only, the
// on-CPU time, the switches and the run-queue latency per thread. User
// space sets `watched`; forks of a watched process join it, and each
// thread is counted for the tree of the process user space watched.

#include "vmlinux.h"
#include "bpf_helpers.h"
#include "bpf_tracing.h"
#include "bpf_core_read.h"

// The kernel's TASK_RUNNING (include/linux/sched.h); macros are not in
// vmlinux.h.
#define TASK_RUNNING 0

// sched_consts are the sizes user space shares; an enum, unlike a macro,
// reaches the Go side through BTF (bpf2go -type).
enum sched_consts {
	// Log2(µs) buckets of the run-queue latency histogram.
	RUNQ_BUCKETS = 32,
};

// BTF keeps only the types that something is declared with.
const volatile enum sched_consts sched_consts_btf = RUNQ_BUCKETS;

// sched_stats are the totals of a watched thread.
struct sched_stats {
	__u64 oncpu_ns;
	__u64 voluntary;
	__u64 involuntary;
	// Count of run-queue latencies per log2(µs): bucket k holds
	// [2^k, 2^(k+1)) µs, bucket 0 also below 1 µs, the last also above.
	__u64 runq[RUNQ_BUCKETS];
};

struct thread_key {
	__u32 tgid;
	__u32 pid;
};

// thread_entry is a watched thread's totals and where its current run
// started.
struct thread_entry {
	struct thread_key key;	// tgid 0: slot not yet filled
	struct sched_stats stats;
	// Its se.sum_exec_runtime when last accounted: at its last switch,
	// in or out. A switch-out adds the growth since, so a switch-in the
	// program did not see loses nothing.
	__u64 runtime_in;
	__u32 on_cpu;		// switched in and not out since
	// The process user space watched that this thread descends from (its
	// own tgid for that process's threads): one watch serves several
	// trees at once, e.g. the agent's concurrent run sessions.
	__u32 root;
};

// task_info is what each watched thread carries in its task storage.
struct task_info {
	__u32 slot;	// its index in threads, plus one (0: none yet)
	__u32 root;	// as thread_entry.root; 0: its own tgid
	__u32 forked;	// created while watched: all its runtime counts
	__u32 pad;
};

// The watch costs every context switch of the host, so the programs use
// what the scheduler has already computed and touch as little as they
// can (bench/sched measures it): on-CPU time is the kernel's own
// se.sum_exec_runtime, run-queue latency its sched_info.last_queued
// against the run queue's clock (no wake-up hook, no clock read); the
// watched set is a bitmap and each thread's totals a slot of an array,
// found through its task storage (no hashing); and a thread's slot is
// written only on the CPU that switches it, so needs no atomics. User
// space reads both arrays through their mapped memory.

// PID_MAX_LIMIT of 64-bit kernels: every possible tgid has a bit.
#define PID_MAX_LIMIT (4 * 1024 * 1024)
#define MAX_THREADS 16384

// watched holds bit tgid%64 of word tgid/64 for each watched process.
// User space sets bits, fork sets its children's; both atomically, since
// neighbouring tgids share a word.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, PID_MAX_LIMIT / 64);
	__type(key, __u32);
	__type(value, __u64);
} watched SEC(".maps");

// threads holds the watched threads in the order first seen, kept after
// they exit so that their totals can still be read.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, MAX_THREADS);
	__type(key, __u32);
	__type(value, struct thread_entry);
} threads SEC(".maps");

// task_of holds each watched thread's task_info.
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct task_info);
} task_of SEC(".maps");

// Slots handed out; past MAX_THREADS, threads_lost counts the threads that
// found none.
__u32 threads_used;
__u64 threads_lost;

static __always_inline bool is_watched(__u32 tgid)
{
	__u32 word = (tgid / 64) & (PID_MAX_LIMIT / 64 - 1);
	__u64 *w = bpf_map_lookup_elem(&watched, &word);

	return tgid != 0 && w && (*w >> (tgid % 64)) & 1;
}

static __always_inline struct thread_entry *entry_of(struct task_struct *p)
{
	struct task_info *ti = bpf_task_storage_get(&task_of, p, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	__u32 i;

	if (!ti)
		return 0;
	if (ti->slot) {
		i = ti->slot - 1;
		return bpf_map_lookup_elem(&threads, &i);
	}
	// First sight: only this CPU switches p now, so no other takes its slot.
	i = __sync_fetch_and_add(&threads_used, 1);
	struct thread_entry *t = bpf_map_lookup_elem(&threads, &i);

	if (!t) {
		__sync_fetch_and_add(&threads_lost, 1);
		return 0;
	}
	ti->slot = i + 1;
	t->root = ti->root ? ti->root : p->tgid;
	// A thread born watched counts from its first instruction, even if
	// its first switch in was not seen; one that ran before the watch,
	// from now.
	t->runtime_in = ti->forked ? 0 : p->se.sum_exec_runtime;
	t->key.pid = p->pid;
	t->key.tgid = p->tgid;
	return t;
}

static __always_inline __u32 log2_us(__u64 ns)
{
	__u64 us = ns / 1000;
	__u32 k = 0;

	// Bounded loop, unrolled: the verifier needs no loop support.
#pragma unroll
	for (int i = 5; i >= 0; i--) {
		__u32 shift = 1u << i;

		if (us >> shift) {
			us >>= shift;
			k += shift;
		}
	}
	return k < RUNQ_BUCKETS ? k : RUNQ_BUCKETS - 1;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(watch_sched_switch, bool preempt, struct task_struct *prev,
	     struct task_struct *next, unsigned int prev_state)
{
	// The scheduler has updated prev's runtime and switch count, not yet
	// next's run-queue accounting (sched_info_arrive comes after).
	if (is_watched(prev->tgid)) {
		struct thread_entry *t = entry_of(prev);

		if (t) {
			__u64 rt = prev->se.sum_exec_runtime;

			// The runtime's growth since it was last accounted: its
			// run, and any run whose switch in went unseen (a thread
			// first seen here ran before the watch: nothing).
			if (rt > t->runtime_in)
				t->stats.oncpu_ns += rt - t->runtime_in;
			t->runtime_in = rt;
			// User space adds a running thread's current run to
			// oncpu_ns while on_cpu is set: the stores stay in order.
			barrier();
			t->on_cpu = 0;
			// The same rule as the kernel's nvcsw/nivcsw: a preempted
			// task, or one still TASK_RUNNING, did not choose to leave.
			if (preempt || prev_state == TASK_RUNNING)
				t->stats.involuntary++;
			else
				t->stats.voluntary++;
		}
	}
	if (is_watched(next->tgid)) {
		struct thread_entry *t = entry_of(next);

		if (!t)
			return 0;
		// Off a CPU its runtime does not grow: runtime_in stays where
		// the last switch out left it, and what it missed, if a switch
		// out went unseen, the next switch out adds.
		barrier();
		t->on_cpu = 1;
		// Queued when woken or preempted, by the clock of the run
		// queue it now runs from (set_task_cpu points se.cfs_rq at
		// it); 0 without CONFIG_SCHED_INFO.
		__u64 queued = next->sched_info.last_queued;

		if (queued && bpf_core_field_exists(next->se.cfs_rq)) {
			__u64 now = next->se.cfs_rq->rq->clock;

			if (now >= queued)
				t->stats.runq[log2_us(now - queued)]++;
		}
	}
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(watch_sched_process_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 tgid = child->tgid;

	if (!is_watched(parent->tgid))
		return 0;
	// A new thread has its parent's tgid, already watched.
	if (tgid != parent->tgid) {
		__u32 word = (tgid / 64) & (PID_MAX_LIMIT / 64 - 1);
		__u64 *w = bpf_map_lookup_elem(&watched, &word);

		if (w)
			__sync_fetch_and_or(w, 1ull << (tgid % 64));
	}
	// The child, thread or process, belongs to its parent's tree; the
	// parent runs, so its storage exists unless it ran since before the
	// watch, and then it is a root itself. The child has not run yet.
	struct task_info *pi = bpf_task_storage_get(&task_of, parent, 0, 0);
	struct task_info *ci = bpf_task_storage_get(&task_of, child, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);

	if (ci) {
		ci->root = pi && pi->root ? pi->root : parent->tgid;
		ci->forked = 1;
	}
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
