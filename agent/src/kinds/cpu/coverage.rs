//! How much of the target's CPU time the samples account for.
//!
//! Sampling events are per thread, and the kernel starts each new thread's sampling period from
//! zero: a thread that runs for less than one period (10 ms of CPU at 100 Hz) is never sampled.
//! A target made of short-lived threads can burn CPU that no sample shows (measured here: a
//! target of 5 ms threads used 1.7 s of CPU in a window, and got 0 samples at 100 Hz). The
//! process's own CPU counters keep the time of threads that have exited, so comparing them
//! with the samples tells how much went unseen, and the profile says so instead of silently
//! under-reporting. User and system time count when kernel-mode samples are taken (the
//! default); where the kernel refuses them, only user time does, and the system time the
//! profile cannot see gets its own warning.

use std::time::Duration;

use procfs::process::Process;

use crate::process_identity::ProcessHandle;

/// Below this share of the target's CPU time in samples, the summary warns.
const WARN_BELOW: f64 = 0.6;
/// Less CPU time than this is too little to judge (a few samples' worth of noise).
const MIN_CPU: Duration = Duration::from_millis(500);
/// Unsampled system time below this share of the target's CPU time is not worth a warning.
const SYSTEM_WARN_ABOVE: f64 = 0.02;

/// User and system CPU time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Times {
    user: Duration,
    system: Duration,
}

impl Times {
    fn since(self, start: Times) -> Times {
        Times {
            user: self.user.saturating_sub(start.user),
            system: self.system.saturating_sub(start.system),
        }
    }

    fn total(self) -> Duration {
        self.user.saturating_add(self.system)
    }
}

/// The target's CPU time over a recording window.
#[derive(Debug)]
pub struct CpuCoverage {
    /// The target (a reused PID must not lend it another process's CPU time).
    target: Option<ProcessHandle>,
    /// Kernel-mode samples are taken: system time is sampled too.
    system_sampled: bool,
    start: Option<Times>,
    used: Option<Times>,
}

impl CpuCoverage {
    /// Reads the target's CPU time now, as the window opens. `system_sampled`: the samples
    /// include the time its threads spend in the kernel.
    pub fn start(pid: u32, system_sampled: bool) -> Self {
        let target = ProcessHandle::open(pid);
        let start = target.as_ref().and_then(cpu_times);
        CpuCoverage {
            target,
            system_sampled,
            start,
            used: None,
        }
    }

    /// Reads it again as the window closes (nothing if the target has gone).
    pub fn stop(&mut self) {
        let end = self.target.as_ref().and_then(cpu_times);
        if let (Some(start), Some(end)) = (self.start, end) {
            self.used = Some(end.since(start));
        }
    }

    /// The CPU time the samples stand for: user + system, or user alone.
    fn sampleable(&self) -> Option<Duration> {
        let used = self.used?;
        Some(if self.system_sampled {
            used.total()
        } else {
            used.user
        })
    }

    /// The profile comment: CPU used against CPU sampled.
    pub fn comment(&self, samples: u64, frequency: u64) -> Option<String> {
        let used = self.used?;
        let counted = self.sampleable()?;
        let sampled = sampled_time(samples, frequency);
        let against = if self.system_sampled {
            "user + system"
        } else {
            "user only: system time is not sampled"
        };
        Some(format!(
            "target CPU time in the window: {:.2}s (user {:.2}s, system {:.2}s), in samples: \
             {:.2}s ({:.0}% of {against})",
            used.total().as_secs_f64(),
            used.user.as_secs_f64(),
            used.system.as_secs_f64(),
            sampled.as_secs_f64(),
            100.0 * share(sampled, counted)
        ))
    }

    /// A warning when much of the target's CPU time is in no sample, with what to do.
    pub fn warning(&self, samples: u64, frequency: u64) -> Option<String> {
        let used = self.sampleable().filter(|used| *used >= MIN_CPU)?;
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

    /// When system time could not be sampled: how much of the target's CPU time that hides.
    pub fn unsampled_system(&self) -> Option<(Duration, f64)> {
        let used = self.used.filter(|_| !self.system_sampled)?;
        let hidden = share(used.system, used.total());
        (hidden > SYSTEM_WARN_ABOVE && used.total() >= MIN_CPU / 10)
            .then_some((used.system, hidden))
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

/// The CPU times of `target` as a whole, threads that have exited included. None once it has
/// exited (its PID may be another's by then).
fn cpu_times(target: &ProcessHandle) -> Option<Times> {
    let (utime, stime) = process_cpu_ticks(target.pid())?;
    let per_second = procfs::ticks_per_second().max(1) as f64;
    let time = |ticks: u64| Duration::from_secs_f64(ticks as f64 / per_second);
    target.is_alive().then(|| Times {
        user: time(utime),
        system: time(stime),
    })
}

fn process_cpu_ticks(pid: u32) -> Option<(u64, u64)> {
    let stat = Process::new(i32::try_from(pid).ok()?).ok()?.stat().ok()?;
    Some((stat.utime, stat.stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coverage(user_ms: u64, system_ms: u64, system_sampled: bool) -> CpuCoverage {
        CpuCoverage {
            target: None,
            system_sampled,
            start: Some(Times::default()),
            used: Some(Times {
                user: Duration::from_millis(user_ms),
                system: Duration::from_millis(system_ms),
            }),
        }
    }

    #[test]
    fn well_sampled_targets_get_no_warning() {
        let c = coverage(1500, 500, true);
        assert_eq!(c.warning(190, 100), None);
        assert_eq!(c.unsampled_system(), None);
        assert_eq!(
            c.comment(190, 100).unwrap(),
            "target CPU time in the window: 2.00s (user 1.50s, system 0.50s), in samples: 1.90s \
             (95% of user + system)"
        );
    }

    #[test]
    fn unseen_cpu_is_warned_about() {
        let warning = coverage(1730, 0, true).warning(0, 100).unwrap();
        assert!(warning.starts_with("only 0% of the 1.73s"), "{warning}");
        assert!(warning.contains("10.0 ms"), "{warning}");
    }

    #[test]
    fn unsampled_system_time_is_measured_against_user_time_alone() {
        let c = coverage(300, 700, false);
        // 30 samples at 100 Hz cover all the user time: no short-thread warning.
        assert_eq!(c.warning(30, 100), None);
        let (system, hidden) = c.unsampled_system().expect("system time hidden");
        assert_eq!(system, Duration::from_millis(700));
        assert!((hidden - 0.7).abs() < 1e-9);
        assert!(c
            .comment(30, 100)
            .unwrap()
            .ends_with("(100% of user only: system time is not sampled)"));
        assert_eq!(
            coverage(1000, 10, false).unsampled_system(),
            None,
            "1% is noise"
        );
    }

    #[test]
    fn too_little_cpu_or_a_gone_target_says_nothing() {
        assert_eq!(coverage(100, 0, true).warning(0, 100), None);
        let gone = CpuCoverage {
            target: None,
            system_sampled: false,
            start: Some(Times::default()),
            used: None,
        };
        assert_eq!(gone.comment(5, 100), None);
        assert_eq!(gone.warning(5, 100), None);
        assert_eq!(gone.unsampled_system(), None);
    }

    #[test]
    fn this_process_has_cpu_times() {
        let me = ProcessHandle::open(std::process::id()).expect("a handle on this process");
        let busy = std::time::Instant::now();
        while busy.elapsed() < Duration::from_millis(30) {}
        let times = cpu_times(&me).expect("CPU times");
        assert!(times.total() >= times.user && times.user > Duration::ZERO);
    }
}
