//! Where in a function to put its probe. A uprobe on an instruction the kernel can emulate
//! (push, call, jmp, a conditional jump, nop) costs the target ~0.5 µs a hit here; on any other
//! it must single-step the instruction out of line, ~18 µs (design-notes §8). glibc's `free`
//! starts with `test %rdi,%rdi`, jemalloc's `malloc` with `cmp $0x1000,%rdi`: the probe goes
//! on the first emulated instruction instead, if only instructions that change neither the
//! arguments the call needs nor the stack pointer, and write no memory, come before it. There,
//! those arguments are the ones the function was called with, and the return address is still
//! on top of the stack (what a return probe needs).

/// How many instructions to look past at most.
const MAX_SKIPPED: usize = 12;
/// x86-64 register numbers.
const RSP: u8 = 4;

/// The offset, from the function's first byte, of the instruction to probe in `code` (the
/// function's first bytes), and whether the kernel emulates it; `arguments` are the registers
/// (x86-64 numbers: rdi 7, rsi 6, rdx 2) that must still hold the call's arguments there.
/// Offset 0 when nothing better is certain.
pub fn probe_offset(code: &[u8], arguments: &[u8]) -> (u64, bool) {
    let mut at = 0usize;
    for _ in 0..=MAX_SKIPPED {
        let Some(rest) = code.get(at..) else {
            break;
        };
        if is_emulated(rest) {
            return (at as u64, true);
        }
        match harmless(rest) {
            Some((length, written))
                if written.is_none_or(|r| r != RSP && !arguments.contains(&r)) =>
            {
                at += length;
            }
            _ => break,
        }
    }
    (0, false)
}

/// push reg, call rel32, jmp rel8/rel32, jcc rel8/rel32, nop: what x86's uprobes emulate.
fn is_emulated(code: &[u8]) -> bool {
    matches!(
        code,
        [0x50..=0x57, ..]
            | [0x41, 0x50..=0x57, ..]
            | [0xe8 | 0xe9 | 0xeb | 0x90, ..]
            | [0x70..=0x7f, ..]
            | [0x0f, 0x80..=0x8f, ..]
    )
}

/// An instruction this knows to write no memory and no register but (at most) one: its
/// length and that register. ALU operations and moves into a register (from a register, an
/// immediate or memory), `lea`, compares and tests; anything else is `None`.
fn harmless(code: &[u8]) -> Option<(usize, Option<u8>)> {
    if let [0xf3, 0x0f, 0x1e, 0xfa, ..] = code {
        return Some((4, None)); // endbr64
    }
    // An fs/gs segment override (thread-local data), then an optional REX prefix.
    let segment = usize::from(matches!(code.first(), Some(0x64 | 0x65)));
    let (rex, at) = match code.get(segment) {
        Some(&rex @ 0x40..=0x4f) => (rex, segment + 1),
        _ => (0, segment),
    };
    let opcode = *code.get(at)?;
    if opcode == 0x25 {
        // and $imm32, %eax/%rax
        return fits(code, at + 5, Some(0));
    }
    let modrm = *code.get(at + 1)?;
    let mode = modrm >> 6;
    let reg = ((modrm >> 3) & 7) | ((rex & 4) << 1);
    let rm = (modrm & 7) | ((rex & 1) << 3);
    let operand = operand_length(code.get(at + 1..)?)?;
    let end = at + 1 + operand;
    let (length, written) = match (opcode, mode) {
        // test, cmp: flags only (a memory operand is read).
        (0x85 | 0x39 | 0x3b, _) => (end, None),
        // add, or, and, sub, xor, mov into the r/m operand: a register only.
        (0x01 | 0x09 | 0x21 | 0x29 | 0x31 | 0x89, 3) => (end, Some(rm)),
        // ... into the reg operand, from a register or memory.
        (0x03 | 0x0b | 0x23 | 0x2b | 0x33 | 0x8b, _) => (end, Some(reg)),
        // lea computes an address, touches no memory.
        (0x8d, 0..=2) => (end, Some(reg)),
        // ALU with an immediate: /7 is cmp (flags only), the rest write the r/m register.
        (0x81, 3) => (end + 4, (reg & 7 != 7).then_some(rm)),
        (0x83, 3) => (end + 1, (reg & 7 != 7).then_some(rm)),
        (0x81, _) if reg & 7 == 7 => (end + 4, None),
        (0x80 | 0x83, _) if reg & 7 == 7 => (end + 1, None),
        // shifts of a register by an immediate.
        (0xc1, 3) => (end + 1, Some(rm)),
        _ => return None,
    };
    fits(code, length, written)
}

/// The bytes of a ModRM operand (the ModRM byte, SIB and displacement) at `code`.
fn operand_length(code: &[u8]) -> Option<usize> {
    let modrm = *code.first()?;
    let (mode, rm) = (modrm >> 6, modrm & 7);
    let sib = usize::from(mode != 3 && rm == 4);
    let displacement = match mode {
        0 if rm == 5 => 4,
        0 if sib == 1 && code.get(1)? & 7 == 5 => 4,
        1 => 1,
        2 => 4,
        _ => 0,
    };
    Some(1 + sib + displacement)
}

fn fits(code: &[u8], length: usize, written: Option<u8>) -> Option<(usize, Option<u8>)> {
    (code.len() >= length).then_some((length, written))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RDI: &[u8] = &[7];

    #[test]
    fn a_push_first_is_probed_where_it_is() {
        // glibc 2.41 malloc: push %r12.
        assert_eq!(probe_offset(&[0x41, 0x54, 0x55], RDI), (0, true));
        assert_eq!(probe_offset(&[0x53, 0x48], RDI), (0, true));
    }

    #[test]
    fn harmless_tests_and_compares_are_stepped_over() {
        // glibc free: test %rdi,%rdi; je ...
        let free = [0x48, 0x85, 0xff, 0x0f, 0x84, 1, 2, 3, 4];
        assert_eq!(probe_offset(&free, RDI), (3, true));
        // glibc memalign: cmpb $0x0,0x140e71(%rip); je ...
        let memalign = [0x80, 0x3d, 0x71, 0x0e, 0x14, 0x00, 0x00, 0x74, 0x07];
        assert_eq!(probe_offset(&memalign, &[7, 6]), (7, true));
        // endbr64; push %rbp
        assert_eq!(
            probe_offset(&[0xf3, 0x0f, 0x1e, 0xfa, 0x55], RDI),
            (4, true)
        );
    }

    #[test]
    fn jemallocs_entry_points_are_stepped_into() {
        // malloc, operator new: cmp $0x1000,%rdi; ja ...
        let malloc = [
            0x48, 0x81, 0xff, 0x00, 0x10, 0x00, 0x00, 0x0f, 0x87, 0x93, 0, 0, 0,
        ];
        assert_eq!(probe_offset(&malloc, RDI), (7, true));
        // free (5.3.0): mov %rdi,%rax; mov 0xa530e(%rip),%rdx; mov %rdi,%rcx;
        // shr $0x1a,%rax; and $0xffffffffc0000000,%rcx; and $0xf0,%eax;
        // add %fs:0x0,%rax; add %rdx,%rax; cmp 0x1b0(%rax),%rcx; jne ...
        let free = [
            0x48, 0x89, 0xf8, 0x48, 0x8b, 0x15, 0x0e, 0x53, 0x0a, 0x00, 0x48, 0x89, 0xf9, 0x48,
            0xc1, 0xe8, 0x1a, 0x48, 0x81, 0xe1, 0x00, 0x00, 0x00, 0xc0, 0x25, 0xf0, 0x00, 0x00,
            0x00, 0x64, 0x48, 0x03, 0x04, 0x25, 0x00, 0x00, 0x00, 0x00, 0x48, 0x01, 0xd0, 0x48,
            0x3b, 0x88, 0xb0, 0x01, 0x00, 0x00, 0x0f, 0x85, 0x8a, 0x00, 0x00, 0x00,
        ];
        assert_eq!(probe_offset(&free, RDI), (48, true));
        // rallocx: xor %ecx,%ecx; jmp ...
        assert_eq!(
            probe_offset(&[0x31, 0xc9, 0xe9, 1, 2, 3, 4], &[7, 6]),
            (2, true)
        );
        // sdallocx: mov %rdi,%r8; cmp $0x1000,%rsi; ja ...
        let sdallocx = [
            0x49, 0x89, 0xf8, 0x48, 0x81, 0xfe, 0, 0x10, 0, 0, 0x77, 0x0c,
        ];
        assert_eq!(probe_offset(&sdallocx, RDI), (10, true));
    }

    #[test]
    fn anything_unknown_or_touching_arguments_keeps_the_entry() {
        // mov %rsi,%rdi changes an argument: stop there.
        assert_eq!(probe_offset(&[0x48, 0x89, 0xf7, 0x55], RDI), (0, false));
        // ... which a call that needs only rsi may step over? No: rdi is what free needs.
        // mov %rdi,%rbx is harmless; sub $0x10,%rsp moves the stack.
        assert_eq!(
            probe_offset(&[0x48, 0x89, 0xfb, 0x48, 0x83, 0xec, 0x10, 0x55], RDI),
            (0, false)
        );
        assert_eq!(probe_offset(&[0x48, 0x89, 0xfb, 0x55], RDI), (3, true));
        // mov 0x1(%rip),%rdx: harmless to malloc, not to posix_memalign.
        let load_rdx = [0x48, 0x8b, 0x15, 1, 0, 0, 0, 0x55];
        assert_eq!(probe_offset(&load_rdx, RDI), (7, true));
        assert_eq!(probe_offset(&load_rdx, &[7, 6, 2]), (0, false));
        assert_eq!(probe_offset(&[], RDI), (0, false));
        assert_eq!(probe_offset(&[0x48, 0x85], RDI), (0, false), "cut short");
        assert_eq!(
            probe_offset(&[0x48, 0x81, 0xff, 0, 0x10], RDI),
            (0, false),
            "cut short"
        );
    }
}
