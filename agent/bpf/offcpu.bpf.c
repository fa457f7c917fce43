// SPDX-License-Identifier: MIT OR GPL-2.0
//
// Times the waits of one process's threads in the kernel, so that the agent need not write a
// record per context switch (12 % of a switch-heavy target's throughput on its own) nor copy a
// stack per switch. Built by agent/build.rs with clang; loaded by agent/src/kinds/waits/timer.rs.
//
// `on_switch` runs at every context switch of the machine (sched:sched_switch), ~0.4 µs each
// in these VMs:
//  - a thread of the target that leaves the CPU to sleep (not preempted) is noted as away since
//    now, and drawn for sampling (1 in `period`); a drawn one's user registers and stack are
//    copied now and sent through `stacks` (current is the thread leaving);
//  - a thread noted as away that comes back ends its wait: counted in `totals`, and sent to the
//    agent through `ends` when it was drawn;
//  - for `wall` (`config.runnable`), a thread of the target that leaves the CPU still runnable
//    (preempted, yielding) is noted and drawn the same way: its time waiting for a CPU is no
//    wait, but it is the thread's time, which a wall-clock profile shows whole.
// `on_waking` (sched:sched_waking, attached for `mutex` only) runs at every wakeup of the machine,
// in the thread that wakes: a thread of the target that wakes one away on a drawn wait (the
// releaser of a lock, in futex(FUTEX_WAKE)) has its registers and stack copied and sent through
// `stacks` too, with whom it woke.
// The copy is taken here rather than by a perf event counting context switches: such an event
// (one per CPU) prepares a sample at every switch of the machine before a filter can drop it,
// which cost a switch-heavy target ~6 % of its throughput on its own.
// `keep_target` filters the CPU-time events of `wall` (one per CPU as well) to the target's
// ticks.

#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

#include "user_regs.h"

// Pages of a departing thread's stack copied at most, from the page its stack pointer is in up
// (the agent's `--stack-size` decides how many, in `config`); a copy stops at the first page
// that cannot be read (the top of the thread's stack mapping).
#define STACK_PAGES 9
#define PAGE_BYTES 4096

// sched:sched_waking's fields (the thread woken), as tracefs lists them (checked like
// sched_switch's, below).
struct sched_waking_args {
	__u64 common;
	char comm[16];
	__s32 pid;
};

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
	__u32 tgid;        // the target, as the kernel's initial PID namespace numbers it
	__u32 period;      // a wait is sampled with probability 1/period (1: every wait; 0: none,
			   // while the agent measures the rate of waits)
	__u32 stack_pages; // pages of a copied stack (at most STACK_PAGES)
	__u32 wakers;      // on_waking copies wakers' stacks (else it is not attached anyway)
	__u32 runnable;    // time spent runnable off the CPU is noted too (wall)
	__u32 pad;
};

// A thread away, in slot tid % AWAY_SLOTS of `away`. An array, not a hash: its lookups compile
// to a few loads, and the switch program looks up the thread coming back at every switch of the
// machine. Two threads of the target whose ids share a slot (rare: a process has few threads
// against 65 536 slots) lose the older one's wait, counted in `untracked`.
#define AWAY_SLOTS 65536

struct away {
	__u64 since;    // CLOCK_MONOTONIC ns
	__u32 weight;   // the waits a sample stands for (its period); 0: not drawn
	__u32 tid;      // the slot's thread; 0: free
	__u32 runnable; // it left still runnable: waiting for a CPU, not a wait
	__u32 parked;   // noted by the agent (already waiting when the window opened), not here
};

// What `ends` carries: a drawn wait (or runnable time) that ended.
struct end {
	__u32 tid;
	__u32 weight;
	__u64 since;
	__u64 until;
	__u32 runnable;
	__u32 pad;
};

// What `stacks` carries: thread `tid`'s user registers (as it entered the kernel) and its stack
// from the start of `sp`'s page (`base`) up, `pages` pages of it, at `time`: as it left the CPU
// on a drawn wait (`wakee` 0; `time` is the wait's `since`), or as it woke thread `wakee`, away
// on a drawn wait.
struct stack_copy {
	__u32 tid;
	__u32 pages;
	__u64 time; // CLOCK_MONOTONIC ns
	__u64 ip;
	__u64 sp;
	__u64 bp;
	__u64 base;
	__u32 wakee;
	__u32 pad;
	__u8 stack[STACK_PAGES * PAGE_BYTES];
};

// The header alone.
#define COPY_HEADER 56

struct totals {
	__u64 waits;       // every wait of the target that ended
	__u64 nanoseconds; // their time off the CPU
	__u64 preemptions; // every time spent runnable off the CPU that ended (when noted)
	__u64 runnable_ns; // its time
	__u64 dropped;     // drawn waits whose end did not fit `ends` (the agent reads too slowly)
	__u64 untracked;   // waits lost: another thread of the target held their slot of `away`
	__u64 unsampled;   // stacks of drawn waits (or of their wakers) that did not fit `stacks`, or
			   // could not be read
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

// 16 MiB (32 MiB when wakers' stacks are copied too: the agent sets it at load): ~450 full
// copies, what the sampling budget (5 000 waits a second, one copy each, two for `mutex`) sends
// in 90 ms; the agent reads it every 25 ms (most copies are shorter: they stop at the top of the
// thread's stack).
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} stacks SEC(".maps");

// Where a copy is assembled before only its used part is copied to `stacks` (a ring
// entry reserved in place would take every page whatever the copy's length): an entry per CPU,
// indexed by the CPU's number (the agent sets max_entries to the highest possible CPU + 1 at
// load). Not a per-CPU array: its values are limited to 32 KiB. A CPU's entry has one user at a
// time: both programs run with interrupts off (sched_switch under the runqueue lock,
// sched_waking under the woken task's pi_lock), and the kernel's per-CPU guard for tracepoint,
// kprobe and perf_event programs (bpf_prog_active, trace_call_bpf) skips any such program that
// would nest on the same CPU (an NMI's perf_event program). Moving them to raw_tp/tp_btf or
// fentry, whose guard is per program, would need this re-checked.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stack_copy);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct totals);
} totals SEC(".maps");

static __always_inline void count_unsampled(void)
{
	__u32 zero = 0;
	struct totals *sum = bpf_map_lookup_elem(&totals, &zero);
	if (sum)
		sum->unsampled += 1;
}

// Sends the current thread's (`tid`'s) user registers and stack at `now`, and whom it woke
// (0 if it leaves on a wait). The stack is copied a page at a time from the page `sp` is in,
// so that a copy that reaches past the top of the thread's stack keeps the pages below it (a
// read that faults anywhere copies nothing). Returns 0 once sent, -1 if nothing was (counted).
static __always_inline int copy_stack(__u32 tid, __u32 wakee, __u64 now, __u32 pages)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct stack_copy *out = bpf_map_lookup_elem(&scratch, &cpu);
	if (!out) {
		count_unsampled();
		return -1;
	}
	struct user_regs regs;
	struct pt_regs *saved = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	// A thread without user registers (io_uring's workers have none) has no stack to show.
	if (!saved || bpf_probe_read_kernel(&regs, sizeof(regs), saved) || !regs.sp) {
		count_unsampled();
		return -1;
	}
	out->tid = tid;
	out->wakee = wakee;
	out->pad = 0;
	out->time = now;
	out->ip = regs.ip;
	out->sp = regs.sp;
	out->bp = regs.bp;
	out->base = regs.sp & ~(__u64)(PAGE_BYTES - 1);
	out->pages = 0;
	for (__u32 k = 0; k < STACK_PAGES; k++) {
		if (k >= pages)
			break;
		if (bpf_probe_read_user(out->stack + k * PAGE_BYTES, PAGE_BYTES,
					(const void *)(out->base + k * PAGE_BYTES)))
			break;
		out->pages = k + 1;
	}
	__u64 size = COPY_HEADER + (__u64)out->pages * PAGE_BYTES;
	// The agent reads the ring on its own schedule: no wakeup per copy.
	if (!out->pages || size > sizeof(*out) ||
	    bpf_ringbuf_output(&stacks, out, size, BPF_RB_NO_WAKEUP)) {
		count_unsampled();
		return -1;
	}
	return 0;
}

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
		__u32 runnable = back->runnable;
		back->tid = 0;
		back->weight = 0;
		struct totals *sum = bpf_map_lookup_elem(&totals, &zero);
		__u64 away = now > since ? now - since : 0;
		if (sum && runnable) {
			sum->preemptions += 1;
			sum->runnable_ns += away;
		} else if (sum) {
			sum->waits += 1;
			sum->nanoseconds += away;
		}
		if (weight) {
			struct end *end = bpf_ringbuf_reserve(&ends, sizeof(*end), 0);
			if (end) {
				end->tid = next;
				end->weight = weight;
				end->since = since;
				end->until = now;
				end->runnable = runnable;
				end->pad = 0;
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
	__u32 sleeping = (args->prev_state & SLEEPING_STATES) != 0;
	__u32 exiting = (args->prev_state & EXITING_STATES) != 0;
	__u32 runnable = !sleeping && !exiting && cfg->runnable;
	if (exiting || (!sleeping && !runnable)) {
		// Exiting, or preempted or yielding where that is not noted: no wait, no sample.
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
	left->weight = period <= 1 ? period : (bpf_get_prandom_u32() % period == 0 ? period : 0);
	left->tid = prev;
	left->runnable = runnable;
	left->parked = 0;
	// A drawn wait whose stack could not be sent is not sampled: its end would pair with
	// nothing, and its waker's copy would waste the ring.
	if (left->weight && copy_stack(prev, 0, now, cfg->stack_pages))
		left->weight = 0;
	return 1;
}

SEC("tracepoint/sched/sched_waking")
int on_waking(struct sched_waking_args *args)
{
	__u32 zero = 0;
	struct config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg || !cfg->tgid || !cfg->wakers)
		return 1;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if ((pid_tgid >> 32) != cfg->tgid)
		return 1;
	// Only the target's threads are noted as away: a woken thread noted there, on a drawn
	// wait, is the target's, and this wakeup ends that wait.
	__u32 wakee = args->pid;
	struct away *slot = wakee ? slot_of(wakee) : 0;
	if (!slot || slot->tid != wakee || !slot->weight)
		return 1;
	copy_stack((__u32)pid_tgid, wakee, bpf_ktime_get_ns(), cfg->stack_pages);
	return 1;
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

