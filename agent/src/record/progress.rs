//! The live progress line on a terminal (nothing when stderr is not one).

use std::sync::atomic::Ordering;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::pipeline::Counters;

pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    pub fn new(pid: u32, seconds: u64, event: &str) -> Self {
        let bar = ProgressBar::with_draw_target(Some(seconds), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {bar:24} {pos}/{len}s {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(format!("recording PID {pid} ({event})"));
        Progress { bar }
    }

    pub fn update(&self, elapsed: Duration, counters: &Counters) {
        self.bar.set_position(elapsed.as_secs());
        self.bar.set_message(format!(
            "{} samples, {} lost, {} unwind errors",
            counters.samples.load(Ordering::Relaxed),
            counters.lost.load(Ordering::Relaxed),
            counters.truncated.load(Ordering::Relaxed),
        ));
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
