// SPDX-License-Identifier: MIT OR GPL-2.0
//
// x86-64's `struct pt_regs`, as the kernel saves a task's user registers on entry (a stable
// layout), read with bpf_task_pt_regs + bpf_probe_read_kernel. Shared by the agent's programs.

#ifndef RPROF_USER_REGS_H
#define RPROF_USER_REGS_H

#include <linux/types.h>

struct user_regs {
	__u64 r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	__u64 ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
};

#endif
