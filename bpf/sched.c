//go:build ignore

// Scheduler accounting (design §7).
//
// on_sched_switch counts context switches of every process: voluntary when
// the task blocked, involuntary when it was preempted while still runnable.
//
// The watch_* programs account, for a watched set of processes only, the
// on-CPU time, the switches and the run-queue latency per process and per
// thread. User space fills `watched`; forks of a watched process join it.

#include "vmlinux.h"
#include "bpf_helpers.h"
#include "bpf_tracing.h"

// The kernel's TASK_RUNNING and TASK_DEAD (include/linux/sched.h); macros
// are not in vmlinux.h.
#define TASK_RUNNING 0
#define TASK_DEAD 0x80

#define RUNQ_BUCKETS 32

struct switch_counts {
	__u64 voluntary;
	__u64 involuntary;
};

// LRU so that exited processes age out without a user-space sweeper.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32); // tgid
	__type(value, struct switch_counts);
} switches SEC(".maps");

SEC("tp_btf/sched_switch")
int BPF_PROG(on_sched_switch, bool preempt, struct task_struct *prev,
	     struct task_struct *next, unsigned int prev_state)
{
	__u32 tgid = prev->tgid;

	// tgid 0 is the idle task, which is not a process.
	if (tgid == 0)
		return 0;

	struct switch_counts *c = bpf_map_lookup_elem(&switches, &tgid);
	if (!c) {
		struct switch_counts zero = {};

		// NOEXIST: another CPU may have inserted it since the lookup.
		bpf_map_update_elem(&switches, &tgid, &zero, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&switches, &tgid);
		if (!c)
			return 0;
	}
	// The same rule as the kernel's nvcsw/nivcsw: a preempted task, or
	// one still TASK_RUNNING (0), did not choose to leave.
	if (preempt || prev_state == TASK_RUNNING)
		__sync_fetch_and_add(&c->involuntary, 1);
	else
		__sync_fetch_and_add(&c->voluntary, 1);
	return 0;
}

// sched_stats are the totals of a watched process or thread.
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

// task_times are the running timestamps of one thread (bpf_ktime_get_ns),
// 0 when not set.
struct task_times {
	__u64 oncpu_since;	// switched in
	__u64 runnable_since;	// woken or preempted, waiting for a CPU
};

// Plain hash maps, preallocated: updates never allocate in the scheduler.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32); // tgid
	__type(value, __u8);
} watched SEC(".maps");

// Kept after the process exits, so that its totals can still be read.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32); // tgid
	__type(value, struct sched_stats);
} proc_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct thread_key);
	__type(value, struct sched_stats);
} thread_stats SEC(".maps");

// Deleted at a thread's last switch out, so it does not outlive the thread.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32); // pid (thread id)
	__type(value, struct task_times);
} task_times SEC(".maps");

static __always_inline bool is_watched(__u32 tgid)
{
	return tgid != 0 && bpf_map_lookup_elem(&watched, &tgid);
}

static __always_inline void *lookup_or_init(void *map, const void *key, const void *zero)
{
	void *v = bpf_map_lookup_elem(map, key);

	if (v)
		return v;
	// NOEXIST: another CPU may have inserted it since the lookup.
	bpf_map_update_elem(map, key, zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(map, key);
}

static __always_inline struct task_times *times_of(__u32 pid)
{
	struct task_times zero = {};

	return lookup_or_init(&task_times, &pid, &zero);
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

// account adds one switch out, or one run-queue wait, to a thread and its
// process.
static __always_inline void account(__u32 tgid, __u32 pid, __u64 oncpu_ns,
				    int voluntary, int involuntary, int runq_bucket)
{
	struct sched_stats zero = {};
	struct thread_key tk = { .tgid = tgid, .pid = pid };
	struct sched_stats *s[2];

	s[0] = lookup_or_init(&proc_stats, &tgid, &zero);
	s[1] = lookup_or_init(&thread_stats, &tk, &zero);
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (!s[i])
			continue;
		if (oncpu_ns)
			__sync_fetch_and_add(&s[i]->oncpu_ns, oncpu_ns);
		if (voluntary)
			__sync_fetch_and_add(&s[i]->voluntary, 1);
		if (involuntary)
			__sync_fetch_and_add(&s[i]->involuntary, 1);
		if (runq_bucket >= 0 && runq_bucket < RUNQ_BUCKETS)
			__sync_fetch_and_add(&s[i]->runq[runq_bucket], 1);
	}
}

SEC("tp_btf/sched_switch")
int BPF_PROG(watch_sched_switch, bool preempt, struct task_struct *prev,
	     struct task_struct *next, unsigned int prev_state)
{
	__u64 now = bpf_ktime_get_ns();
	__u32 tgid = prev->tgid, pid = prev->pid;

	if (is_watched(tgid)) {
		bool runnable = preempt || prev_state == TASK_RUNNING;
		struct task_times *t = times_of(pid);
		__u64 oncpu = 0;

		if (t) {
			// Unset when the thread was already on a CPU at Watch.
			if (t->oncpu_since && now > t->oncpu_since)
				oncpu = now - t->oncpu_since;
			t->oncpu_since = 0;
			// A preempted thread waits on the run queue from now.
			t->runnable_since = runnable ? now : 0;
		}
		account(tgid, pid, oncpu, !runnable, runnable, -1);
		if (prev_state & TASK_DEAD)
			bpf_map_delete_elem(&task_times, &pid);
	}

	tgid = next->tgid;
	pid = next->pid;
	if (is_watched(tgid)) {
		struct task_times *t = times_of(pid);

		if (!t)
			return 0;
		t->oncpu_since = now;
		if (t->runnable_since && now > t->runnable_since)
			account(tgid, pid, 0, 0, 0, log2_us(now - t->runnable_since));
		t->runnable_since = 0;
	}
	return 0;
}

static __always_inline void woken(struct task_struct *p)
{
	if (!is_watched(p->tgid))
		return;
	struct task_times *t = times_of(p->pid);

	// A wakeup of a task already waiting keeps the earlier time.
	if (t && !t->runnable_since)
		t->runnable_since = bpf_ktime_get_ns();
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(watch_sched_wakeup, struct task_struct *p)
{
	woken(p);
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(watch_sched_wakeup_new, struct task_struct *p)
{
	woken(p);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(watch_sched_process_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 tgid = child->tgid;
	__u8 one = 1;

	// A new thread has its parent's tgid, already watched.
	if (tgid != parent->tgid && is_watched(parent->tgid))
		bpf_map_update_elem(&watched, &tgid, &one, BPF_ANY);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
