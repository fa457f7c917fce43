//! The system call a thread is blocked in, from `/proc/PID/task/TID/syscall`.

use super::syscall_names::syscall_name;

/// What `/proc/PID/task/TID/syscall` says about a thread that is not running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyscallInfo {
    /// System call number, or -1 when the thread is blocked outside a system call (for example in
    /// a page fault); `args` are then zero.
    pub nr: i64,
    /// Name of `nr` when known (x86-64).
    pub name: Option<&'static str>,
    pub args: [u64; 6],
    /// User stack pointer at kernel entry.
    pub sp: u64,
    /// User instruction pointer at kernel entry (just after the `syscall` instruction).
    pub pc: u64,
}

/// Parses the file's one line. `None` for "running" (the kernel cannot tell while the thread is on
/// a CPU) and for anything malformed.
///
/// The kernel prints `NR ARG1..ARG6 SP PC` in a system call, and `-1 SP PC` when blocked outside
/// one; numbers after the first are hexadecimal with a `0x` prefix.
pub(crate) fn parse_syscall(text: &[u8]) -> Option<SyscallInfo> {
    let text = std::str::from_utf8(text).ok()?.trim();
    let mut fields = text.split_ascii_whitespace();
    let nr: i64 = fields.next()?.parse().ok()?;
    let mut values = [0u64; 8];
    let mut count = 0;
    for field in fields {
        *values.get_mut(count)? = parse_hex(field)?;
        count += 1;
    }
    let (args, sp, pc) = match count {
        8 => (values[..6].try_into().ok()?, values[6], values[7]),
        2 => ([0; 6], values[0], values[1]),
        _ => return None,
    };
    Some(SyscallInfo {
        nr,
        name: syscall_name(nr),
        args,
        sp,
        pc,
    })
}

fn parse_hex(field: &str) -> Option<u64> {
    let digits = field.strip_prefix("0x").unwrap_or(field);
    u64::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_thread_blocked_in_a_syscall() {
        let line = b"202 0x55d0c0a040a0 0x80 0x0 0x0 0x0 0x0 0x7ffd2f1e8a70 0x7f3b1e29e1a4\n";
        let info = parse_syscall(line).unwrap();
        assert_eq!(info.nr, 202);
        assert_eq!(info.args, [0x55d0c0a040a0, 0x80, 0, 0, 0, 0]);
        assert_eq!(info.sp, 0x7ffd2f1e8a70);
        assert_eq!(info.pc, 0x7f3b1e29e1a4);
        if cfg!(target_arch = "x86_64") {
            assert_eq!(info.name, Some("futex"));
        }
    }

    #[test]
    fn parses_a_thread_blocked_outside_a_syscall() {
        let info = parse_syscall(b"-1 0x7ffd2f1e8a70 0x401136\n").unwrap();
        assert_eq!((info.nr, info.name), (-1, None));
        assert_eq!(
            (info.sp, info.pc, info.args),
            (0x7ffd2f1e8a70, 0x401136, [0; 6])
        );
    }

    #[test]
    fn running_and_garbage_give_nothing() {
        for text in [
            &b"running\n"[..],
            b"",
            b"0 0x1 0x2 0x3",
            b"0 0x1 0x2 0x3 0x4 0x5 0x6 0x7 0x8 0x9",
            b"0 0x1 zz",
            b"\xff\xfe",
        ] {
            assert_eq!(parse_syscall(text), None, "{text:?}");
        }
    }
}
