//! Signal frames: where a signal handler's stack leads back to the code the signal interrupted.
//!
//! The kernel starts a handler with a return address pointing at the process's restorer
//! (`sa_restorer`: glibc's `__restore_rt`, Go's `runtime.sigreturn__sigaction`), which only
//! calls `rt_sigreturn`; at the stack pointer the handler's frame unwinds to lies the
//! `ucontext_t` holding the interrupted registers. Unwind tables do not get an unwinder across:
//! glibc describes `__restore_rt` with DWARF expressions framehop does not evaluate, and Go's
//! restorer has no entry at all. So the restorer is recognized by its code, as libunwind and
//! gdb do, and the registers are read from the context.

use framehop::FrameAddress;

use super::modules::ModuleSet;
use super::Registers;

/// `mov $15, %rax; syscall`: rt_sigreturn, the whole of every x86-64 restorer.
const RT_SIGRETURN: [u8; 9] = [0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05];

/// Where an instruction pointer may be in a restorer: at its start, at its `syscall` (7 bytes
/// in), or just after it (the thread is in the kernel, returning from the handler).
const IN_RESTORER: [u64; 3] = [0, 7, 9];

/// Byte offsets in `ucontext_t` of the interrupted registers: `uc_mcontext` follows uc_flags,
/// uc_link and uc_stack (40 bytes) and holds r8–r15, rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp,
/// rip in that order.
const UC_RBP: u64 = 40 + 10 * 8;
const UC_RSP: u64 = 40 + 15 * 8;
const UC_RIP: u64 = 40 + 16 * 8;

/// Whether `frame` is a restorer's: a return address at one (the handler's caller, as the
/// kernel set it up), or, as the first frame, an instruction pointer inside one. Its stack
/// pointer then points at the signal's `ucontext_t`.
pub fn is_restorer(modules: &ModuleSet, frame: FrameAddress) -> bool {
    match frame {
        FrameAddress::ReturnAddress(address) => modules.code_is(address.get(), &RT_SIGRETURN),
        FrameAddress::InstructionPointer(ip) => IN_RESTORER.iter().any(|&into| {
            ip.checked_sub(into)
                .is_some_and(|start| modules.code_is(start, &RT_SIGRETURN))
        }),
    }
}

/// The interrupted registers, from the `ucontext_t` at `context`; None where it cannot be read
/// or holds no code address.
pub fn interrupted(
    context: u64,
    read: &mut impl FnMut(u64) -> Result<u64, ()>,
) -> Option<Registers> {
    let mut at = |offset: u64| read(context.checked_add(offset)?).ok();
    let regs = Registers {
        ip: at(UC_RIP)?,
        sp: at(UC_RSP)?,
        bp: at(UC_RBP)?,
    };
    (regs.ip != 0 && regs.sp != 0).then_some(regs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU64;
    use std::sync::Arc;

    use rprof_symbolizer::Symbolizer;

    /// This process's modules and the address of a restorer in them (glibc's `__restore_rt`,
    /// found by its code in libc's mapped text).
    fn own_restorer() -> (ModuleSet, u64) {
        let modules = ModuleSet::load(std::process::id(), Arc::new(Symbolizer::new())).unwrap();
        let found = modules.all().iter().find_map(|module| {
            let text = module.object.unwind_sections();
            let (svma, bytes) = (text.text_svma?, text.text?);
            let at = bytes
                .windows(RT_SIGRETURN.len())
                .position(|window| window == RT_SIGRETURN)?;
            Some(svma.start + at as u64 + module.bias)
        });
        (modules, found.expect("a restorer in libc"))
    }

    #[test]
    fn restorers_are_recognized_by_their_code() {
        let (modules, restorer) = own_restorer();
        let returning_to = |address: u64| {
            is_restorer(
                &modules,
                FrameAddress::ReturnAddress(NonZeroU64::new(address).unwrap()),
            )
        };
        assert!(returning_to(restorer));
        // Only its start is a handler's return address.
        assert!(!returning_to(restorer + 1) && !returning_to(restorer - 1));
        let at = |ip: u64| is_restorer(&modules, FrameAddress::InstructionPointer(ip));
        assert!(at(restorer) && at(restorer + 7) && at(restorer + 9));
        assert!(!at(restorer + 3) && !at(restorer + 10));
        // Code that is not mapped, and addresses that overflow.
        assert!(!at(8) && !at(u64::MAX) && !returning_to(u64::MAX));
    }

    #[test]
    fn interrupted_registers_come_from_the_context() {
        // A ucontext_t at 0x1000: rbp, rsp and rip at their places in uc_mcontext.
        let mut words = vec![0u64; 64];
        words[(UC_RBP / 8) as usize] = 0x7000;
        words[(UC_RSP / 8) as usize] = 0x6ff0;
        words[(UC_RIP / 8) as usize] = 0x40_1234;
        let mut read = |addr: u64| {
            let index = addr.checked_sub(0x1000).ok_or(())? / 8;
            words.get(index as usize).copied().ok_or(())
        };
        assert_eq!(
            interrupted(0x1000, &mut read),
            Some(Registers {
                ip: 0x40_1234,
                sp: 0x6ff0,
                bp: 0x7000
            })
        );
        // Unreadable, or no code address in it.
        assert_eq!(interrupted(0x2000, &mut read), None);
        assert_eq!(interrupted(0x1008, &mut read), None);
        assert_eq!(interrupted(u64::MAX - 8, &mut read), None);
    }
}
