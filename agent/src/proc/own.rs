//! The agent's own `/proc/self/status`: its capabilities and pinned memory.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_status() {
        assert!(effective_capabilities().is_some());
        assert!(pinned_bytes().is_some());
    }
}
