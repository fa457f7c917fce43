// SPDX-License-Identifier: MIT OR GPL-2.0
//
// Times the waits of one process's threads in the kernel, so that the agent need not write a
// record per context switch (12 % of a switch-heavy target's throughput on its own) nor copy a
// stack per switch. Built by agent/build.rs with clang; loaded by agent/src/kinds/waits/timer.rs.
//
// `on_switch` runs at every context switch of the machine (sched:sched_switch), ~0.4 µs each
// in these VMs:
//  - a thread of the target that leaves the CPU to sleep (not preempted) is noted as away since
//    now, and drawn for sampling (1 in `period`);
//  - a thread noted as away that comes back ends its wait: counted in `totals`, and sent to the
//    agent through `ends` when it was drawn.
// `keep_sampled` filters the agent's context-switch events (one per CPU, counting every task's
// switches, each copying the stack of the thread leaving the CPU): only drawn switches of the
// target become samples. The tracepoint runs before the event counts the switch (both in
// __schedule, current = the thread leaving). `keep_target` filters the CPU-time events of `wall`
// (one per CPU as well) to the target's ticks.

#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

// sched:sched_switch's fields, as tracefs lists them since Linux 4.x (the agent checks the
// offsets against events/sched/sched_switch/format before loading this program).
struct sched_switch_args {
	__u64 common;
	char prev_comm[16];
	__s32 prev_pid;
	__s32 prev_prio;
	__s64 prev_state;
	char next_comm[16];
	__s32 next_pid;
	__s32 next_prio;
};

// prev_state's bits that mean the thread sleeps (S D T t P I); a preempted thread reports
// TASK_REPORT_MAX (0x100) and a yielding one 0: both still runnable, so no wait. A thread
// leaving the CPU for the last time reports X or Z (EXITING_STATES): no wait either.
#define SLEEPING_STATES 0xcf
#define EXITING_STATES 0x30

struct config {
	__u32 tgid;   // the target, as the kernel's initial PID namespace numbers it
	__u32 period; // a wait is sampled with probability 1/period (0 or 1: every wait)
};

// A thread away, in slot tid % AWAY_SLOTS of `away`. An array, not a hash: its lookups compile
// to a few loads, and the switch program looks up the thread coming back at every switch of the
// machine. Two threads of the target whose ids share a slot (rare: a process has few threads
// against 65 536 slots) lose the older one's wait, counted in `untracked`.
#define AWAY_SLOTS 65536

struct away {
	__u64 since;  // CLOCK_MONOTONIC ns
	__u32 weight; // the waits a sample stands for (its period); 0: not drawn
	__u32 tid;    // the slot's thread; 0: free
};

// What `ends` carries: a drawn wait that ended.
struct end {
	__u32 tid;
	__u32 weight;
	__u64 since;
	__u64 until;
};

struct totals {
	__u64 waits;       // every wait of the target that ended
	__u64 nanoseconds; // their time off the CPU
	__u64 dropped;     // drawn waits whose end did not fit `ends` (the agent reads too slowly)
	__u64 untracked;   // waits lost: another thread of the target held their slot of `away`
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, AWAY_SLOTS);
	__type(key, __u32);
	__type(value, struct away);
} away SEC(".maps");

// The slot of `tid`, if it holds that thread.
static __always_inline struct away *slot_of(__u32 tid)
{
	__u32 index = tid % AWAY_SLOTS;
	return bpf_map_lookup_elem(&away, &index);
}

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} ends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct totals);
} totals SEC(".maps");

SEC("tracepoint/sched/sched_switch")
int on_switch(struct sched_switch_args *args)
{
	__u32 zero = 0;
	struct config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg || !cfg->tgid)
		return 1;
	// The clock is read only for the target's switches: this runs at every switch of the
	// machine, and costs every one of them.
	__u64 now = 0;

	// The thread coming back, if it is a target thread noted as away.
	__u32 next = args->next_pid;
	struct away *back = next ? slot_of(next) : 0;
	if (back && back->tid == next) {
		now = bpf_ktime_get_ns();
		__u64 since = back->since;
		__u32 weight = back->weight;
		back->tid = 0;
		back->weight = 0;
		struct totals *sum = bpf_map_lookup_elem(&totals, &zero);
		if (sum) {
			sum->waits += 1;
			sum->nanoseconds += now > since ? now - since : 0;
		}
		if (weight) {
			struct end *end = bpf_ringbuf_reserve(&ends, sizeof(*end), 0);
			if (end) {
				end->tid = next;
				end->weight = weight;
				end->since = since;
				end->until = now;
				// The agent reads the ring on its own schedule: no wakeup per end.
				bpf_ringbuf_submit(end, BPF_RB_NO_WAKEUP);
			} else if (sum) {
				sum->dropped += 1;
			}
		}
	}

	// The thread leaving: current, whose process id tells whether it is the target's.
	if ((bpf_get_current_pid_tgid() >> 32) != cfg->tgid)
		return 1;
	__u32 prev = args->prev_pid;
	struct away *left = slot_of(prev);
	if (!left)
		return 1;
	if (!(args->prev_state & SLEEPING_STATES) || (args->prev_state & EXITING_STATES)) {
		// Preempted, yielding or exiting: no wait, and no sample (see keep_sampled).
		if (left->tid == prev) {
			left->tid = 0;
			left->weight = 0;
		}
		return 1;
	}
	if (left->tid && left->tid != prev) {
		// Another thread of the target, away, holds the slot: its wait is lost.
		struct totals *sum = bpf_map_lookup_elem(&totals, &zero);
		if (sum)
			sum->untracked += 1;
	}
	if (!now)
		now = bpf_ktime_get_ns();
	__u32 period = cfg->period;
	left->since = now;
	left->weight = period <= 1 ? 1 : (bpf_get_prandom_u32() % period == 0 ? period : 0);
	left->tid = prev;
	return 1;
}

SEC("perf_event")
int keep_sampled(void *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct away *left = slot_of(tid);
	// Only a wait noted and drawn just now (by on_switch, for this very switch) is sampled.
	return tid && left && left->tid == tid && left->weight ? 1 : 0;
}

SEC("perf_event")
int keep_target(void *ctx)
{
	__u32 zero = 0;
	struct config *cfg = bpf_map_lookup_elem(&config, &zero);
	// The CPU-time event of `wall` counts every task on its CPU: only the target's ticks are
	// samples.
	return cfg && cfg->tgid && (bpf_get_current_pid_tgid() >> 32) == cfg->tgid ? 1 : 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";

