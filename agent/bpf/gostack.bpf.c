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
// C code called through cgo runs on g0 too (`asmcgocall` saves the goroutine's registers in
// g.sched as `systemstack` does).
//
// `go_stack` runs at every overflow of the agent's CPU-time events of one Go process (100 a
// second per thread by default). It finds the running `g` in thread-local storage, where the
// runtime keeps it for every thread it runs, also in C code (FS base + the binary's offset of
// `runtime.tlsg`), or else in R14 (Go >= 1.17 on amd64 keeps it there in Go code), and checks
// it: g's m must run g as its g0 or as its current goroutine (not a thread id check: Go's
// `m.procid` is the thread id in the target's PID namespace). For each
// sample it sends a group of entries through `stacks`, ending with one that says how the group
// ends: for a vdso call, the caller's registers and stack; then, on g0 for a goroutine, the
// goroutine's (g.sched); on g0 for none, that; otherwise nothing but the end. A group per
// sample lets the agent pair them in order, whichever of the two the kernel stamps first
// (since Linux 6.3 the sample is stamped before the program runs, before that after).
// It never drops a sample itself (it returns 1); but the kernel drops a sample whose program
// cannot run because another BPF tracing program runs on that CPU at that moment (a kprobe,
// or the agent's own sched_switch program of a wall or block recording).

#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

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
	__u64 m_vdso_sp;
	__u64 m_vdso_pc;
	__s64 tls_g; // where g is from the thread pointer (FS base); 0 if unknown
};

// What an entry is. All but SWITCH_VDSO end their sample's group.
#define SWITCH_NONE 0   // nothing to follow (or no g to follow it from)
#define SWITCH_SCHED 1  // on g0 for the goroutine m.curg: its g.sched
#define SWITCH_VDSO 2   // in a vdso call: m.vdsoPC / m.vdsoSP
#define SWITCH_PARKED 3 // on g0 for no goroutine (it was descheduled): g0's frames are all


// What `stacks` carries: the registers to resume unwinding from, and the stack from `sp` up.
struct switched {
	__u32 tid;
	__u32 kind;
	__u64 time; // CLOCK_MONOTONIC ns, within microseconds of the sample's own time
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

// Where an entry is assembled before only its used part is copied to `stacks` (a ring entry
// reserved in place would take STACK_BYTES whatever the stack's depth).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct switched);
} scratch SEC(".maps");

// What the agent reports: entries that could not be sent (`stacks` was full) and goroutine
// stacks that could not be read.
struct counts {
	__u64 dropped;
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

// The current task's FS base (x86-64's thread pointer), as the kernel keeps it for
// arch_prctl(ARCH_SET_FS) and clone(CLONE_SETTLS), the ways glibc and Go set it. Declared with
// the one field read: the loader (CO-RE) takes its offset from the running kernel's BTF.
struct thread_struct {
	unsigned long fsbase;
} __attribute__((preserve_access_index));

struct task_struct {
	struct thread_struct thread;
} __attribute__((preserve_access_index));

// Reads the target's word at `addr`; 0 when it cannot be read.
static __always_inline __u64 word(__u64 addr)
{
	__u64 value = 0;
	if (bpf_probe_read_user(&value, sizeof(value), (const void *)addr))
		return 0;
	return value;
}

static __always_inline void count_dropped(void)
{
	__u32 zero = 0;
	struct counts *c = bpf_map_lookup_elem(&counts, &zero);
	if (c)
		c->dropped += 1;
}

// Sends one entry: the registers to resume from and the stack from `sp` up to `hi` (at most
// STACK_BYTES); the header alone for SWITCH_NONE and SWITCH_PARKED, or when the stack cannot
// be read (the agent then resumes nowhere).
static __always_inline void send(__u32 tid, __u32 kind, __u64 pc, __u64 sp, __u64 bp, __u64 hi)
{
	__u32 zero = 0;
	struct switched *out = bpf_map_lookup_elem(&scratch, &zero);
	if (!out)
		return;
	out->tid = tid;
	out->kind = kind;
	out->pc = pc;
	out->sp = sp;
	out->bp = bp;
	out->len = 0;
	if ((kind == SWITCH_SCHED || kind == SWITCH_VDSO) && pc && sp && hi > sp) {
		__u64 len = hi - sp;
		if (len > STACK_BYTES)
			len = STACK_BYTES;
		if (bpf_probe_read_user(out->stack, len, (const void *)sp) == 0)
			out->len = len;
		else
			count_dropped();
	}
	out->time = bpf_ktime_get_ns();
	__u64 size = HEADER_BYTES + out->len;
	if (size > sizeof(*out))
		return;
	// The agent reads the ring before each batch of samples: no wakeup per entry.
	if (bpf_ringbuf_output(&stacks, out, size, BPF_RB_NO_WAKEUP))
		count_dropped();
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
	struct task_struct *task = bpf_get_current_task_btf();
	struct pt_regs *saved = (struct pt_regs *)bpf_task_pt_regs(task);
	if (!saved || bpf_probe_read_kernel(&regs, sizeof(regs), saved)) {
		send(tid, SWITCH_NONE, 0, 0, 0, 0);
		return 1;
	}

	// g: the runtime keeps it in thread-local storage for every thread it runs, also while C
	// code called through cgo runs (on g0, where R14 is the C code's); R14 holds it in Go
	// code, for when the offset in TLS is unknown (a stripped cgo binary). A candidate counts
	// if its m runs it as g0 or as the goroutine.
	__u64 candidates[2] = {regs.r14, 0};
	if (cfg->tls_g) {
		__u64 fsbase = 0;
		if (!bpf_core_read(&fsbase, sizeof(fsbase), &task->thread.fsbase) && fsbase)
			candidates[0] = word(fsbase + cfg->tls_g);
		candidates[1] = regs.r14;
	}
	__u64 g = 0, m = 0, g0 = 0, curg = 0;
	for (int i = 0; i < 2; i++) {
		g = candidates[i];
		m = g ? word(g + cfg->g_m) : 0;
		g0 = m ? word(m + cfg->m_g0) : 0;
		curg = m ? word(m + cfg->m_curg) : 0;
		if (m && (g == g0 || g == curg))
			break;
		m = 0;
	}
	if (!m) {
		send(tid, SWITCH_NONE, 0, 0, 0, 0);
		return 1;
	}
	__u64 vdso_sp = word(m + cfg->m_vdso_sp);

	// In a vdso call, whose Go caller moved SP (to g0's stack, or aligned it on g0): vdsoSP
	// is that caller's stack pointer after the call returns, on g's own stack; its frame
	// pointer was saved two words below (return address, then BP).
	if (vdso_sp)
		send(tid, SWITCH_VDSO, word(m + cfg->m_vdso_pc), vdso_sp, word(vdso_sp - 16),
		     word(g + cfg->g_stack_hi));
	// On g0 (perhaps after the vdso call above): for the goroutine m.curg, or for none.
	if (g == g0 && curg && curg != g0)
		send(tid, SWITCH_SCHED, word(curg + cfg->g_sched_pc), word(curg + cfg->g_sched_sp),
		     word(curg + cfg->g_sched_bp), word(curg + cfg->g_stack_hi));
	else if (g == g0 && !curg)
		send(tid, SWITCH_PARKED, 0, 0, 0, 0);
	else
		send(tid, SWITCH_NONE, 0, 0, 0, 0);
	return 1;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
