//! `/proc/PID/stat`, through procfs: the state letter, the flags, the start time. Read with a
//! size bound and checked before procfs parses it, so that no text can make it panic.

use std::io::{self, Read};

use procfs::process::{Process, Stat, StatFlags};
use procfs::{FromRead, ProcError};

use super::bounded::SMALL_FILE_LIMIT;

/// The stat of process `pid` (its main thread's); [`ProcError::NotFound`] if there is no such
/// process.
pub fn process_stat(pid: u32) -> Result<Stat, ProcError> {
    let pid = i32::try_from(pid)
        .ok()
        .filter(|&pid| pid > 0)
        .ok_or(ProcError::NotFound(None))?;
    read_stat(&Process::new(pid)?)
}

/// The stat of `process`, read through its held directory: at most [`SMALL_FILE_LIMIT`]
/// bytes, parsed by [`parse_stat`].
pub(super) fn read_stat(process: &Process) -> Result<Stat, ProcError> {
    let mut text = Vec::new();
    process
        .open_relative("stat")?
        .take(SMALL_FILE_LIMIT)
        .read_to_end(&mut text)
        .map_err(|err| match err.kind() {
            io::ErrorKind::NotFound => ProcError::NotFound(None),
            _ => ProcError::Io(err, None),
        })?;
    parse_stat(&text).ok_or(ProcError::Incomplete(None))
}

/// The state letter of thread `tid` of process `pid` (`R` running or runnable, `S` sleeping,
/// ...); `None` if it is gone or its stat unreadable.
pub fn thread_state(pid: u32, tid: u32) -> Option<char> {
    let file = std::fs::File::open(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    let mut text = Vec::new();
    file.take(SMALL_FILE_LIMIT).read_to_end(&mut text).ok()?;
    parse_stat(&text).map(|stat| stat.state)
}

/// Whether a task has exited: a zombie, or on its way out.
pub fn is_exited(stat: &Stat) -> bool {
    matches!(stat.state, 'Z' | 'X' | 'x')
}

/// `PF_KTHREAD` in the flags: a kernel thread, with no user space to profile.
pub fn is_kernel_thread(stat: &Stat) -> bool {
    // Truncating: flags procfs does not know of must not hide the one asked about.
    StatFlags::from_bits_truncate(stat.flags).contains(StatFlags::PF_KTHREAD)
}

/// Parses the text of a stat file with procfs, `None` if malformed.
///
/// procfs converts the text lossily, trims it, then slices it one byte before the `(` and two
/// after the last `)`: the kernel's `PID (comm) S ...` always leaves room for that, but other
/// text (never the kernel's) could make a slice fall outside the text or inside a character.
/// So the same conversion is done here first and the shape checked: ASCII digits and a space
/// before the name, a space after it.
pub fn parse_stat(text: &[u8]) -> Option<Stat> {
    let text = String::from_utf8_lossy(text);
    let line = text.trim();
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let pid = line.get(..open.checked_sub(1)?)?;
    let bytes = line.as_bytes();
    let well_formed = !pid.is_empty()
        && pid.bytes().all(|b| b.is_ascii_digit())
        && bytes.get(open - 1) == Some(&b' ')
        && close > open
        && bytes.get(close + 1) == Some(&b' ');
    if !well_formed {
        return None;
    }
    Stat::from_read(line.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_come_after_the_last_parenthesis() {
        let text = "42 (my ) (server) S 1 42 42 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 3 0 987654 \
                    1000 10 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        let stat = parse_stat(text.as_bytes()).expect("parses");
        assert_eq!(stat.comm, "my ) (server");
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.starttime, 987654);
        assert!(!is_exited(&stat));
        assert!(!is_kernel_thread(&stat));
    }

    #[test]
    fn stat_lines_with_odd_names_parse() {
        let line = "42 (a) b (c) S 1 42 42 0 -1 2097216 0 0 0 0 5 6 0 0 20 0 1 0 9 0 0 \
                    18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let stat = parse_stat(line.as_bytes()).expect("parses");
        assert_eq!((stat.state, stat.flags), ('S', 2_097_216));
        assert!(is_kernel_thread(&stat));
        let malformed = [
            "42 (x) Z",
            "42 (x",
            "42 (x) ",
            "(x) S",
            "",
            ")(",
            "4\u{e9}2 (x) S",
            "42 (x)\u{e9} S",
            "42 (x) \u{85}",
            "42 x) (y S",
        ];
        for malformed in malformed {
            assert!(parse_stat(malformed.as_bytes()).is_none(), "{malformed:?}");
        }
    }

    #[test]
    fn no_cut_or_corrupted_line_panics() {
        let line = b"42 (a) b) S 1 42 42 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 9 0 0 \
                    18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        for end in 0..=line.len() {
            let _ = parse_stat(&line[..end]);
        }
        for at in 0..line.len() {
            for byte in [b'(', b')', b' ', 0xe9, 0xff, b'\n'] {
                let mut corrupted = line.to_vec();
                corrupted[at] = byte;
                let _ = parse_stat(&corrupted);
            }
        }
    }

    #[test]
    fn names_that_are_not_utf8_are_replaced_not_fatal() {
        let line = b"42 (caf\xe9\xff) R 1 42 42 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 9 0 0 \
                    18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let stat = parse_stat(line).expect("parses");
        assert!(stat.comm.starts_with("caf"));
        assert_eq!(stat.state, 'R');
    }

    #[test]
    fn this_process_is_a_live_user_process() {
        let stat = process_stat(std::process::id()).expect("we run");
        assert!(!is_exited(&stat) && !is_kernel_thread(&stat));
        assert!(matches!(process_stat(0), Err(ProcError::NotFound(_))));
        assert!(matches!(
            process_stat(u32::MAX),
            Err(ProcError::NotFound(_))
        ));
    }
}
