//! What the agent's BPF loaders share (`gostack`, `kinds::waits::timer`): a loaded perf_event
//! program's descriptor, the fields of the entries the programs send through their ring buffers,
//! and the kernel's refusal of a program said in one line.

use std::os::fd::{AsFd, AsRawFd};

use anyhow::{Context, Result};
use aya::programs::PerfEvent;
use aya::Ebpf;

/// The descriptor of `ebpf`'s loaded perf_event program `name`, to attach to perf events
/// (`PERF_EVENT_IOC_SET_BPF`); open as long as `ebpf` lives.
pub fn perf_event_program_fd(ebpf: &Ebpf, name: &str) -> Result<i32> {
    let program: &PerfEvent = ebpf
        .program(name)
        .with_context(|| format!("no {name} program"))?
        .try_into()?;
    Ok(program.fd()?.as_fd().as_raw_fd())
}

/// The native-endian `u32` at byte `at` of a ring entry; None past its end.
pub fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(
        bytes.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// The native-endian `u64` at byte `at` of a ring entry; None past its end.
pub fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(
        bytes.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// An error as a comment line: a refused program's message carries the verifier's whole log
/// (thousands of lines); its first line, the verdict (the log's last lines but statistics) and
/// the system error that closes the message say why.
pub fn in_one_line(message: &str) -> String {
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    let Some((first, rest)) = lines.split_first() else {
        return String::new();
    };
    if rest.is_empty() {
        return (*first).to_owned();
    }
    let statistics = ["processed ", "verification time", "stack depth"];
    let is_verdict =
        |line: &&&str| !line.starts_with(':') && !statistics.iter().any(|s| line.starts_with(s));
    let verdict: Vec<&str> = rest.iter().filter(is_verdict).copied().collect();
    let verdict = &verdict[verdict.len().saturating_sub(2)..];
    let error = rest.last().filter(|line| line.starts_with(':'));
    format!(
        "{first} … {}{}",
        verdict.join("; "),
        error.copied().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_past_an_entry_s_end_are_none() {
        let bytes = [1, 0, 0, 0, 2, 0, 0, 0];
        assert_eq!(u32_at(&bytes, 4), Some(u32::from_ne_bytes([2, 0, 0, 0])));
        assert_eq!(u64_at(&bytes, 0), Some(u64::from_ne_bytes(bytes)));
        assert_eq!(u32_at(&bytes, 5), None);
        assert_eq!(u64_at(&bytes, usize::MAX), None);
    }

    #[test]
    fn a_verifier_log_comes_down_to_its_first_line_and_verdict() {
        let refused = "cannot load: the BPF_PROG_LOAD syscall failed. Verifier output: arg#0\n\
                       0: R1=ctx() R10=fp0\n\
                       434: (79) r4 = *(u64 *)(r2 -136)\n\
                       invalid access to map value, value_size=16384 off=16384 size=8\n\
                       R2 max value is outside of the allowed memory range\n\
                       verification time 613344 usec\n\
                       stack depth 272\n\
                       processed 92579 insns (limit 1000000)\n\
                       : Permission denied (os error 13)";
        assert_eq!(
            in_one_line(refused),
            "cannot load: the BPF_PROG_LOAD syscall failed. Verifier output: arg#0 … invalid \
             access to map value, value_size=16384 off=16384 size=8; R2 max value is outside of \
             the allowed memory range: Permission denied (os error 13)"
        );
        assert_eq!(in_one_line("no CAP_BPF"), "no CAP_BPF");
        assert_eq!(in_one_line(""), "");
    }
}
