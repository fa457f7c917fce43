// SPDX-License-Identifier: MIT OR GPL-2.0
//
// Copies the goroutine stack that a Go thread left to run on its system stack, at the moment a
// CPU sample is taken. Built by agent/build.rs with clang; loaded by agent/src/gostack/capture.rs.
//
// Go runs runtime work (the allocator's slow path, the garbage collector, the scheduler, stack
// growth) on a separate stack per thread, g0: `systemstack`, `mcall` and `morestack` switch to
// it, and the goroutine's own frames wait on the goroutine's stack, saved in `g.sched`. Time
// functions (`nanotime1`, `time.now`) do the same around their vdso call, saving the caller in
// `m.vdsoPC`/`m.vdsoSP`. A sample's stack copy holds only the stack the thread runs on, so its
// unwind stops at the switch. By the time the agent unwinds the sample, the goroutine has run
// on: its stack must be copied now. Go's own profiler (sigprof) follows the same two links.
//
// `go_stack` runs at every overflow of the agent's CPU-time events of one Go process (100 a
// second per thread by default). It finds the running `g` in R14 (Go ≥ 1.17 on amd64 keeps it
// there in Go code), checks it against the thread (`g.m.procid` is the thread id), and when
// the thread runs on g0 for a goroutine, or in a vdso call, sends the goroutine's registers
// and the top of its stack through `stacks` (both, in that order, for a vdso call made on g0
// for a goroutine); on g0 for no goroutine, it says so. It never changes the verdict: every
// sample is kept.

#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

// Bytes of the goroutine's stack copied, from its saved stack pointer up (bounded by the
// stack's top). Handlers' stacks above the runtime are a few KiB deep.
#define STACK_BYTES 16384

// Field offsets in the target's Go runtime structs, from its DWARF (GoRuntimeLayout).
struct config {
	__u32 tgid; // the target, as the kernel's initial PID namespace numbers it
	__u32 pad;
	__u64 g_m;
	__u64 g_sched_sp;
	__u64 g_sched_pc;
	__u64 g_sched_bp;
	__u64 g_stack_hi;
	__u64 m_g0;
	__u64 m_curg;
	__u64 m_procid;
	__u64 m_vdso_sp;
	__u64 m_vdso_pc;
};

// What a switched stack is.
#define SWITCH_SCHED 1  // on g0 for the goroutine m.curg: its g.sched
#define SWITCH_VDSO 2   // in a vdso call: m.vdsoPC / m.vdsoSP
#define SWITCH_PARKED 3 // on g0 for no goroutine (it was descheduled): g0's frames are all


// What `stacks` carries: the registers to resume unwinding from, and the stack from `sp` up.
struct switched {
	__u32 tid;
	__u32 kind;
	__u64 time; // CLOCK_MONOTONIC ns, just before the sample's own time
	__u64 pc;
	__u64 sp;
	__u64 bp;
	__u64 len; // bytes of `stack` copied
	__u8 stack[STACK_BYTES];
};

// The header alone (a SWITCH_PARKED entry).
#define HEADER_BYTES 48

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} stacks SEC(".maps");

// The counts the agent reports: how many goroutine stacks were copied, and how many could not
// be.
struct counts {
	__u64 sent;
	__u64 dropped; // `stacks` was full, or the goroutine's stack could not be read
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counts);
} counts SEC(".maps");

// x86-64's `struct pt_regs`, as the kernel saves user registers on entry (a stable layout).
struct user_regs {
	__u64 r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	__u64 ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
};

// Reads the target's word at `addr`; 0 when it cannot be read.
static __always_inline __u64 word(__u64 addr)
{
	__u64 value = 0;
	if (bpf_probe_read_user(&value, sizeof(value), (const void *)addr))
		return 0;
	return value;
}

static __always_inline void count(int dropped)
{
	__u32 zero = 0;
	struct counts *c = bpf_map_lookup_elem(&counts, &zero);
	if (!c)
		return;
	if (dropped)
		c->dropped += 1;
	else
		c->sent += 1;
}

// Sends the registers to resume from and the stack from `sp` up to `hi` (at most
// STACK_BYTES) of one switch; for SWITCH_PARKED only the header.
static __always_inline void send(__u32 tid, __u32 kind, __u64 pc, __u64 sp, __u64 bp, __u64 hi)
{
	if (kind == SWITCH_PARKED) {
		struct switched *head = bpf_ringbuf_reserve(&stacks, HEADER_BYTES, 0);
		if (!head) {
			count(1);
			return;
		}
		head->tid = tid;
		head->kind = kind;
		head->time = bpf_ktime_get_ns();
		head->pc = head->sp = head->bp = head->len = 0;
		bpf_ringbuf_submit(head, BPF_RB_NO_WAKEUP);
		return;
	}
	if (!pc || !sp || hi <= sp) {
		count(1);
		return;
	}
	__u64 len = hi - sp;
	if (len > STACK_BYTES)
		len = STACK_BYTES;
	struct switched *out = bpf_ringbuf_reserve(&stacks, sizeof(*out), 0);
	if (!out) {
		count(1);
		return;
	}
	if (bpf_probe_read_user(out->stack, len, (const void *)sp)) {
		bpf_ringbuf_discard(out, BPF_RB_NO_WAKEUP);
		count(1);
		return;
	}
	out->tid = tid;
	out->kind = kind;
	out->time = bpf_ktime_get_ns();
	out->pc = pc;
	out->sp = sp;
	out->bp = bp;
	out->len = len;
	// The agent reads the ring before each batch of samples: no wakeup per stack.
	bpf_ringbuf_submit(out, BPF_RB_NO_WAKEUP);
	count(0);
}

SEC("perf_event")
int go_stack(void *ctx)
{
	__u32 zero = 0;
	struct config *cfg = bpf_map_lookup_elem(&config, &zero);
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!cfg || !cfg->tgid || (pid_tgid >> 32) != cfg->tgid)
		return 1;
	__u32 tid = (__u32)pid_tgid;

	// The user registers, also when the sample interrupted a system call: the ones the
	// kernel saved on entry (the overflow's own registers are the kernel's then).
	struct user_regs regs;
	struct pt_regs *saved = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	if (!saved || bpf_probe_read_kernel(&regs, sizeof(regs), saved))
		return 1;

	// R14 is g in Go code; anything else (C code of a cgo program, a few runtime assembly
	// instructions) fails the check that g's m runs this very thread.
	__u64 g = regs.r14;
	if (!g)
		return 1;
	__u64 m = word(g + cfg->g_m);
	if (!m || word(m + cfg->m_procid) != tid)
		return 1;
	__u64 g0 = word(m + cfg->m_g0);
	__u64 curg = word(m + cfg->m_curg);
	__u64 vdso_sp = word(m + cfg->m_vdso_sp);

	// In a vdso call, whose Go caller moved SP (to g0's stack, or aligned it on g0): vdsoSP
	// is that caller's stack pointer after the call returns, on g's own stack; its frame
	// pointer was saved two words below (return address, then BP).
	if (vdso_sp)
		send(tid, SWITCH_VDSO, word(m + cfg->m_vdso_pc), vdso_sp, word(vdso_sp - 16),
		     word(g + cfg->g_stack_hi));
	// On g0 (perhaps after the vdso call above): for the goroutine m.curg, or for none.
	if (g == g0 && curg && curg != g0)
		send(tid, SWITCH_SCHED, word(curg + cfg->g_sched_pc),
		     word(curg + cfg->g_sched_sp), word(curg + cfg->g_sched_bp),
		     word(curg + cfg->g_stack_hi));
	else if (g == g0 && !curg)
		send(tid, SWITCH_PARKED, 0, 0, 0, 0);
	return 1;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
