//! Explaining, in one actionable line, why the kernel refuses to let us read a target's stacks.

use std::io;
use std::path::Path;

use super::procinfo;
use crate::proc::{read_bounded, task_file, SMALL_FILE_LIMIT};

/// `CAP_SYS_PTRACE` (include/uapi/linux/capability.h).
const CAP_SYS_PTRACE: u32 = 19;

const GRANT_CAPABILITY: &str = "run as root or the target's user, or grant CAP_SYS_PTRACE \
    (container: --cap-add SYS_PTRACE; Kubernetes: securityContext.capabilities.add: [SYS_PTRACE])";

/// Why `action` (which needs ptrace access to `pid`) was refused with EPERM/EACCES, and what to do.
pub(crate) fn explain(pid: u32, action: &str) -> String {
    format!(
        "{action} not permitted for PID {pid}, so no stacks: {}",
        cause(pid)
    )
}

fn cause(pid: u32) -> String {
    match procinfo::tracer_pid(pid).filter(|&tracer| tracer != 0) {
        Some(tracer) => {
            format!("it is already traced by PID {tracer}: detach that debugger or tracer first")
        }
        None => advice(yama_ptrace_scope(), has_cap_sys_ptrace()),
    }
}

/// Why a process's threads' stacks, wait channels and system calls are hidden, if they are:
/// the kernel shows them only to a process with ptrace access to the target (here tested on the
/// main thread's syscall file, which needs it).
pub(crate) fn stacks_refused(pid: u32) -> Option<String> {
    match read_bounded(&task_file(pid, pid, "syscall"), SMALL_FILE_LIMIT) {
        Err(err) if err.kind() == io::ErrorKind::PermissionDenied => Some(format!(
            "no ptrace access to PID {pid}, so the kernel hides its threads' stacks, wait \
             channels and system calls: {}",
            cause(pid)
        )),
        _ => None,
    }
}

/// A tracer cannot trace its own thread group.
pub(crate) fn own_process() -> String {
    "rprof cannot stop the threads of its own process: take the snapshot from another process"
        .to_owned()
}

fn advice(yama_scope: Option<u32>, has_capability: bool) -> String {
    match (yama_scope, has_capability) {
        (Some(3), _) => {
            "kernel.yama.ptrace_scope is 3, which forbids ptrace for everyone until reboot".into()
        }
        (Some(1), false) => format!(
            "kernel.yama.ptrace_scope is 1 (only descendants may be traced): {GRANT_CAPABILITY}, \
             or set /proc/sys/kernel/yama/ptrace_scope to 0"
        ),
        (Some(2), false) => {
            format!("kernel.yama.ptrace_scope is 2 (admin only): {GRANT_CAPABILITY}")
        }
        (_, false) => GRANT_CAPABILITY.into(),
        (_, true) => "CAP_SYS_PTRACE is present, so a security module (SELinux, AppArmor) or a \
            user-namespace boundary refuses it: run the agent in the target's namespace"
            .into(),
    }
}

/// The Yama LSM setting, `None` when Yama is not built in.
fn yama_ptrace_scope() -> Option<u32> {
    let path = Path::new("/proc/sys/kernel/yama/ptrace_scope");
    let text = read_bounded(path, SMALL_FILE_LIMIT).ok()?;
    std::str::from_utf8(&text).ok()?.trim().parse().ok()
}

/// Whether this process has CAP_SYS_PTRACE in its effective set.
fn has_cap_sys_ptrace() -> bool {
    crate::proc::has_capability(CAP_SYS_PTRACE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_names_the_setting_and_the_capability() {
        assert!(advice(Some(1), false).contains("ptrace_scope is 1"));
        assert!(advice(Some(1), false).contains("--cap-add SYS_PTRACE"));
        assert!(advice(Some(2), false).contains("CAP_SYS_PTRACE"));
        assert!(advice(Some(3), true).contains("until reboot"));
        assert!(advice(None, false).contains("CAP_SYS_PTRACE"));
        assert!(advice(Some(0), true).contains("security module"));
    }

    #[test]
    fn explanations_are_one_line() {
        let text = explain(std::process::id(), "ptrace");
        assert!(!text.contains('\n'));
        assert!(text.starts_with("ptrace not permitted for PID"));
    }
}
