//! How much of the target's CPU time the samples account for.
//!
//! Sampling events are per thread, and the kernel starts each new thread's sampling period from
//! zero: a thread that runs for less than one period (10 ms of CPU at 100 Hz) is never sampled.
//! A target made of short-lived threads can burn CPU that no sample shows (measured here: a
//! target of 5 ms threads used 1.7 s of CPU in a window, and got 0 samples at 100 Hz). The
//! process's own CPU counters keep the time of threads that have exited, so comparing them
//! with the samples tells how much went unseen, and the profile says so instead of silently
//! under-reporting. Only user time counts unless kernel frames are sampled too: without
//! `--kernel` the events exclude the kernel, and a syscall-heavy target is not under-sampled.

use std::time::Duration;

use procfs::process::Process;

use crate::process_identity::ProcessHandle;

/// Below this share of the target's CPU time in samples, the summary warns.
const WARN_BELOW: f64 = 0.6;
/// Less CPU time than this is too little to judge (a few samples' worth of noise).
const MIN_CPU: Duration = Duration::from_millis(500);

/// The target's CPU time over a recording window.
#[derive(Debug)]
pub struct CpuCoverage {
    /// The target (a reused PID must not lend it another process's CPU time).
    target: Option<ProcessHandle>,
    /// Count system time too (kernel frames are sampled).
    kernel: bool,
    start: Option<Duration>,
    used: Option<Duration>,
}

impl CpuCoverage {
    /// Reads the target's CPU time now, as the window opens: user time, and system time too
    /// when `kernel` frames are sampled.
    pub fn start(pid: u32, kernel: bool) -> Self {
        let target = ProcessHandle::open(pid);
        let start = target.as_ref().and_then(|t| cpu_time(t, kernel));
        CpuCoverage {
            target,
            kernel,
            start,
            used: None,
        }
    }

    /// Reads it again as the window closes (nothing if the target has gone).
    pub fn stop(&mut self) {
        let end = self.target.as_ref().and_then(|t| cpu_time(t, self.kernel));
        if let (Some(start), Some(end)) = (self.start, end) {
            self.used = Some(end.saturating_sub(start));
        }
    }

    /// The profile comment: CPU used against CPU sampled.
    pub fn comment(&self, samples: u64, frequency: u64) -> Option<String> {
        let used = self.used?;
        let sampled = sampled_time(samples, frequency);
        Some(format!(
            "target CPU time in the window: {:.2}s, in samples: {:.2}s ({:.0}%)",
            used.as_secs_f64(),
            sampled.as_secs_f64(),
            100.0 * share(sampled, used)
        ))
    }

    /// A warning when much of the target's CPU time is in no sample, with what to do.
    pub fn warning(&self, samples: u64, frequency: u64) -> Option<String> {
        let used = self.used.filter(|used| *used >= MIN_CPU)?;
        let sampled = sampled_time(samples, frequency);
        let share = share(sampled, used);
        (share < WARN_BELOW).then(|| {
            format!(
                "only {:.0}% of the {:.2}s of CPU the target used is in samples: threads that \
                 run for less than one sampling period ({:.1} ms) are never sampled; raise -F \
                 to see short-lived threads",
                100.0 * share,
                used.as_secs_f64(),
                1000.0 / frequency.max(1) as f64
            )
        })
    }
}

fn sampled_time(samples: u64, frequency: u64) -> Duration {
    Duration::from_secs_f64(samples as f64 / frequency.max(1) as f64)
}

fn share(part: Duration, whole: Duration) -> f64 {
    if whole.is_zero() {
        return 1.0;
    }
    part.as_secs_f64() / whole.as_secs_f64()
}

/// The CPU time of `target` as a whole, threads that have exited included: user time, plus
/// system time with `kernel`. None once it has exited (its PID may be another's by then).
fn cpu_time(target: &ProcessHandle, kernel: bool) -> Option<Duration> {
    let (utime, stime) = process_cpu_ticks(target.pid())?;
    let ticks = if kernel {
        utime.saturating_add(stime)
    } else {
        utime
    };
    let per_second = procfs::ticks_per_second().max(1);
    target
        .is_alive()
        .then(|| Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

fn process_cpu_ticks(pid: u32) -> Option<(u64, u64)> {
    let stat = Process::new(i32::try_from(pid).ok()?).ok()?.stat().ok()?;
    Some((stat.utime, stat.stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coverage(used_ms: u64) -> CpuCoverage {
        CpuCoverage {
            target: None,
            kernel: false,
            start: Some(Duration::ZERO),
            used: Some(Duration::from_millis(used_ms)),
        }
    }

    #[test]
    fn well_sampled_targets_get_no_warning() {
        let c = coverage(2000);
        assert_eq!(c.warning(190, 100), None);
        assert_eq!(
            c.comment(190, 100).unwrap(),
            "target CPU time in the window: 2.00s, in samples: 1.90s (95%)"
        );
    }

    #[test]
    fn unseen_cpu_is_warned_about() {
        let warning = coverage(1730).warning(0, 100).unwrap();
        assert!(warning.starts_with("only 0% of the 1.73s"), "{warning}");
        assert!(warning.contains("10.0 ms"), "{warning}");
    }

    #[test]
    fn too_little_cpu_or_a_gone_target_says_nothing() {
        assert_eq!(coverage(100).warning(0, 100), None);
        let gone = CpuCoverage {
            target: None,
            kernel: false,
            start: Some(Duration::ZERO),
            used: None,
        };
        assert_eq!(gone.comment(5, 100), None);
        assert_eq!(gone.warning(5, 100), None);
    }

    #[test]
    fn this_process_has_a_cpu_time() {
        let me = ProcessHandle::open(std::process::id()).expect("a handle on this process");
        let busy = std::time::Instant::now();
        while busy.elapsed() < Duration::from_millis(30) {}
        let user = cpu_time(&me, false).expect("user time");
        assert!(cpu_time(&me, true).expect("user + system time") >= user);
    }
}
