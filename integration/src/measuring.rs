//! Test programs that measure themselves: they write `X Y NOW` totals (two figures and the
//! CLOCK_MONOTONIC time they were taken at) to a file, and a recording of them is checked
//! against what they measured over about the same window. Programs that measure more write
//! `F1 F2 ... Fn NOW`, read with [`Measuring::figures`] and [`Measuring::record_with`].

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rprof_proto::pb::{Profile, Sample};

use crate::agent::{record_full, record_full_env, Recording};
use crate::process::Target;
use crate::profile::Stacks;

/// A test program that writes `X Y NOW` totals to a file, running.
pub struct Measuring {
    pub target: Target,
    totals: PathBuf,
    _dir: tempfile::TempDir,
}

/// Two totals the program measured, and when (CLOCK_MONOTONIC ns).
#[derive(Debug, Clone, Copy)]
pub struct Totals {
    pub first: u64,
    pub second: u64,
    pub at: u64,
}

/// Any number of totals the program measured, and when (CLOCK_MONOTONIC ns).
#[derive(Debug, Clone)]
pub struct Figures {
    pub values: Vec<u64>,
    pub at: u64,
}

impl Figures {
    /// Each figure's growth per second of the program's clock from `before` to `self`.
    pub fn rates_since(&self, before: &Figures) -> Vec<f64> {
        assert_eq!(
            self.values.len(),
            before.values.len(),
            "{self:?} vs {before:?}"
        );
        let seconds = self.at.saturating_sub(before.at) as f64 / 1e9;
        assert!(
            seconds > 0.0,
            "no time passed between {before:?} and {self:?}"
        );
        self.values
            .iter()
            .zip(&before.values)
            .map(|(after, before)| after.saturating_sub(*before) as f64 / seconds)
            .collect()
    }
}

impl Measuring {
    pub fn start(program: &Path) -> Measuring {
        Measuring::start_with(program, &[])
    }

    /// `program TOTALS_FILE ARGS...`.
    pub fn start_with(program: &Path, args: &[&str]) -> Measuring {
        let dir = tempfile::tempdir().expect("create a directory");
        let totals = dir.path().join("totals");
        let mut argv: Vec<&OsStr> = vec![totals.as_os_str()];
        argv.extend(args.iter().map(OsStr::new));
        let target = Target::spawn(program, &argv);
        Measuring {
            target,
            totals,
            _dir: dir,
        }
    }

    pub fn totals(&self) -> Totals {
        let figures = self.figures();
        assert_eq!(figures.values.len(), 2, "totals file: {figures:?}");
        Totals {
            first: figures.values[0],
            second: figures.values[1],
            at: figures.at,
        }
    }

    /// Every figure of the totals file (`F1 ... Fn NOW`), however many the program writes.
    pub fn figures(&self) -> Figures {
        let text = fs::read_to_string(&self.totals)
            .unwrap_or_else(|err| panic!("read {}: {err}", self.totals.display()));
        let mut numbers: Vec<u64> = text
            .split_whitespace()
            .map(|n| n.parse().expect("a number"))
            .collect();
        assert!(numbers.len() >= 2, "totals file: {text:?}");
        let at = numbers.pop().expect("at least two numbers");
        Figures {
            values: numbers,
            at,
        }
    }

    /// Records with `rprof-agent record ... EXTRA_ARGS` (e.g. `--profile heap --exact`) while
    /// reading the figures before and after: each figure per second of the program's clock
    /// over about the window.
    pub fn record_with(&self, extra_args: &[&str], seconds: u32) -> (Recording, Vec<f64>) {
        let before = self.figures();
        let recording = record_full(self.target.pid(), seconds, extra_args);
        // The program writes its totals every 50 ms.
        std::thread::sleep(Duration::from_millis(120));
        let after = self.figures();
        (recording, after.rates_since(&before))
    }

    /// Records `profile` while reading the totals before and after: what the program measured
    /// per second over about the window.
    pub fn record(&self, profile: &str, seconds: u32) -> (Recording, [f64; 2]) {
        self.record_env(profile, seconds, &[])
    }

    /// [`Measuring::record`], the agent run with the variables `env` added.
    pub fn record_env(
        &self,
        profile: &str,
        seconds: u32,
        env: &[(&str, &str)],
    ) -> (Recording, [f64; 2]) {
        let before = self.totals();
        let recording = record_full_env(self.target.pid(), seconds, &["--profile", profile], env);
        // The program writes its totals every 50 ms.
        std::thread::sleep(Duration::from_millis(120));
        let after = self.totals();
        let seconds = (after.at - before.at) as f64 / 1e9;
        let rates = [
            (after.first - before.first) as f64 / seconds,
            (after.second - before.second) as f64 / seconds,
        ];
        (recording, rates)
    }
}

/// The sum of value `index` over the samples that `keep` accepts.
pub fn total(profile: &Profile, index: usize, keep: impl Fn(&[&str], &Sample) -> bool) -> f64 {
    let stacks = Stacks::new(profile);
    profile
        .sample
        .iter()
        .filter(|sample| keep(&stacks.frames(sample), sample))
        .map(|sample| sample.value[index] as f64)
        .sum()
}

/// Asserts that the profile splits a figure between two places as the program measured it:
/// `profiled[0]` is within 5 points of `measured[0]`'s share, and the program's own split is
/// within `premise` (what it was built to do). Returns the profiled share of the first place.
pub fn assert_split(
    what: &str,
    profiled: [f64; 2],
    measured: [f64; 2],
    premise: std::ops::RangeInclusive<f64>,
) -> f64 {
    let share = profiled[0] / (profiled[0] + profiled[1]);
    let truth = measured[0] / (measured[0] + measured[1]);
    println!(
        "{what}: {:.1} % in the profile, {:.1} % measured by the program",
        100.0 * share,
        100.0 * truth
    );
    assert!(
        premise.contains(&truth),
        "{what}: the program measured {:.1} %, outside its premise {:.0}–{:.0} %",
        100.0 * truth,
        100.0 * premise.start(),
        100.0 * premise.end()
    );
    assert!(
        (share - truth).abs() <= 0.05,
        "{what}: {:.1} % in the profile, {:.1} % measured by the program",
        100.0 * share,
        100.0 * truth
    );
    share
}
