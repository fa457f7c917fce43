//! Processes as /proc shows them to the agent: whether their files can be read. A process's
//! identity ([`Incarnation`]) and the lookup by name live in [`crate::process_identity`],
//! shared with `record` and `threads`.

pub use crate::process_identity::{find_by_name, Incarnation};

/// Why the agent cannot read `pid`'s files, if it cannot: without ptrace access (another
/// user's process, no CAP_SYS_PTRACE) perf still samples, but nothing can be unwound or named,
/// thread snapshots have no stacks and threadcreate finds nothing to probe.
pub fn access_problem(pid: u32) -> Option<String> {
    // The maps may be readable even then (CAP_PERFMON suffices); the target's root, through
    // which its files are read, is not.
    let err = std::fs::read_link(format!("/proc/{pid}/root")).err()?;
    (err.kind() == std::io::ErrorKind::PermissionDenied).then(|| {
        format!(
            "no ptrace access to PID {pid}: its profiles will have no function names and its \
             thread dumps no stacks; run as root or the target's user, or grant CAP_SYS_PTRACE \
             (container: --cap-add SYS_PTRACE; Kubernetes: securityContext.capabilities.add: \
             [SYS_PTRACE])"
        )
    })
}
