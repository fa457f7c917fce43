//! The target's own cgroup, which per-CPU events can be scoped to (`PERF_FLAG_PID_CGROUP`).
//!
//! Per-thread events restart their sampling period in every new thread, so a thread that runs
//! less than one period is never sampled, and they cost one descriptor per thread and CPU. A
//! per-CPU event limited to a cgroup keeps counting across all the cgroup's threads: short
//! threads are sampled in proportion to their CPU time, with one descriptor per CPU. It is
//! used only when the cgroup holds the target alone (a container, a systemd service), so that
//! no other program's stacks are ever copied into the agent's rings: the target's own children
//! may join it later, and their records are dropped by pid like any other process's.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::proc::{process_file, read_bounded, SMALL_FILE_LIMIT, STATUS_FILE_LIMIT};

/// More mounts than any machine has: a bound for /proc/self/mountinfo.
const MOUNTINFO_LIMIT: u64 = 4 << 20;

/// A cgroup that holds the target process and nothing else, opened.
#[derive(Debug)]
pub(crate) struct OwnCgroup {
    /// Its directory, the descriptor `perf_event_open` takes in place of a pid.
    pub dir: OwnedFd,
    /// Its path in the cgroup2 hierarchy (`/system.slice/redis.service`), for messages.
    pub path: String,
}

impl OwnCgroup {
    /// The cgroup (v2) of `pid`, if it holds that process alone. None otherwise, and where
    /// cgroup2 is not mounted in the agent's view, or the target is in the root cgroup.
    pub(crate) fn of(pid: u32) -> Option<OwnCgroup> {
        let text = read_bounded(&process_file(pid, "cgroup"), SMALL_FILE_LIMIT).ok()?;
        let path = unified_path(&String::from_utf8_lossy(&text))?;
        if path == "/" {
            return None;
        }
        let mountinfo = read_bounded(Path::new("/proc/self/mountinfo"), MOUNTINFO_LIMIT).ok()?;
        let dir = directory(&String::from_utf8_lossy(&mountinfo), &path)?;
        let procs = read_bounded(&dir.join("cgroup.procs"), STATUS_FILE_LIMIT).ok()?;
        if !holds_only(&String::from_utf8_lossy(&procs), pid) {
            return None;
        }
        let dir = File::options()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&dir)
            .ok()?;
        Some(OwnCgroup {
            dir: dir.into(),
            path,
        })
    }
}

/// The cgroup2 path in /proc/PID/cgroup: the `0::PATH` line.
fn unified_path(text: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(str::to_owned)
}

/// Where the cgroup2 directory of `path` is in the agent's view: the cgroup2 mount whose root
/// contains it (mountinfo fields: root is the 4th, the mount point the 5th, the file system
/// type follows the ` - ` separator).
fn directory(mountinfo: &str, path: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (fields, rest) = line.split_once(" - ")?;
        if rest.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let mut fields = fields.split_whitespace();
        let root = fields.nth(3)?;
        let mount_point = fields.next()?;
        let inside = if root == "/" {
            Some(path)
        } else {
            path.strip_prefix(root)
                .filter(|rest| rest.is_empty() || rest.starts_with('/'))
        }?;
        let inside = inside.trim_start_matches('/');
        // A path from the target's file cannot climb out of the mount.
        if inside.split('/').any(|part| part == "..") {
            return None;
        }
        Some(Path::new(mount_point).join(inside))
    })
}

/// `cgroup.procs` lists `pid` and no other process.
fn holds_only(procs: &str, pid: u32) -> bool {
    let mut pids = procs.split_whitespace();
    pids.next() == Some(pid.to_string().as_str()) && pids.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unified_line_gives_the_path() {
        let text = "9:name=systemd:/\n4:memory:/x\n0::/system.slice/redis.service\n";
        assert_eq!(
            unified_path(text).as_deref(),
            Some("/system.slice/redis.service")
        );
        assert_eq!(unified_path("4:memory:/x\n"), None);
    }

    #[test]
    fn the_directory_is_under_the_cgroup2_mount() {
        let mountinfo = "\
22 1 0:21 / /sys/fs/cgroup rw shared:9 - tmpfs tmpfs rw
30 22 0:26 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
31 22 0:27 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
";
        assert_eq!(
            directory(mountinfo, "/rprof-test"),
            Some(PathBuf::from("/sys/fs/cgroup/unified/rprof-test"))
        );
        assert_eq!(directory(mountinfo, "/a/../../etc"), None);
        // A container sees its own subtree mounted at /sys/fs/cgroup with that root.
        let container = "40 30 0:26 /kubepods/pod1 /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n";
        assert_eq!(
            directory(container, "/kubepods/pod1/app"),
            Some(PathBuf::from("/sys/fs/cgroup/app"))
        );
        assert_eq!(directory(container, "/kubepods/pod10"), None);
        assert_eq!(directory("", "/x"), None);
    }

    #[test]
    fn only_a_cgroup_of_the_target_alone_is_its_own() {
        assert!(holds_only("42\n", 42));
        assert!(!holds_only("42\n43\n", 42));
        assert!(!holds_only("43\n", 42));
        assert!(!holds_only("", 42));
    }

    #[test]
    fn this_test_process_shares_its_cgroup_or_has_none_of_its_own() {
        // The test runner's cgroup holds other processes (cargo, the shell), so it is not
        // this process's own, whatever the machine's cgroup layout.
        let own = OwnCgroup::of(std::process::id());
        if let Some(own) = own {
            panic!("{} holds this test process alone?", own.path);
        }
    }
}
