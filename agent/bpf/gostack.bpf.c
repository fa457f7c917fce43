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
// g.sched as `systemstack` does). Signal handlers run on a third stack, gsignal, the thread's
// alternate signal stack: the code they interrupted is found through the signal frame.
//
// `go_stack` runs at every overflow of the agent's CPU-time events of one Go process (100 a
// second per thread by default). It finds the running `g` in thread-local storage, where the
// runtime keeps it for every thread it runs, also in C code (FS base + the binary's offset of
// `runtime.tlsg`), or else in R14 (Go >= 1.17 on amd64 keeps it there in Go code), and checks
// it: g's m must run g as its g0, its current goroutine or its gsignal (not a thread id check:
// Go's `m.procid` is the thread id in the target's PID namespace). For each sample it sends a
// group of entries through `stacks`, ending with one that says how the group ends: in a
// signal handler, the interrupted registers (from the signal frame) and stack, after which
// the rest is about the interrupted code; for a vdso call, the caller's registers and stack;
// then, on g0 for a goroutine, the goroutine's (g.sched); on g0 for none, that; otherwise
// nothing but the end. A group per sample lets the agent pair them in order, whichever of the
// two the kernel stamps first (since Linux 6.3 the sample is stamped before the program runs,
// before that after).
// `go_stack_target` does the same for events that count every task on a CPU (wall's), and
// keeps only the target's overflows as samples. `go_stack` never drops a sample itself (it
// returns 1); but the kernel drops a sample whose program cannot run because another BPF
// tracing program runs on that CPU at that moment (a kprobe, or the agent's own sched_switch
// program of a wall or block recording).

#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "user_regs.h"

// Bytes of the goroutine's stack copied, from its saved stack pointer up (bounded by the
// stack's top). Handlers' stacks above the runtime are a few KiB deep.
#define STACK_BYTES 16384

// Field offsets in the target's Go runtime structs, from its DWARF or its code
// (GoRuntimeLayout).
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
	__u64 m_gsignal;
	__u64 g_stack_lo;
};

// What an entry is. All but SWITCH_VDSO and SWITCH_SIGNAL end their sample's group.
#define SWITCH_NONE 0   // nothing to follow (or no g to follow it from)
#define SWITCH_SCHED 1  // on g0 for the goroutine m.curg: its g.sched
#define SWITCH_VDSO 2   // in a vdso call: m.vdsoPC / m.vdsoSP
#define SWITCH_PARKED 3 // on g0 for no goroutine (it was descheduled): g0's frames are all
#define SWITCH_SIGNAL 4 // in a signal handler (on gsignal): the interrupted registers and stack

// A signal handler's frame is searched for in at most this many bytes at the top of the signal
// stack (the kernel puts it below the FPU state it saves there, at most ~11 KiB with AMX).
#define SIGNAL_TOP_BYTES 16384
#define SIGNAL_TOP_WORDS (SIGNAL_TOP_BYTES / 8)

// x86-64's ucontext_t, in words: uc_flags, uc_link, uc_stack {ss_sp, ss_flags, ss_size}, then
// uc_mcontext {r8, r9, r10, r11, r12, r13, r14, r15, di, si, bp, bx, dx, ax, cx, sp, ip, ...}.
#define UC_STACK_SP 2
#define UC_STACK_SIZE 4
#define UC_BP (5 + 10)
#define UC_SP (5 + 15)
#define UC_IP (5 + 16)


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

// The top of a signal stack, copied to find the signal frame in.
struct signal_top {
	__u64 words[SIGNAL_TOP_WORDS];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct signal_top);
} signal_top SEC(".maps");

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
	if (kind != SWITCH_NONE && kind != SWITCH_PARKED && pc && sp && hi > sp) {
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

// Registers of the code a signal interrupted, as the kernel saved them for the handler.
struct interrupted {
	__u64 ip;
	__u64 sp;
	__u64 bp;
};

#ifndef NO_SIGNAL_SEARCH
// Word `k` of a copied signal stack top; 0 past it. The barrier keeps the compiler from
// folding the bound into the caller's index arithmetic, which the verifier could not follow.
static __always_inline __u64 top_word(struct signal_top *top, __u64 k)
{
	asm volatile("" : "+r"(k));
	if (k >= SIGNAL_TOP_WORDS)
		return 0;
	return top->words[k];
}

// A search of a signal stack's top for a signal frame, one bpf_loop step per candidate.
struct scan {
	struct signal_top *top;
	__u64 first; // the word the search starts at
	__u64 lo;    // what uc_stack holds: ss_sp, and ss_size
	__u64 size;
	__s64 found; // the word the ucontext starts at; -1 if none
};

static long scan_step(__u32 i, void *data)
{
	struct scan *scan = data;
	__u64 at = scan->first + 2 * (__u64)i;
	if (at + UC_IP >= SIGNAL_TOP_WORDS)
		return 1;
	if (top_word(scan->top, at + UC_STACK_SP) == scan->lo &&
	    top_word(scan->top, at + UC_STACK_SIZE) == scan->size) {
		scan->found = (__s64)at;
		return 1;
	}
	return 0;
}

#endif

// Finds the frame of the signal whose handler runs at `sp` on the signal stack `lo..hi`: the
// kernel wrote it there with uc_stack = {lo, flags, hi - lo} (Go registers g.m.gsignal's
// stack as the thread's alternate signal stack), 16-byte aligned, and the innermost one is
// the nearest above `sp`. Fills `out` with the interrupted registers; -1 where none is found.
// The search is a bpf_loop (Linux >= 5.17): its step is verified once, not per word. Built
// also without it (NO_SIGNAL_SEARCH), for older kernels.
static __always_inline int signal_context(__u64 lo, __u64 hi, __u64 sp, struct interrupted *out)
{
#ifdef NO_SIGNAL_SEARCH
	return -1;
#else
	__u32 zero = 0;
	struct signal_top *top = bpf_map_lookup_elem(&signal_top, &zero);
	if (!top || hi <= lo || sp < lo || sp >= hi || (hi & 15))
		return -1;
	// From the handler's stack pointer up: the pages below may never have been touched, and
	// an untouched page fails the whole read.
	__u64 len = hi - (sp & ~15ULL);
	if (len > SIGNAL_TOP_BYTES)
		len = SIGNAL_TOP_BYTES;
	__u64 base = hi - len;
	if (bpf_probe_read_user(top->words, len, (const void *)base))
		return -1;
	struct scan scan = {
		.top = top,
		.first = sp > base ? ((sp - base) / 8) & ~1ULL : 0,
		.lo = lo,
		.size = hi - lo,
		.found = -1,
	};
	bpf_loop(SIGNAL_TOP_WORDS / 2, scan_step, &scan, 0);
	if (scan.found < 0)
		return -1;
	__u64 at = (__u64)scan.found;
	out->ip = top_word(top, at + UC_IP);
	out->sp = top_word(top, at + UC_SP);
	out->bp = top_word(top, at + UC_BP);
	return 0;
#endif
}

// Sends the group of entries of thread `tid`'s sample (see the top of this file).
static __always_inline void follow(struct config *cfg, __u32 tid)
{
	// The user registers, also when the sample interrupted a system call: the ones the
	// kernel saved on entry (the overflow's own registers are the kernel's then).
	struct user_regs regs;
	struct task_struct *task = bpf_get_current_task_btf();
	struct pt_regs *saved = (struct pt_regs *)bpf_task_pt_regs(task);
	if (!saved || bpf_probe_read_kernel(&regs, sizeof(regs), saved)) {
		send(tid, SWITCH_NONE, 0, 0, 0, 0);
		return;
	}

	// g: the runtime keeps it in thread-local storage for every thread it runs, also while C
	// code called through cgo runs (on g0, where R14 is the C code's); R14 holds it in Go
	// code, for when the offset in TLS is unknown (a stripped cgo binary). A candidate counts
	// if its m runs it as g0, as the goroutine or as gsignal.
	__u64 candidates[2] = {regs.r14, 0};
	if (cfg->tls_g) {
		__u64 fsbase = 0;
		if (!bpf_core_read(&fsbase, sizeof(fsbase), &task->thread.fsbase) && fsbase)
			candidates[0] = word(fsbase + cfg->tls_g);
		candidates[1] = regs.r14;
	}
	__u64 g = 0, m = 0, g0 = 0, curg = 0, gsignal = 0;
	for (int i = 0; i < 2; i++) {
		g = candidates[i];
		m = g ? word(g + cfg->g_m) : 0;
		g0 = m ? word(m + cfg->m_g0) : 0;
		curg = m ? word(m + cfg->m_curg) : 0;
		gsignal = m ? word(m + cfg->m_gsignal) : 0;
		if (m && (g == g0 || g == curg || g == gsignal))
			break;
		m = 0;
	}
	if (!m) {
		send(tid, SWITCH_NONE, 0, 0, 0, 0);
		return;
	}
	__u64 vdso_sp = word(m + cfg->m_vdso_sp);

	// In a signal handler, on the signal stack (whichever g the handler has set by then):
	// the registers and stack of the code it interrupted, which the rest is about (it ran as
	// the goroutine if its stack was the goroutine's, else on g0).
	__u64 lo = gsignal ? word(gsignal + cfg->g_stack_lo) : 0;
	__u64 hi = gsignal ? word(gsignal + cfg->g_stack_hi) : 0;
	if (regs.sp >= lo && regs.sp < hi) {
		// The handler's own vdso call (its caller is on gsignal): what the code it
		// interrupted was in, if anything, is lost (the handler's call saved it aside).
		if (vdso_sp >= lo && vdso_sp < hi) {
			send(tid, SWITCH_VDSO, word(m + cfg->m_vdso_pc), vdso_sp, word(vdso_sp - 16),
			     hi);
			vdso_sp = 0;
		}
		struct interrupted at;
		if (signal_context(lo, hi, regs.sp, &at)) {
			send(tid, SWITCH_NONE, 0, 0, 0, 0);
			return;
		}
		__u64 curg_lo = curg ? word(curg + cfg->g_stack_lo) : 0;
		__u64 curg_hi = curg ? word(curg + cfg->g_stack_hi) : 0;
		__u64 g0_lo = word(g0 + cfg->g_stack_lo), g0_hi = word(g0 + cfg->g_stack_hi);
		int on_curg = curg && at.sp >= curg_lo && at.sp < curg_hi;
		// In a vdso call made by the goroutine (which moved SP to g0's stack), it is still
		// the goroutine that runs: its caller's frames are on its own stack.
		int in_curg_vdso = curg && vdso_sp >= curg_lo && vdso_sp < curg_hi;
		g = on_curg || in_curg_vdso ? curg : g0;
		// Outside both stacks' bounds (Go only estimates g0's on threads the C library
		// started): as far as the copy goes.
		if (on_curg)
			hi = curg_hi;
		else if (at.sp >= g0_lo && at.sp < g0_hi)
			hi = g0_hi;
		else
			hi = at.sp + STACK_BYTES;
		send(tid, SWITCH_SIGNAL, at.ip, at.sp, at.bp, hi);
	}

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
}

SEC("perf_event")
int go_stack(void *ctx)
{
	__u32 zero = 0;
	struct config *cfg = bpf_map_lookup_elem(&config, &zero);
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (cfg && cfg->tgid && (pid_tgid >> 32) == cfg->tgid)
		follow(cfg, (__u32)pid_tgid);
	return 1;
}

// The same for an event that counts every task on its CPU (wall's CPU time, filtered in the
// kernel): only the target's overflows are samples.
SEC("perf_event")
int go_stack_target(void *ctx)
{
	__u32 zero = 0;
	struct config *cfg = bpf_map_lookup_elem(&config, &zero);
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!cfg || !cfg->tgid || (pid_tgid >> 32) != cfg->tgid)
		return 0;
	follow(cfg, (__u32)pid_tgid);
	return 1;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
