//go:build ignore

// Counts context switches per process (design §7): voluntary when the task
// blocked, involuntary when it was preempted while still runnable.

#include "vmlinux.h"
#include "bpf_helpers.h"
#include "bpf_tracing.h"

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
	if (preempt || prev_state == 0)
		__sync_fetch_and_add(&c->involuntary, 1);
	else
		__sync_fetch_and_add(&c->voluntary, 1);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
