//! The live progress line on a terminal (nothing when stderr is not one).

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

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

    /// `figures`: what the recording has gathered so far, e.g. "120 samples, 0 lost".
    pub fn update(&self, elapsed: Duration, figures: &str) {
        self.bar.set_position(elapsed.as_secs());
        self.bar.set_message(figures.to_owned());
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
