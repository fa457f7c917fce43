//! Uprobes defined in tracefs (`uprobe_events`) and opened as tracepoints. Unlike the uprobe
//! PMU's (threadcreate's fallback), such events can be opened per thread with `inherit` (the PMU's
//! make the target's pthread_create fail), fetch the arguments and return value into the
//! sample's raw fields, and close in 0.17 ms instead of ~85 ms while another event of the same
//! probe stays open (the keeper's): what windows of a few milliseconds need (design-notes §8).
//!
//! Definitions live in the kernel, not in the agent: each recording defines its probes in a
//! group of its own, `rprof_<agent pid>_<n>`, removes them when it ends, and removes at start
//! the groups of agents that are gone (killed before they could).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context, Result};

/// Where tracefs is mounted, in the order kernels and distributions use.
pub(crate) const TRACEFS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
/// A probe's format file is a few hundred bytes; `uprobe_events` a line per probe.
const MAX_FORMAT_BYTES: usize = 16 << 10;
const MAX_EVENTS_BYTES: usize = 4 << 20;
/// The prefix of every group this agent defines.
const GROUP_PREFIX: &str = "rprof_";

/// Recordings defined by this process so far: each gets a group of its own.
static GROUPS: AtomicU32 = AtomicU32::new(0);

/// One defined probe: its tracepoint id and where its fetched values lie in a sample's raw
/// fields (`a`, `b`, `c` for an entry probe, `r` for a return probe).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defined {
    pub id: u64,
    pub fields: Vec<usize>,
}

impl Defined {
    /// Fetched value `index` of a hit.
    pub fn value(&self, raw: &[u8], index: usize) -> Option<u64> {
        let at = *self.fields.get(index)?;
        let bytes = raw.get(at..at.checked_add(8)?)?;
        Some(u64::from_ne_bytes(bytes.try_into().ok()?))
    }
}

/// The probes one recording defined, removed when dropped (close their events first: the
/// kernel refuses to remove a probe that is open).
#[derive(Debug)]
pub struct ProbeGroup {
    root: PathBuf,
    group: String,
    names: Vec<String>,
}

impl ProbeGroup {
    /// A new, empty group; removes first the probes of agents that are gone.
    pub fn new() -> Result<ProbeGroup> {
        let root = root()?;
        remove_orphans(&root);
        let group = format!(
            "{GROUP_PREFIX}{}_{}",
            std::process::id(),
            GROUPS.fetch_add(1, Ordering::Relaxed)
        );
        Ok(ProbeGroup {
            root,
            group,
            names: Vec::new(),
        })
    }

    /// Defines an entry probe (fetching the first three integer arguments) or a return probe
    /// (fetching the return value) at `offset` of the file at `path`.
    pub fn define(&mut self, path: &str, offset: u64, ret: bool) -> Result<Defined> {
        let name = format!("p{}", self.names.len());
        let (kind, fetch) = if ret {
            ('r', "r=$retval:u64")
        } else {
            ('p', "a=%di:u64 b=%si:u64 c=%dx:u64")
        };
        let line = format!("{kind}:{}/{name} {path}:{offset:#x} {fetch}\n", self.group);
        if let Err(error) = append(&self.root, &line) {
            let remedy = remedy(&self.root, &error);
            return Err(error)
                .with_context(|| format!("cannot define the uprobe {}{remedy}", line.trim_end()));
        }
        self.names.push(name.clone());
        let dir = self.root.join("events").join(&self.group).join(&name);
        let id = read_small(&dir.join("id"))?
            .trim()
            .parse()
            .with_context(|| format!("{}: not a tracepoint id", dir.join("id").display()))?;
        let format = read_small(&dir.join("format"))?;
        let wanted: &[&str] = if ret { &["r"] } else { &["a", "b", "c"] };
        let fields = wanted
            .iter()
            .map(|field| {
                field_offset(&format, field)
                    .with_context(|| format!("no field {field} in {}", dir.display()))
            })
            .collect::<Result<_>>()?;
        Ok(Defined { id, fields })
    }
}

impl Drop for ProbeGroup {
    fn drop(&mut self) {
        for name in &self.names {
            if let Err(error) = append(&self.root, &format!("-:{}/{name}\n", self.group)) {
                tracing::warn!(group = self.group, name, %error, "cannot remove a uprobe");
            }
        }
    }
}

/// The mounted tracefs with uprobe events.
fn root() -> Result<PathBuf> {
    let Some(root) = TRACEFS
        .iter()
        .map(PathBuf::from)
        .find(|root| root.join("uprobe_events").is_file())
    else {
        bail!(
            "tracefs with uprobe_events is not mounted (mount it with `mount -t tracefs nodev \
             /sys/kernel/tracing`, as root; in a container, mount the host's \
             /sys/kernel/tracing)"
        );
    };
    Ok(root)
}

/// Removes the groups of agents that no longer run.
fn remove_orphans(root: &Path) {
    remove_groups(root, orphaned);
}

/// Removes the probes agent `pid` defined (its keeper does, once the agent died). Probes
/// still open cannot be removed: the agent's last thread may still be closing its
/// descriptors, so this tries again for up to `patience`.
pub fn remove_groups_of(pid: u32, patience: std::time::Duration) {
    let Ok(root) = root() else {
        return;
    };
    let deadline = std::time::Instant::now() + patience;
    while remove_groups(&root, |group| group_owner(group) == Some(pid)) > 0
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Removes the probes of the groups `remove` picks; returns how many could not be removed.
fn remove_groups(root: &Path, remove: impl Fn(&str) -> bool) -> usize {
    let Ok(text) = read_bounded(&root.join("uprobe_events"), MAX_EVENTS_BYTES) else {
        return 0;
    };
    text.lines()
        .filter_map(event_name)
        .filter(|(group, _)| remove(group))
        .filter(|(group, name)| append(root, &format!("-:{group}/{name}\n")).is_err())
        .count()
}

/// The PID of the agent that defined `group`, if it is ours.
fn group_owner(group: &str) -> Option<u32> {
    group
        .strip_prefix(GROUP_PREFIX)?
        .split('_')
        .next()?
        .parse()
        .ok()
}

/// `GROUP/NAME` of a `uprobe_events` line (`p:GROUP/NAME PATH:OFFSET ...`).
fn event_name(line: &str) -> Option<(&str, &str)> {
    let (_, rest) = line.split_once(':')?;
    let (event, _) = rest.split_once(' ')?;
    event.split_once('/')
}

/// A group of ours whose agent is gone (or dead, not reaped yet).
fn orphaned(group: &str) -> bool {
    let Some(pid) = group_owner(group) else {
        return false;
    };
    if pid == std::process::id() {
        return false;
    }
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name's closing parenthesis.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
        Err(_) => true,
    }
}

/// What to do when `uprobe_events` refuses a definition, if the error says it.
fn remedy(root: &Path, error: &std::io::Error) -> String {
    match error.raw_os_error() {
        Some(libc::EROFS) => format!(
            " ({} is mounted read-only; in a container, mount the host's /sys/kernel/tracing \
             writable: -v /sys/kernel/tracing:/sys/kernel/tracing, without :ro)",
            root.display()
        ),
        _ => String::new(),
    }
}

fn append(root: &Path, line: &str) -> std::io::Result<()> {
    OpenOptions::new()
        .append(true)
        .open(root.join("uprobe_events"))?
        .write_all(line.as_bytes())
}

/// A tracefs file of a few hundred bytes (`id`, `format`), read with a bound.
pub(crate) fn read_small(path: &Path) -> Result<String> {
    read_bounded(path, MAX_FORMAT_BYTES)
}

fn read_bounded(path: &Path, limit: usize) -> Result<String> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    if text.len() > limit {
        bail!("{} is larger than expected", path.display());
    }
    Ok(text)
}

/// The offset of field `name` in a tracefs format (`field:u64 a;\toffset:16;\tsize:8;...`).
pub(crate) fn field_offset(format: &str, name: &str) -> Option<usize> {
    format.lines().find_map(|line| {
        let mut parts = line.trim().split(';');
        let field = parts.next()?.trim().strip_prefix("field:")?;
        if field.rsplit(' ').next()? != name {
            return None;
        }
        parts.next()?.trim().strip_prefix("offset:")?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMAT: &str = "name: p0\nID: 2210\nformat:\n\
        \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
        \tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\
        \tfield:unsigned long __probe_ip;\toffset:8;\tsize:8;\tsigned:0;\n\
        \tfield:u64 a;\toffset:16;\tsize:8;\tsigned:0;\n\
        \tfield:u64 b;\toffset:24;\tsize:8;\tsigned:0;\n";

    #[test]
    fn fetched_values_are_read_where_the_format_says() {
        assert_eq!(field_offset(FORMAT, "a"), Some(16));
        assert_eq!(field_offset(FORMAT, "b"), Some(24));
        assert_eq!(field_offset(FORMAT, "c"), None);
        let defined = Defined {
            id: 2210,
            fields: vec![16, 24],
        };
        let mut raw = vec![0u8; 32];
        raw[16..24].copy_from_slice(&4096u64.to_ne_bytes());
        assert_eq!(defined.value(&raw, 0), Some(4096));
        assert_eq!(defined.value(&raw[..20], 0), None, "cut short");
        assert_eq!(defined.value(&raw, 2), None);
    }

    #[test]
    fn lines_name_their_group_and_only_dead_agents_are_orphans() {
        assert_eq!(
            event_name("p:rprof_12_0/p3 /proc/self/fd/9:0x98930 a=%di:u64"),
            Some(("rprof_12_0", "p3"))
        );
        assert_eq!(event_name("garbage"), None);
        assert!(!orphaned(&format!("rprof_{}_0", std::process::id())));
        assert!(!orphaned("probe_libc"), "not ours");
        assert!(orphaned(&format!("rprof_{}_0", u32::MAX - 1)));
    }
}
