//! Facts about the host the sampler depends on or reports in its errors: online CPUs, perf
//! sysctls, file and memory limits, whether we run in a container, and the perf clock.

use std::fs;
use std::io;
use std::path::Path;

/// CPUs that are online now. Events are opened per CPU, so this decides how many rings exist.
/// CPUs brought online later are not sampled (their threads migrate back to the others).
pub(crate) fn online_cpus() -> io::Result<Vec<u32>> {
    if let Ok(text) = fs::read_to_string("/sys/devices/system/cpu/online") {
        if let Some(cpus) = parse_cpu_list(&text) {
            return Ok(cpus);
        }
    }
    // /sys is not always mounted in containers; /proc/stat lists one "cpuN" line per online CPU.
    let stat = fs::read_to_string("/proc/stat")?;
    let cpus: Vec<u32> = stat
        .lines()
        .filter_map(|line| {
            line.split_whitespace()
                .next()?
                .strip_prefix("cpu")?
                .parse()
                .ok()
        })
        .collect();
    if cpus.is_empty() {
        return Err(io::Error::other("no online CPU listed in /proc/stat"));
    }
    Ok(cpus)
}

/// The highest CPU number the kernel may ever give (`/sys/devices/system/cpu/possible`), for
/// tables indexed by CPU number: possible CPUs can be numbered sparsely.
pub(crate) fn highest_possible_cpu() -> io::Result<u32> {
    let text = fs::read_to_string("/sys/devices/system/cpu/possible")?;
    parse_cpu_list(&text)
        .and_then(|cpus| cpus.into_iter().max())
        .ok_or_else(|| io::Error::other(format!("unreadable possible CPU list {text:?}")))
}

/// Parses the kernel's CPU list format ("0-3,6,8-9"). `None` if anything is off.
pub(crate) fn parse_cpu_list(text: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',') {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?),
            None => {
                let cpu = part.parse::<u32>().ok()?;
                (cpu, cpu)
            }
        };
        if first > last {
            return None;
        }
        cpus.extend(first..=last);
    }
    cpus.sort_unstable();
    cpus.dedup();
    (!cpus.is_empty()).then_some(cpus)
}

/// An integer from /proc/sys/kernel/`name` (e.g. perf_event_paranoid), if readable.
pub(crate) fn kernel_sysctl(name: &str) -> Option<i64> {
    fs::read_to_string(Path::new("/proc/sys/kernel").join(name))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether we run inside a container, to tell the user which capability to add there.
pub(crate) fn in_container() -> bool {
    if Path::new("/.dockerenv").exists() || Path::new("/run/.containerenv").exists() {
        return true;
    }
    fs::read_to_string("/proc/1/cgroup").is_ok_and(|cgroups| {
        ["docker", "kubepods", "containerd", "libpod", "lxc"]
            .iter()
            .any(|runtime| cgroups.contains(runtime))
    })
}

/// Raises the soft RLIMIT_NOFILE to the hard limit: the sampler needs one descriptor per
/// (thread, CPU). Returns the soft limit now in force.
pub(crate) fn raise_nofile_limit() -> io::Result<u64> {
    let mut limit = nofile_limit()?;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: `limit` is a valid, initialised rlimit that the call only reads.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}

/// The current soft RLIMIT_NOFILE, for error messages.
pub(crate) fn nofile_soft_limit() -> Option<u64> {
    nofile_limit().ok().map(|limit| limit.rlim_cur)
}

fn nofile_limit() -> io::Result<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for the kernel to fill in.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(limit)
}

/// CLOCK_MONOTONIC in nanoseconds: the clock the events are told to stamp records with, so
/// record times compare with moments taken here.
pub(crate) fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the kernel to fill in. CLOCK_MONOTONIC always
    // exists, so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(now.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// Whether CAP_IPC_LOCK is in our effective set.
pub(crate) fn has_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    crate::proc::has_capability(CAP_IPC_LOCK)
}

/// The soft RLIMIT_MEMLOCK in bytes; `None` when unlimited.
pub(crate) fn memlock_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct, which `limit` is.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return None;
    }
    (limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_like_the_kernel_writes_them() {
        assert_eq!(parse_cpu_list("0-1\n"), Some(vec![0, 1]));
        assert_eq!(parse_cpu_list("0"), Some(vec![0]));
        assert_eq!(parse_cpu_list("0-2,4,6-7"), Some(vec![0, 1, 2, 4, 6, 7]));
    }

    #[test]
    fn malformed_cpu_lists_are_rejected() {
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("a-b"), None);
        assert_eq!(parse_cpu_list("0,,1"), None);
    }

    #[test]
    fn this_host_has_an_online_cpu() {
        assert!(!online_cpus().unwrap().is_empty());
    }

    #[test]
    fn monotonic_clock_advances() {
        let before = monotonic_ns();
        assert!(monotonic_ns() >= before);
        assert!(before > 0);
    }
}
