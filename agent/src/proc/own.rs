//! The agent's own `/proc/self/status`: its capabilities and pinned memory.

use anyhow::{ensure, Context};
use procfs::process::{Process, Status};

/// The effective capability set (`CapEff`), `None` if it cannot be read.
fn effective_capabilities() -> Option<u64> {
    own_status().map(|status| status.capeff)
}

/// Whether capability number `cap` (capabilities(7)) is in the effective set.
pub fn has_capability(cap: u32) -> bool {
    effective_capabilities().is_some_and(|caps| caps & (1 << cap) != 0)
}

/// Memory pinned by this process (`VmPin`), in bytes.
pub fn pinned_bytes() -> Option<usize> {
    let kib = usize::try_from(own_status()?.vmpin?).ok()?;
    Some(kib.saturating_mul(1024))
}

fn own_status() -> Option<Status> {
    Process::myself().ok()?.status().ok()
}

/// The inode of the initial PID namespace (`PROC_PID_INIT_INO`).
const INITIAL_PID_NAMESPACE: u64 = 0xEFFF_FFFC;

/// Whether the agent runs in the initial PID namespace, where the thread ids it sees are the
/// kernel's own (those BPF programs see); an error that says where it runs otherwise.
pub fn in_initial_pid_namespace() -> anyhow::Result<()> {
    let link = std::fs::read_link("/proc/self/ns/pid").context("cannot read /proc/self/ns/pid")?;
    let inode = link
        .to_str()
        .and_then(|name| name.strip_prefix("pid:["))
        .and_then(|name| name.strip_suffix(']'))
        .and_then(|inode| inode.parse::<u64>().ok());
    ensure!(
        inode == Some(INITIAL_PID_NAMESPACE),
        "the agent runs in a PID namespace of its own ({}), where thread ids differ from the \
         kernel's",
        link.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_status() {
        assert!(effective_capabilities().is_some());
        assert!(pinned_bytes().is_some());
    }
}
