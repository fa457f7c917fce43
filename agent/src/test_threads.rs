//! Threads of the test process in known states, for the unit tests that sample, read or stop
//! threads: one that spins until dropped, one that blocks until dropped.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

fn gettid() -> u32 {
    u32::try_from(nix::unistd::gettid().as_raw()).expect("thread ids are positive")
}

/// A thread spinning on the CPU until dropped.
pub(crate) struct Spinner {
    pub(crate) tid: u32,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Spinner {
    pub(crate) fn start() -> Spinner {
        let stop = Arc::new(AtomicBool::new(false));
        let (send, receive) = mpsc::channel();
        let thread = std::thread::spawn({
            let stop = Arc::clone(&stop);
            move || {
                send.send(gettid()).expect("the test waits for the tid");
                let mut sum = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    sum = black_box(sum.wrapping_add(1));
                }
            }
        });
        let tid = receive.recv().expect("the spinner's tid");
        Spinner {
            tid,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A thread blocked in the kernel (a futex wait) until dropped.
pub(crate) struct Parked {
    pub(crate) tid: u32,
    release: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Parked {
    pub(crate) fn start() -> Parked {
        let (send, receive) = mpsc::channel();
        let (release, wait) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            send.send(gettid()).expect("the test waits for the tid");
            let _ = wait.recv();
        });
        let tid = receive.recv().expect("the parked thread's tid");
        Parked {
            tid,
            release: Some(release),
            thread: Some(thread),
        }
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        drop(self.release.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
