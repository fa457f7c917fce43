//! Why sampling could not start, each said in one line that tells the user what to do.

use std::io;

use nix::errno::Errno;

use super::host;

#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    #[error("no process with PID {0} (it may have exited); check it with `ps -p {0}`")]
    NoSuchProcess(u32),

    #[error(
        "PID {0} is a kernel thread: it has no user-space stacks to sample; pick a user process"
    )]
    KernelThread(u32),

    #[error("{}", permission_denied_message(*.pid, *.paranoid, *.in_container))]
    PermissionDenied {
        pid: u32,
        /// /proc/sys/kernel/perf_event_paranoid when the error happened, if readable.
        paranoid: Option<i64>,
        in_container: bool,
    },

    #[error(
        "this kernel supports neither the hardware cycles nor the software cpu-clock event \
         (perf_event_open: {errno}); it needs CONFIG_PERF_EVENTS"
    )]
    EventNotSupported { errno: Errno },

    #[error(
        "this kernel has no uprobe PMU ({reason}): uprobes need CONFIG_UPROBE_EVENTS and \
         Linux ≥ 4.17"
    )]
    UprobesUnsupported { reason: String },

    #[error("{}", kernel_event_permission_message(*.pid, *.paranoid, *.in_container))]
    KernelEventPermissionDenied {
        pid: u32,
        paranoid: Option<i64>,
        in_container: bool,
    },

    #[error("{}", uprobe_permission_message(*.in_container))]
    UprobePermissionDenied { in_container: bool },

    #[error("the kernel refused a uprobe on {probe} at file offset {offset:#x} (perf_event_open: {errno})")]
    UprobeRefused {
        /// What is probed, e.g. `pthread_create in /usr/lib/libc.so.6`.
        probe: String,
        offset: u64,
        errno: Errno,
    },

    #[error(
        "cannot lock even {ring_kib} KiB per CPU for perf ring buffers: the locked-memory limit \
         (`ulimit -l` {} KiB, on top of kernel.perf_event_mlock_kb {} KiB per CPU shared by all \
         perf users of this account) is used up; raise `ulimit -l` or \
         /proc/sys/kernel/perf_event_mlock_kb, stop other profilers of this user, or grant \
         CAP_IPC_LOCK",
        optional(*.memlock_kib),
        optional(*.mlock_kb)
    )]
    MlockLimit {
        ring_kib: usize,
        /// /proc/sys/kernel/perf_event_mlock_kb, if readable.
        mlock_kb: Option<i64>,
        /// The soft RLIMIT_MEMLOCK in KiB (`None`: unlimited, which cannot fail this way).
        memlock_kib: Option<u64>,
    },

    #[error(
        "out of file descriptors: sampling needs one per thread and CPU ({threads} threads × \
         {cpus} CPUs); raise `ulimit -n` (now {})",
        optional(*.limit)
    )]
    TooManyFiles {
        threads: usize,
        cpus: usize,
        limit: Option<u64>,
    },

    #[error(
        "sampling frequency {requested} Hz exceeds kernel.perf_event_max_sample_rate ({max} Hz): \
         lower the frequency or raise the sysctl"
    )]
    FrequencyTooHigh { requested: u64, max: u64 },

    #[error("invalid sampler configuration: {0}")]
    InvalidConfig(String),

    #[error("{syscall} failed: {source}")]
    Io {
        syscall: &'static str,
        source: io::Error,
    },
}

impl SamplerError {
    /// EACCES/EPERM from perf_event_open, with the facts the message needs read now.
    pub(crate) fn permission_denied(pid: u32) -> Self {
        SamplerError::PermissionDenied {
            pid,
            paranoid: host::kernel_sysctl("perf_event_paranoid"),
            in_container: host::in_container(),
        }
    }

    /// EACCES/EPERM from perf_event_open for an event that must count in the kernel (context
    /// switches).
    pub(crate) fn kernel_event_permission_denied(pid: u32) -> Self {
        SamplerError::KernelEventPermissionDenied {
            pid,
            paranoid: host::kernel_sysctl("perf_event_paranoid"),
            in_container: host::in_container(),
        }
    }

    /// EACCES/EPERM from perf_event_open on the uprobe PMU.
    pub(crate) fn uprobe_permission_denied() -> Self {
        SamplerError::UprobePermissionDenied {
            in_container: host::in_container(),
        }
    }

    pub(crate) fn mlock_limit(ring_bytes: usize) -> Self {
        SamplerError::MlockLimit {
            ring_kib: ring_bytes / 1024,
            mlock_kb: host::kernel_sysctl("perf_event_mlock_kb"),
            memlock_kib: host::memlock_limit().map(|bytes| bytes / 1024),
        }
    }

    pub(crate) fn too_many_files(threads: usize, cpus: usize) -> Self {
        SamplerError::TooManyFiles {
            threads,
            cpus,
            limit: host::nofile_soft_limit(),
        }
    }

    pub(crate) fn io(syscall: &'static str, source: impl Into<io::Error>) -> Self {
        SamplerError::Io {
            syscall,
            source: source.into(),
        }
    }
}

fn permission_denied_message(pid: u32, paranoid: Option<i64>, in_container: bool) -> String {
    let mut message = format!(
        "not allowed to sample PID {pid} (kernel.perf_event_paranoid = {}): run as root, grant \
         CAP_PERFMON (Linux ≥5.8) or CAP_SYS_ADMIN, or lower kernel.perf_event_paranoid",
        optional(paranoid)
    );
    if in_container {
        // Docker's default seccomp profile only lets perf_event_open through with CAP_PERFMON.
        message.push_str(
            "; in a container add --cap-add PERFMON (and a seccomp profile allowing \
             perf_event_open)",
        );
    }
    message
}

/// Context switches happen in the kernel: an event that samples them cannot exclude the kernel,
/// which `perf_event_paranoid` ≥ 2 forbids without CAP_PERFMON.
fn kernel_event_permission_message(pid: u32, paranoid: Option<i64>, in_container: bool) -> String {
    let mut message = format!(
        "not allowed to sample the context switches of PID {pid} (kernel.perf_event_paranoid = \
         {}): they happen in the kernel, which needs CAP_PERFMON (Linux ≥5.8) or CAP_SYS_ADMIN, \
         or kernel.perf_event_paranoid ≤ 1; run as root or grant CAP_PERFMON",
        optional(paranoid)
    );
    if in_container {
        message.push_str("; in a container add --cap-add PERFMON");
    }
    message
}

/// Uprobes need CAP_PERFMON whatever perf_event_paranoid says: lowering it does not help.
fn uprobe_permission_message(in_container: bool) -> String {
    let mut message = "not allowed to open uprobes: they need CAP_PERFMON (Linux ≥5.8) or \
                       CAP_SYS_ADMIN whatever kernel.perf_event_paranoid says; run as root or \
                       grant CAP_PERFMON"
        .to_owned();
    if in_container {
        message.push_str("; in a container add --cap-add PERFMON");
    }
    message
}

/// A value read from the host for a message, or "unknown" when it could not be read.
fn optional<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "unknown".to_owned(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_is_one_line() {
        let errors = [
            SamplerError::NoSuchProcess(7),
            SamplerError::KernelThread(2),
            SamplerError::PermissionDenied {
                pid: 7,
                paranoid: Some(2),
                in_container: true,
            },
            SamplerError::EventNotSupported {
                errno: Errno::ENOENT,
            },
            SamplerError::MlockLimit {
                ring_kib: 512,
                mlock_kb: None,
                memlock_kib: Some(0),
            },
            SamplerError::TooManyFiles {
                threads: 900,
                cpus: 64,
                limit: Some(1024),
            },
            SamplerError::FrequencyTooHigh {
                requested: 200_000,
                max: 100_000,
            },
            SamplerError::UprobesUnsupported {
                reason: "/sys/bus/event_source/devices/uprobe/type does not exist".into(),
            },
            SamplerError::UprobePermissionDenied { in_container: true },
            SamplerError::KernelEventPermissionDenied {
                pid: 7,
                paranoid: Some(2),
                in_container: false,
            },
            SamplerError::UprobeRefused {
                probe: "pthread_create in /usr/lib/libc.so.6".into(),
                offset: 0x89380,
                errno: Errno::ENOENT,
            },
            SamplerError::InvalidConfig("stack_bytes must be a multiple of 8".into()),
            SamplerError::io("mmap", Errno::EINVAL),
        ];
        for error in errors {
            let text = error.to_string();
            assert!(!text.contains('\n'), "{text}");
            assert!(!text.is_empty());
        }
    }

    #[test]
    fn permission_denied_names_the_fixes() {
        let outside = permission_denied_message(7, Some(2), false);
        assert!(outside.contains("perf_event_paranoid = 2"), "{outside}");
        assert!(outside.contains("CAP_PERFMON"), "{outside}");
        assert!(!outside.contains("--cap-add"), "{outside}");
        let inside = permission_denied_message(7, None, true);
        assert!(inside.contains("= unknown"), "{inside}");
        assert!(inside.contains("--cap-add PERFMON"), "{inside}");
    }

    #[test]
    fn the_mlock_error_names_the_limits_and_the_fixes() {
        let text = SamplerError::MlockLimit {
            ring_kib: 512,
            mlock_kb: Some(516),
            memlock_kib: Some(0),
        }
        .to_string();
        for words in [
            "512 KiB",
            "`ulimit -l` 0 KiB",
            "perf_event_mlock_kb 516",
            "CAP_IPC_LOCK",
        ] {
            assert!(text.contains(words), "{text}");
        }
    }

    #[test]
    fn errno_is_named() {
        let text = SamplerError::EventNotSupported {
            errno: Errno::EOPNOTSUPP,
        }
        .to_string();
        assert!(text.contains("EOPNOTSUPP"), "{text}");
    }
}
