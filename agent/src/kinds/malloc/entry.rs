//! Where in a function to put its probe. A uprobe on an instruction the kernel can emulate
//! (push, call, jmp, a conditional jump, nop) costs the target ~0.5 µs a hit here; on any other
//! it must single-step the instruction out of line, ~18 µs (design-notes §8). glibc's `free`
//! starts with `test %rdi,%rdi`, its `memalign` with a RIP-relative compare: the probe goes on
//! the first emulated instruction instead, if only instructions that change neither the
//! argument registers nor the stack pointer come before it. There, the arguments are those the
//! function was called with, and the return address is still on top of the stack (what a
//! return probe needs).

/// How many instructions to look past at most.
const MAX_SKIPPED: usize = 4;

/// The offset, from the function's first byte, of the instruction to probe in `code` (the
/// function's first bytes), and whether the kernel emulates it. Offset 0 when nothing better
/// is certain.
pub fn probe_offset(code: &[u8]) -> (u64, bool) {
    let mut at = 0usize;
    for _ in 0..=MAX_SKIPPED {
        let Some(rest) = code.get(at..) else {
            break;
        };
        if is_emulated(rest) {
            return (at as u64, true);
        }
        match harmless_length(rest) {
            Some(length) => at += length,
            None => break,
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

/// The length of an instruction that changes no argument register (rdi, rsi, rdx, rcx), no
/// stack pointer and no memory, if `code` starts with one this knows.
fn harmless_length(code: &[u8]) -> Option<usize> {
    match code {
        // endbr64
        [0xf3, 0x0f, 0x1e, 0xfa, ..] => Some(4),
        // test r32, r32 / test r64, r64 (register operands only): flags.
        [0x85, modrm, ..] if modrm >> 6 == 3 => Some(2),
        [0x48..=0x4f, 0x85, modrm, ..] if modrm >> 6 == 3 => Some(3),
        // cmpb $imm8, disp32(%rip): flags.
        [0x80, 0x3d, _, _, _, _, _, ..] => Some(7),
        // cmpq $imm8, disp32(%rip): flags.
        [0x48, 0x83, 0x3d, _, _, _, _, _, ..] => Some(8),
        // mov r64, r64 into a register that carries no argument and is not the stack pointer.
        [rex @ 0x48..=0x4f, 0x89, modrm, ..] if modrm >> 6 == 3 => {
            let destination = (modrm & 7) | ((rex & 1) << 3);
            (!matches!(destination, 1 | 2 | 4 | 6 | 7)).then_some(3)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_first_is_probed_where_it_is() {
        // glibc 2.41 malloc: push %r12.
        assert_eq!(probe_offset(&[0x41, 0x54, 0x55]), (0, true));
        assert_eq!(probe_offset(&[0x53, 0x48]), (0, true));
    }

    #[test]
    fn harmless_tests_and_compares_are_stepped_over() {
        // glibc free: test %rdi,%rdi; je ...
        assert_eq!(
            probe_offset(&[0x48, 0x85, 0xff, 0x0f, 0x84, 1, 2, 3, 4]),
            (3, true)
        );
        // glibc memalign: cmpb $0x0,0x140e71(%rip); je ...
        let memalign = [0x80, 0x3d, 0x71, 0x0e, 0x14, 0x00, 0x00, 0x74, 0x07];
        assert_eq!(probe_offset(&memalign), (7, true));
        // endbr64; push %rbp
        assert_eq!(probe_offset(&[0xf3, 0x0f, 0x1e, 0xfa, 0x55]), (4, true));
    }

    #[test]
    fn anything_unknown_or_touching_arguments_keeps_the_entry() {
        // mov %rsi,%rdi changes an argument: stop there.
        assert_eq!(probe_offset(&[0x48, 0x89, 0xf7, 0x55]), (0, false));
        // mov %rdi,%rbx is harmless; sub $0x10,%rsp is not known.
        assert_eq!(
            probe_offset(&[0x48, 0x89, 0xfb, 0x48, 0x83, 0xec]),
            (0, false)
        );
        assert_eq!(probe_offset(&[0x48, 0x89, 0xfb, 0x55]), (3, true));
        assert_eq!(probe_offset(&[]), (0, false));
        assert_eq!(probe_offset(&[0x48, 0x85]), (0, false), "cut short");
    }
}
