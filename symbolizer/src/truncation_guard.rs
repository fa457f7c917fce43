//! Surviving files truncated while mapped.
//!
//! The files we map are the target's (its libraries, debug files in its root): it can cut one
//! short at any time, and a read of a mapped page past the new end of file faults with SIGBUS,
//! which kills the process by default. Reading instead of mapping would cost memory for every
//! byte of every file used (most of a binary is never touched), so mappings are registered
//! here, and a SIGBUS handler puts a page of zeros over a faulting page inside one of them: the
//! read resumes and sees zeros, which the parsers (written for untrusted input) reject or turn
//! into fewer names. A SIGBUS anywhere else goes to the handler that was there before (Rust's
//! own, or the default action), so real faults still end the process.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Mappings guarded at once. Each cached file holds one; past this, files are read instead.
const SLOTS: usize = 4096;

/// A guarded range: `start` is 0 for a free slot. A slot is claimed by a compare-exchange of
/// `start` from 0 to [`CLAIMING`], then `len` and the real `start` are written (so two threads
/// claiming at once never mix their lengths); released by storing 0.
struct Slot {
    start: AtomicUsize,
    len: AtomicUsize,
}

/// `start` of a slot being claimed: not a range yet.
const CLAIMING: usize = usize::MAX;

static GUARDED: [Slot; SLOTS] = [const {
    Slot {
        start: AtomicUsize::new(0),
        len: AtomicUsize::new(0),
    }
}; SLOTS];

/// The SIGBUS action before ours, and the page size, set once when the handler is installed.
struct Installed {
    previous: libc::sigaction,
    page_size: usize,
}

// SAFETY: `sigaction` is plain data (a function pointer, flags and a signal mask), only read
// after it is written once.
unsafe impl Sync for Installed {}
unsafe impl Send for Installed {}

static INSTALLED: OnceLock<Option<Installed>> = OnceLock::new();

/// A registration of one mapped range; unregisters when dropped (drop it before unmapping).
pub(crate) struct Guard {
    slot: usize,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(slot) = GUARDED.get(self.slot) {
            slot.start.store(0, Ordering::SeqCst);
        }
    }
}

/// Guards `len` bytes mapped at `start`: None when the handler cannot be installed or every
/// slot is taken (the caller must then not map the file).
pub(crate) fn guard(start: *const u8, len: usize) -> Option<Guard> {
    INSTALLED.get_or_init(install).as_ref()?;
    let start = start as usize;
    if start == 0 || len == 0 {
        return None;
    }
    GUARDED.iter().enumerate().find_map(|(index, slot)| {
        if slot.start.load(Ordering::Relaxed) != 0 {
            return None;
        }
        slot.start
            .compare_exchange(0, CLAIMING, Ordering::SeqCst, Ordering::Relaxed)
            .ok()?;
        slot.len.store(len, Ordering::SeqCst);
        slot.start.store(start, Ordering::SeqCst);
        Some(Guard { slot: index })
    })
}

fn install() -> Option<Installed> {
    // SAFETY: sysconf has no preconditions.
    let page_size = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()?;
    // SAFETY: both structs are plain data, zero is a valid value for them; `on_sigbus` has the
    // signature SA_SIGINFO requires; `previous` receives the action being replaced.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigbus as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        libc::sigemptyset(&mut action.sa_mask);
        let mut previous: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGBUS, &action, &mut previous) != 0 {
            tracing::debug!(
                err = %std::io::Error::last_os_error(),
                "cannot install the SIGBUS handler: files will be read, not mapped"
            );
            return None;
        }
        Some(Installed {
            previous,
            page_size,
        })
    }
}

/// The SIGBUS handler. Async-signal-safe: atomics and raw system calls only.
extern "C" fn on_sigbus(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo_t for SA_SIGINFO handlers.
    let (address, code) = unsafe { ((*info).si_addr() as usize, (*info).si_code) };
    // A SIGBUS another process sent (si_code ≤ 0) is no fault of a read: not ours to mend.
    let sent = code <= 0;
    let Some(Some(installed)) = INSTALLED.get() else {
        return;
    };
    let guarded = !sent
        && GUARDED.iter().any(|slot| {
            let start = slot.start.load(Ordering::SeqCst);
            let len = slot.len.load(Ordering::SeqCst);
            start != 0 && start != CLAIMING && address >= start && address - start < len
        });
    if guarded {
        let page = address & !(installed.page_size - 1);
        // SAFETY: the page lies in a mapping this crate owns (registered until just before
        // it is unmapped, and nobody reads it after that); replacing it with an anonymous
        // read-only page of zeros changes what the faulting read sees, nothing else.
        let mapped = unsafe {
            libc::syscall(
                libc::SYS_mmap,
                page,
                installed.page_size,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if mapped != -1 {
            return;
        }
    }
    // SAFETY: hands the fault to whoever handled SIGBUS before us, as they asked to be
    // called; the default action is restored and the fault repeats on return.
    unsafe { forward(signal, info, context, &installed.previous) }
}

unsafe fn forward(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
    previous: &libc::sigaction,
) {
    let handler = previous.sa_sigaction;
    if handler == libc::SIG_IGN {
        // Ignored before us: ignored now (a fault would repeat forever, but none reaches here
        // that the kernel would not have killed for anyway).
    } else if handler == libc::SIG_DFL {
        // The default action, for good: a fault repeats on return and kills, as it would have;
        // a signal that was sent is raised again, to the same end.
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(signal, &default, std::ptr::null_mut());
        if (*info).si_code <= 0 {
            libc::raise(signal);
        }
    } else if previous.sa_flags & libc::SA_SIGINFO != 0 {
        let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            std::mem::transmute(handler);
        handler(signal, info, context);
    } else {
        let handler: extern "C" fn(libc::c_int) = std::mem::transmute(handler);
        handler(signal);
    }
}
