//! What a thread was doing in the kernel, in one frame: the system call it made, a page fault,
//! or just `[kernel]`.
//!
//! Go's CPU profile counts user and system time: time in a syscall shows under the Go frame
//! that made it. A CPU profile without `--kernel` does the same: kernel-mode samples keep the
//! user stack that entered the kernel (the registers and stack the kernel saved at entry) and
//! one frame on top for what the kernel was doing, not the kernel's own frames. That frame is
//! found in the sample's kernel call chain: the function the syscall dispatcher called
//! (`ksys_read`, `__x64_sys_futex`, named `[syscall read]`, `[syscall futex]`), or the page
//! fault handler.

use std::io::{BufRead, BufReader};
use std::ops::Range;

use crate::kallsyms::text_symbol;

/// Functions that enter the kernel for a system call and dispatch it (by name prefix: the
/// entry code has several labels, `entry_SYSCALL_64_after_hwframe`, `..._safe_stack`).
const DISPATCHERS: &[&str] = &["do_syscall_64", "x64_sys_call", "entry_SYSCALL_64"];
/// Functions a dispatcher calls around every syscall (tracing, signals, rescheduling on the way
/// out): syscall overhead, not a syscall's implementation.
const SYSCALL_WORK: &[&str] = &["syscall_", "exit_to_user_mode", "enter_from_user_mode"];
/// Functions that enter the kernel for a page fault.
const FAULT_ENTRIES: &[&str] = &["asm_exc_page_fault", "exc_page_fault"];
/// What the kernel prefixes syscall implementations with; stripped to name the syscall.
const SYSCALL_PREFIXES: &[&str] = &[
    "__x64_sys_",
    "__ia32_sys_",
    "__se_sys_",
    "__do_sys_",
    "ksys_",
    "__sys_",
    "do_sys_",
];
/// More lines than any kernel's /proc/kallsyms has: a bound for a file we read line by line.
const MAX_LINES: usize = 4_000_000;

/// The address ranges of the kernel's entry functions: a few ranges, not the symbol table.
#[derive(Debug, Default, Clone)]
pub struct KernelEntries {
    dispatchers: Vec<Range<u64>>,
    faults: Vec<Range<u64>>,
}

impl KernelEntries {
    /// Reads the entry functions' ranges from /proc/kallsyms. Empty when its addresses are
    /// hidden (kptr_restrict, no CAP_SYSLOG): every kernel frame is then `[kernel]`.
    pub fn load() -> Self {
        match std::fs::File::open("/proc/kallsyms") {
            Ok(file) => Self::parse(BufReader::new(file)),
            Err(_) => Self::default(),
        }
    }

    /// Each wanted function's range runs to the next text symbol's address (the core kernel's
    /// symbols come sorted).
    fn parse(reader: impl BufRead) -> Self {
        let mut entries = KernelEntries::default();
        let mut open: Option<(u64, bool)> = None;
        for line in reader.lines().take(MAX_LINES).map_while(Result::ok) {
            let Some((address, name)) = text_symbol(&line) else {
                continue;
            };
            if let Some((start, dispatcher)) = open.take() {
                if start < address {
                    let list = if dispatcher {
                        &mut entries.dispatchers
                    } else {
                        &mut entries.faults
                    };
                    list.push(start..address);
                }
            }
            if is_dispatcher(name) {
                open = Some((address, true));
            } else if FAULT_ENTRIES.contains(&name) {
                open = Some((address, false));
            }
        }
        entries
    }

    /// `chain` as the one frame [`KernelEntries::collapse`] keeps, if `entries` are given and the
    /// chain is not empty (a user-mode sample has none): what a profile that shows the
    /// syscall, not the kernel's own frames, puts on top of the user stack.
    pub fn collapsed(entries: Option<&Self>, chain: &[u64]) -> Option<[u64; 1]> {
        let entries = entries.filter(|_| !chain.is_empty())?;
        Some([entries.collapse(chain)])
    }

    /// The one frame of `chain` (kernel frames, leaf first) that says what the kernel was doing:
    /// the frame the innermost syscall dispatcher called (the dispatcher itself if the sample
    /// hit it), else the page fault entry, else 0, which names nothing (`[kernel]`). Syscalls
    /// do not nest, so the innermost dispatcher is the one that called the implementation.
    pub fn collapse(&self, chain: &[u64]) -> u64 {
        let within =
            |ranges: &[Range<u64>], address: u64| ranges.iter().any(|r| r.contains(&address));
        if let Some(inner) = chain.iter().position(|&a| within(&self.dispatchers, a)) {
            return chain[inner.saturating_sub(1)];
        }
        chain
            .iter()
            .copied()
            .find(|&a| within(&self.faults, a))
            .unwrap_or(0)
    }
}

/// The name of a collapsed frame, from the kernel function that contains it.
pub fn entry_name(function: Option<&str>) -> String {
    let Some(function) = function else {
        return "[kernel]".to_owned();
    };
    if is_dispatcher(function) || SYSCALL_WORK.iter().any(|p| function.starts_with(p)) {
        return "[syscall]".to_owned();
    }
    if FAULT_ENTRIES.contains(&function) {
        return "[page fault]".to_owned();
    }
    let syscall = SYSCALL_PREFIXES
        .iter()
        .find_map(|prefix| function.strip_prefix(prefix))
        .unwrap_or(function);
    format!("[syscall {syscall}]")
}

fn is_dispatcher(function: &str) -> bool {
    DISPATCHERS.iter().any(|d| function.starts_with(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KALLSYMS: &str = "\
ffffffff81000100 T ksys_read
ffffffff81000200 T vfs_read
ffffffff81000300 t do_syscall_64
ffffffff81000400 T entry_SYSCALL_64_after_hwframe
ffffffff81000480 T syscall_exit_to_user_mode
ffffffff81000500 T asm_exc_page_fault
ffffffff81000540 T clear_page
ffffffff81000600 D some_data
";

    fn entries() -> KernelEntries {
        KernelEntries::parse(KALLSYMS.as_bytes())
    }

    #[test]
    fn ranges_run_to_the_next_text_symbol() {
        let entries = entries();
        assert_eq!(
            entries.dispatchers,
            vec![
                0xffffffff81000300..0xffffffff81000400,
                0xffffffff81000400..0xffffffff81000480
            ]
        );
        assert_eq!(entries.faults, vec![0xffffffff81000500..0xffffffff81000540]);
    }

    #[test]
    fn a_syscall_collapses_to_what_the_dispatcher_called() {
        let entries = entries();
        // read_zero ← vfs_read ← ksys_read ← do_syscall_64 ← entry
        let chain = [
            0xdead,
            0xffffffff81000210,
            0xffffffff81000110,
            0xffffffff81000310,
            0xffffffff81000410,
        ];
        assert_eq!(entries.collapse(&chain), 0xffffffff81000110);
        assert_eq!(
            entries.collapse(&chain[3..]),
            0xffffffff81000310,
            "in the dispatcher itself"
        );
        assert_eq!(
            entries.collapse(&chain[4..]),
            0xffffffff81000410,
            "in the entry code"
        );
        // A fault inside a syscall (copy_to_user) is the syscall's time.
        let fault_in_syscall = [
            0xffffffff81000550,
            0xffffffff81000510,
            0xffffffff81000110,
            0xffffffff81000310,
        ];
        assert_eq!(entries.collapse(&fault_in_syscall), 0xffffffff81000110);
    }

    #[test]
    fn faults_and_the_rest_collapse_to_their_entry_or_nothing() {
        let entries = entries();
        assert_eq!(
            entries.collapse(&[0xffffffff81000550, 0xffffffff81000510]),
            0xffffffff81000510
        );
        assert_eq!(
            entries.collapse(&[0xffffffff81000210]),
            0,
            "an interrupt: no entry known"
        );
        assert_eq!(entries.collapse(&[]), 0);
        assert_eq!(
            KernelEntries::default().collapse(&[0xffffffff81000310]),
            0,
            "hidden symbols"
        );
    }

    #[test]
    fn names_say_which_syscall_or_what_else() {
        assert_eq!(entry_name(Some("ksys_read")), "[syscall read]");
        assert_eq!(entry_name(Some("__x64_sys_futex")), "[syscall futex]");
        assert_eq!(entry_name(Some("do_epoll_wait")), "[syscall do_epoll_wait]");
        assert_eq!(entry_name(Some("do_syscall_64")), "[syscall]");
        assert_eq!(entry_name(Some("entry_SYSCALL_64_safe_stack")), "[syscall]");
        assert_eq!(entry_name(Some("syscall_exit_to_user_mode")), "[syscall]");
        assert_eq!(entry_name(Some("exit_to_user_mode_loop")), "[syscall]");
        assert_eq!(entry_name(Some("asm_exc_page_fault")), "[page fault]");
        assert_eq!(entry_name(None), "[kernel]");
    }

    #[test]
    fn garbage_lines_are_skipped() {
        let text = "zz T do_syscall_64\n0 T do_syscall_64\nffff t\n\n10 T do_syscall_64\n";
        assert!(KernelEntries::parse(text.as_bytes()).dispatchers.is_empty());
    }
}
