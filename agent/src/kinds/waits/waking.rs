//! The kernel's `sched:sched_waking` tracepoint: it fires in the thread that wakes another
//! (the releaser of a lock, in `futex(FUTEX_WAKE)`), with the woken thread's id in its raw
//! fields. Its id and field layout are published in tracefs.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::probes::tracefs::{field_offset, read_small, TRACEFS};

/// The event, under `events/`.
const EVENT: &str = "sched/sched_waking";

/// The tracepoint's id and where its `pid` field (the woken thread) and `common_pid` (the
/// waker) lie in a sample's raw data; both as the host's PID namespace numbers threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waking {
    pub id: u64,
    pid_offset: usize,
    common_pid_offset: usize,
}

impl Waking {
    /// Reads the tracepoint's id and layout from tracefs.
    pub fn find() -> Result<Waking> {
        let (id, format, dir) = tracepoint(EVENT)?;
        let pid_offset = field_offset(&format, "pid")
            .with_context(|| format!("no pid field in {}", dir.join("format").display()))?;
        let common_pid_offset = field_offset(&format, "common_pid")
            .with_context(|| format!("no common_pid field in {}", dir.join("format").display()))?;
        Ok(Waking {
            id,
            pid_offset,
            common_pid_offset,
        })
    }

    /// The woken thread's id in a sample's raw fields (the host's numbering).
    pub fn wakee(&self, raw: &[u8]) -> Option<u32> {
        pid_at(raw, self.pid_offset)
    }

    /// The waking thread's id in a sample's raw fields (the host's numbering).
    pub fn waker(&self, raw: &[u8]) -> Option<u32> {
        pid_at(raw, self.common_pid_offset)
    }
}

/// Tracepoint `event`'s id, format and directory in tracefs.
pub(super) fn tracepoint(event: &str) -> Result<(u64, String, PathBuf)> {
    let Some(dir) = TRACEFS
        .iter()
        .map(|root| Path::new(root).join("events").join(event))
        .find(|dir| dir.join("id").is_file())
    else {
        bail!(
            "the kernel's {event} tracepoint is not visible: tracefs is not mounted (mount \
             it with `mount -t tracefs nodev /sys/kernel/tracing`; in a container, mount the \
             host's /sys/kernel/tracing read-only)"
        );
    };
    let id = read_small(&dir.join("id"))?
        .trim()
        .parse()
        .with_context(|| format!("{}: not a tracepoint id", dir.join("id").display()))?;
    let format = read_small(&dir.join("format"))?;
    Ok((id, format, dir))
}

/// A positive `pid_t` at `offset` of `raw`.
pub(super) fn pid_at(raw: &[u8], offset: usize) -> Option<u32> {
    let bytes = raw.get(offset..offset.checked_add(4)?)?;
    let pid = i32::from_ne_bytes(bytes.try_into().ok()?);
    u32::try_from(pid).ok().filter(|&pid| pid > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMAT: &str = "name: sched_waking\nID: 375\nformat:\n\
        \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
        \tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\
        \tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\
        \tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;\n";

    #[test]
    fn the_woken_thread_is_read_where_the_format_says() {
        assert_eq!(field_offset(FORMAT, "pid"), Some(24));
        assert_eq!(field_offset(FORMAT, "common_pid"), Some(4));
        assert_eq!(field_offset(FORMAT, "missing"), None);
        let waking = Waking {
            id: 375,
            pid_offset: 24,
            common_pid_offset: 4,
        };
        let mut raw = vec![0u8; 36];
        raw[24..28].copy_from_slice(&4242i32.to_ne_bytes());
        raw[4..8].copy_from_slice(&77i32.to_ne_bytes());
        assert_eq!(waking.wakee(&raw), Some(4242));
        assert_eq!(waking.waker(&raw), Some(77));
        assert_eq!(waking.wakee(&raw[..26]), None, "cut short");
        raw[24..28].copy_from_slice(&(-1i32).to_ne_bytes());
        assert_eq!(waking.wakee(&raw), None);
    }
}
