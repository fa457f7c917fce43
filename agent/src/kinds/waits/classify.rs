//! What a thread off the CPU waits for, told from the functions on its stack: the libc, Rust
//! std, C++ and Go runtime functions that block (`pthread_mutex_lock`, `Condvar::wait`,
//! `epoll_wait`, `nanosleep`, `read`...). The leaf-most function that says what it waits for
//! decides; the futex helpers every lock and condition variable goes through
//! (`__futex_abstimed_wait_common`, Rust's `futex_wait`) decide only when nothing more
//! specific is on the stack; a stack where nothing does is `other`.

use std::collections::HashMap;

use crate::frames::name_stack;
use crate::unwind::ModuleSet;

/// Frames looked at, leaf first: the waiting function is near the leaf.
const FRAMES_LOOKED_AT: usize = 24;
/// Stacks remembered with their answer (a target has few distinct waiting stacks; past this
/// the cache starts over rather than grow).
const CACHE_ENTRIES: usize = 1 << 14;
/// Leaf addresses that key the cache: enough to tell waits apart, few to hash.
const KEY_FRAMES: usize = 8;

/// What a thread waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wait {
    /// A mutex, rwlock or spinlock held by another thread.
    Lock,
    /// A condition variable: another thread's signal.
    Condvar,
    /// Other synchronization: semaphores, joins, barriers, futexes, parking.
    Sync,
    /// Reading or writing a file, pipe or socket.
    Io,
    /// poll, select, epoll: any of several descriptors.
    Poll,
    /// Sleeping for a while.
    Sleep,
    /// Anything else (page faults, other system calls, unnamed code).
    Other,
}

impl Wait {
    /// The `wait` label's value.
    pub fn label(self) -> &'static str {
        match self {
            Wait::Lock => "lock",
            Wait::Condvar => "condvar",
            // Go's block profile has one kind for all of these; so does the label.
            Wait::Sync | Wait::Other => "other",
            Wait::Io => "io",
            Wait::Poll => "poll",
            Wait::Sleep => "sleep",
        }
    }

    /// A wait on synchronization with another thread: what Go's block profile counts.
    pub fn is_synchronization(self) -> bool {
        matches!(self, Wait::Lock | Wait::Condvar | Wait::Sync)
    }
}

/// Classifies stacks, remembering the answer per stack.
#[derive(Debug, Default)]
pub struct Classifier {
    cache: HashMap<Box<[u64]>, Wait>,
}

impl Classifier {
    /// What the thread whose stack is `user` (lookup addresses, leaf first) waits for.
    pub fn classify(&mut self, modules: &ModuleSet, user: &[u64]) -> Wait {
        let key = &user[..user.len().min(KEY_FRAMES)];
        if let Some(&wait) = self.cache.get(key) {
            return wait;
        }
        let top = &user[..user.len().min(FRAMES_LOOKED_AT)];
        let frames = name_stack(modules, top);
        let wait = classify_names(frames.iter().filter_map(|f| f.function.as_deref()));
        if self.cache.len() >= CACHE_ENTRIES {
            self.cache.clear();
        }
        self.cache.insert(key.into(), wait);
        wait
    }
}

/// The first function (leaf first) that says what it waits for; a futex helper only when no
/// function does.
pub fn classify_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Wait {
    let mut generic = None;
    for name in names {
        if let Some(wait) = classify_name(name) {
            return wait;
        }
        if generic.is_none() && is_futex_helper(name) {
            generic = Some(Wait::Sync);
        }
    }
    generic.unwrap_or(Wait::Other)
}

fn classify_name(name: &str) -> Option<Wait> {
    let plain = plain_c_name(name);
    // Rust prints inherent methods as `<path::Type>::method`: match `Type::method`.
    let name = name.replace(['<', '>'], "");
    let name = name.as_str();
    // C names first (libc), exactly, then qualified names (C++, Rust, Go) by their parts.
    C_NAMES
        .iter()
        .find(|(names, _)| names.contains(&plain))
        .map(|&(_, wait)| wait)
        .or_else(|| {
            QUALIFIED
                .iter()
                .find(|(parts, _)| parts.iter().any(|part| name.contains(part)))
                .map(|&(_, wait)| wait)
        })
}

/// The futex waits locks, condition variables and semaphores are built on.
fn is_futex_helper(name: &str) -> bool {
    FUTEX_HELPERS.contains(&plain_c_name(name))
        || FUTEX_HELPER_PARTS.iter().any(|part| name.contains(part))
}

const FUTEX_HELPERS: &[&str] = &[
    "futex_abstimed_wait_common",
    "futex_abstimed_wait_cancelable",
    "futex_wait",
    "futex_lock_pi",
];

const FUTEX_HELPER_PARTS: &[&str] = &[
    "futex::futex_wait",
    "runtime.futexsleep",
    "runtime.notesleep",
    "runtime.semasleep",
];

/// `__GI___libc_read` → `read`, `___pthread_mutex_lock` → `pthread_mutex_lock`,
/// `__read_nocancel` → `read`: glibc's internal aliases of the public names.
fn plain_c_name(name: &str) -> &str {
    let mut plain = name.strip_prefix("__GI_").unwrap_or(name);
    plain = plain.trim_start_matches('_');
    plain = plain.strip_prefix("libc_").unwrap_or(plain);
    plain = plain.strip_suffix("_nocancel").unwrap_or(plain);
    plain.strip_suffix("64").unwrap_or(plain)
}

/// libc's blocking functions, by their public names.
const C_NAMES: &[(&[&str], Wait)] = &[
    (
        &[
            "pthread_mutex_lock",
            "pthread_mutex_timedlock",
            "pthread_mutex_clocklock",
            "pthread_mutex_cond_lock",
            "lll_lock_wait",
            "lll_lock_wait_private",
            "pthread_rwlock_rdlock",
            "pthread_rwlock_wrlock",
            "pthread_rwlock_timedrdlock",
            "pthread_rwlock_timedwrlock",
            "pthread_rwlock_clockrdlock",
            "pthread_rwlock_clockwrlock",
            "pthread_spin_lock",
        ],
        Wait::Lock,
    ),
    (
        &[
            "pthread_cond_wait",
            "pthread_cond_timedwait",
            "pthread_cond_clockwait",
        ],
        Wait::Condvar,
    ),
    (
        &[
            "sem_wait",
            "sem_timedwait",
            "sem_clockwait",
            "pthread_join",
            "pthread_timedjoin_np",
            "pthread_clockjoin_np",
            "pthread_barrier_wait",
        ],
        Wait::Sync,
    ),
    (
        &[
            "poll",
            "ppoll",
            "select",
            "pselect",
            "pselect6",
            "epoll_wait",
            "epoll_pwait",
            "epoll_pwait2",
        ],
        Wait::Poll,
    ),
    (
        &[
            "nanosleep",
            "clock_nanosleep",
            "usleep",
            "sleep",
            "pause",
            "sigsuspend",
        ],
        Wait::Sleep,
    ),
    (
        &[
            "read",
            "write",
            "pread",
            "pwrite",
            "readv",
            "writev",
            "preadv",
            "pwritev",
            "recv",
            "recvfrom",
            "recvmsg",
            "recvmmsg",
            "send",
            "sendto",
            "sendmsg",
            "sendmmsg",
            "accept",
            "accept4",
            "connect",
            "fsync",
            "fdatasync",
            "sync_file_range",
            "open",
            "openat",
            "sendfile",
            "splice",
            "copy_file_range",
            "msync",
            "wait4",
            "waitpid",
            "waitid",
        ],
        Wait::Io,
    ),
];

/// Parts of C++, Rust and Go names of blocking functions.
const QUALIFIED: &[(&[&str], Wait)] = &[
    (
        &[
            "Condvar::wait",
            "condition_variable::wait",
            "condition_variable_any::wait",
            "sync.(*Cond).Wait",
        ],
        Wait::Condvar,
    ),
    (
        &[
            "Mutex::lock_contended",
            "RwLock::read_contended",
            "RwLock::write_contended",
            "ReentrantLock",
            "sync.(*Mutex).lockSlow",
            "sync.(*RWMutex).RLock",
            "sync.(*RWMutex).Lock",
            "runtime.lock2",
            "parking_lot::raw_mutex",
            "parking_lot::raw_rwlock",
        ],
        Wait::Lock,
    ),
    (
        &[
            "thread::park",
            "Parker::park",
            "JoinInner",
            "Barrier::wait",
            "sync.runtime_Semacquire",
            "runtime.chanrecv",
            "runtime.chansend",
            "runtime.selectgo",
        ],
        Wait::Sync,
    ),
    (
        &[
            "runtime.netpoll",
            "runtime.epollwait",
            "mio::poll",
            "Poll::poll",
        ],
        Wait::Poll,
    ),
    (
        &[
            "thread::sleep",
            "runtime.usleep",
            "time.Sleep",
            "this_thread::sleep",
        ],
        Wait::Sleep,
    ),
    (
        &[
            "syscall.Syscall",
            "syscall.read",
            "syscall.write",
            "internal/poll.",
        ],
        Wait::Io,
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_internal_names_classify_as_their_public_names() {
        let cases = [
            (
                vec!["__lll_lock_wait", "___pthread_mutex_lock", "worker"],
                Wait::Lock,
            ),
            (
                vec![
                    "__futex_abstimed_wait_common64",
                    "___pthread_cond_wait",
                    "consumer",
                ],
                Wait::Condvar,
            ),
            (
                vec!["__GI___clock_nanosleep", "__nanosleep", "main"],
                Wait::Sleep,
            ),
            (vec!["__GI___libc_read", "reader"], Wait::Io),
            (vec!["__read_nocancel", "reader"], Wait::Io),
            (vec!["epoll_wait", "event_loop"], Wait::Poll),
            (vec!["__GI___poll", "x"], Wait::Poll),
            (
                vec!["__futex_abstimed_wait_common", "__pthread_clockjoin_ex"],
                Wait::Sync,
            ),
            (vec!["mystery", "main"], Wait::Other),
        ];
        for (names, expected) in cases {
            assert_eq!(classify_names(names.iter().copied()), expected, "{names:?}");
        }
    }

    #[test]
    fn rust_cpp_and_go_waits_are_named_by_their_parts() {
        let rust_lock = [
            "syscall",
            "std::sys::pal::unix::futex::futex_wait",
            "std::sys::sync::mutex::futex::Mutex::lock_contended",
        ];
        // Rust's futex_wait is the leaf-most match, but only a helper: the lock decides.
        assert_eq!(classify_names(rust_lock), Wait::Lock);
        assert_eq!(
            classify_names([
                "syscall",
                "std::sys::pal::unix::futex::futex_wait",
                "<std::sys::sync::mutex::futex::Mutex>::lock_contended",
            ]),
            Wait::Lock,
            "as the symbolizer prints inherent methods"
        );
        assert_eq!(
            classify_names(["syscall", "std::sys::pal::unix::futex::futex_wait", "main"]),
            Wait::Sync
        );
        assert_eq!(
            classify_names(["syscall", "std::sync::Condvar::wait", "main"]),
            Wait::Condvar
        );
        assert_eq!(
            classify_names(["runtime.futex", "runtime.futexsleep"]),
            Wait::Sync
        );
        assert_eq!(classify_names(["std::thread::sleep", "main"]), Wait::Sleep);
        assert_eq!(Wait::Sync.label(), "other");
        assert!(Wait::Condvar.is_synchronization() && !Wait::Io.is_synchronization());
    }
}
