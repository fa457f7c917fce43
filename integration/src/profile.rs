//! Reading pprof profiles and asking questions about their stacks.
//!
//! The tests decode the agent's files themselves (gunzip, then prost) rather than through the
//! proto crate's reader, so that a bug shared by rprof's writer and reader cannot cancel out.
//!
//! A sample's "frames" are function names from leaf to root: each location's `line[]` in order
//! (inlined callee first, physical function last), location after location. Samples are
//! weighted by their count (`value[0]`), as pprof weighs them.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::Path;

use flate2::read::MultiGzDecoder;
use prost::Message;
use rprof_proto::pb::{Function, Location, Profile, Sample};

/// The frame name of a location without symbol information.
pub const UNKNOWN: &str = "[unknown]";

/// Decodes a profile from gzipped (or plain) protobuf bytes; panics if they are neither.
pub fn decode_profile(bytes: &[u8]) -> Profile {
    let raw = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut raw = Vec::new();
        MultiGzDecoder::new(bytes)
            .read_to_end(&mut raw)
            .unwrap_or_else(|err| panic!("the profile is not valid gzip: {err}"));
        raw
    } else {
        bytes.to_vec()
    };
    Profile::decode(raw.as_slice())
        .unwrap_or_else(|err| panic!("the profile is not a valid profile.proto message: {err}"))
}

/// Reads and decodes the profile at `path`.
pub fn read_profile(path: &Path) -> Profile {
    let bytes = std::fs::read(path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    decode_profile(&bytes)
}

/// The string at `index` in the profile's string table ("" when out of range, so that a broken
/// index fails the assertion that uses it rather than the helper).
pub fn string(profile: &Profile, index: i64) -> &str {
    usize::try_from(index)
        .ok()
        .and_then(|index| profile.string_table.get(index))
        .map_or("", String::as_str)
}

/// The profile's first comment that starts with `prefix`.
pub fn comment_starting<'p>(profile: &'p Profile, prefix: &str) -> Option<&'p str> {
    profile
        .comment
        .iter()
        .map(|&index| string(profile, index))
        .find(|comment| comment.starts_with(prefix))
}

/// A sample's weight: its count.
fn weight(sample: &Sample) -> i64 {
    sample.value.first().copied().unwrap_or(0)
}

/// The number of samples in the profile (the sum of the counts).
pub fn total_samples(profile: &Profile) -> i64 {
    profile.sample.iter().map(weight).sum()
}

/// Locations and functions by id, for walking many samples' stacks.
pub struct Stacks<'p> {
    profile: &'p Profile,
    locations: HashMap<u64, &'p Location>,
    functions: HashMap<u64, &'p Function>,
}

impl<'p> Stacks<'p> {
    pub fn new(profile: &'p Profile) -> Stacks<'p> {
        Stacks {
            profile,
            locations: profile.location.iter().map(|l| (l.id, l)).collect(),
            functions: profile.function.iter().map(|f| (f.id, f)).collect(),
        }
    }

    /// The sample's locations, leaf first. Panics on an id that names no location.
    pub fn locations(&self, sample: &Sample) -> Vec<&'p Location> {
        let location = |id: &u64| -> &'p Location {
            self.locations
                .get(id)
                .copied()
                .unwrap_or_else(|| panic!("a sample refers to location {id}, which is missing"))
        };
        sample.location_id.iter().map(location).collect()
    }

    /// The function with `id`. Panics on an id that names no function.
    pub fn function(&self, id: u64) -> &'p Function {
        self.functions
            .get(&id)
            .copied()
            .unwrap_or_else(|| panic!("a line refers to function {id}, which is missing"))
    }

    /// The function names of a location's lines: inlined callee first, physical function last.
    pub fn location_frames(&self, location: &Location) -> Vec<&'p str> {
        if location.line.is_empty() {
            return vec![UNKNOWN];
        }
        let name = |line: &rprof_proto::pb::Line| {
            string(self.profile, self.function(line.function_id).name)
        };
        location.line.iter().map(name).collect()
    }

    /// The sample's function names, leaf to root, inline frames expanded.
    pub fn frames(&self, sample: &Sample) -> Vec<&'p str> {
        let locations = self.locations(sample);
        locations
            .into_iter()
            .flat_map(|location| self.location_frames(location))
            .collect()
    }

    /// Weighs the samples for which `among(frames, sample)` holds and, of those, the ones for
    /// which `having(frames)` holds too.
    pub fn fraction(
        &self,
        among: impl Fn(&[&str], &Sample) -> bool,
        having: impl Fn(&[&str]) -> bool,
    ) -> Fraction {
        let mut fraction = Fraction::default();
        for sample in &self.profile.sample {
            let frames = self.frames(sample);
            if among(&frames, sample) {
                fraction.total += weight(sample);
                if having(&frames) {
                    fraction.hits += weight(sample);
                }
            }
        }
        fraction
    }
}

/// A weighed part of a set of samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fraction {
    pub hits: i64,
    pub total: i64,
}

impl Fraction {
    /// hits / total, or 0 for an empty set.
    pub fn ratio(self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        self.hits as f64 / self.total as f64
    }
}

impl fmt::Display for Fraction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} ({:.1} %)",
            self.hits,
            self.total,
            100.0 * self.ratio()
        )
    }
}

/// The function names of `sample`, leaf to root, inline frames expanded.
pub fn frames_of(profile: &Profile, sample: &Sample) -> Vec<String> {
    let stacks = Stacks::new(profile);
    stacks
        .frames(sample)
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// The fraction of all samples whose stack contains `function` (by exact name).
pub fn share_of(profile: &Profile, function: &str) -> f64 {
    let stacks = Stacks::new(profile);
    stacks
        .fraction(|_, _| true, |frames| frames.contains(&function))
        .ratio()
}

/// The fraction of all samples whose leaf frame is `function` (by exact name).
pub fn leaf_share(profile: &Profile, function: &str) -> f64 {
    let stacks = Stacks::new(profile);
    stacks
        .fraction(|_, _| true, |frames| frames.first() == Some(&function))
        .ratio()
}

/// Of the samples whose leaf is `a` or `b`, those whose leaf is `a`.
pub fn leaf_split(profile: &Profile, a: &str, b: &str) -> Fraction {
    let stacks = Stacks::new(profile);
    let leaf_is = |name: &str, frames: &[&str]| frames.first() == Some(&name);
    stacks.fraction(
        |frames, _| leaf_is(a, frames) || leaf_is(b, frames),
        |frames| leaf_is(a, frames),
    )
}

/// Asserts that leaf `a` holds `expected ± tolerance` of the samples whose leaf is `a` or `b`,
/// out of at least 300 such samples.
pub fn assert_leaf_ratio(profile: &Profile, a: &str, b: &str, expected: f64, tolerance: f64) {
    let split = leaf_split(profile, a, b);
    assert_share(
        split,
        &format!("{a} / ({a} + {b})"),
        expected,
        tolerance,
        profile,
    );
}

/// Asserts that `share`, named `what`, is `expected ± tolerance` out of at least 300 samples;
/// `profile`'s top leaves say what else there was if not.
pub fn assert_share(share: Fraction, what: &str, expected: f64, tolerance: f64, profile: &Profile) {
    println!("{what} = {share}");
    // Below 300 samples, the binomial noise alone (σ ≥ 2.5 points) makes ±5 points a coin toss.
    assert!(
        share.total >= 300,
        "{what}: only {share} samples: too few to judge the ratio\n{}",
        top_leaves(profile, 10)
    );
    assert!(
        (share.ratio() - expected).abs() <= tolerance,
        "{what} = {share}, expected {:.0} ± {:.0} %\n{}",
        100.0 * expected,
        100.0 * tolerance,
        top_leaves(profile, 10)
    );
}

/// Like [`leaf_split`], but `a` and `b` may be anywhere on the stack: for code whose leaf is an
/// inlined helper (Rust's `rotate_left` inside `hot_a`), the function of interest is the
/// physical function under it. `a` and `b` must not call each other.
pub fn stack_split(profile: &Profile, a: &str, b: &str) -> Fraction {
    let stacks = Stacks::new(profile);
    stacks.fraction(
        |frames, _| frames.contains(&a) || frames.contains(&b),
        |frames| frames.contains(&a),
    )
}

/// The string value of the sample's label `key`.
pub fn label<'p>(profile: &'p Profile, sample: &Sample, key: &str) -> Option<&'p str> {
    sample
        .label
        .iter()
        .find(|label| string(profile, label.key) == key)
        .map(|label| string(profile, label.str))
}

/// The numeric value of the sample's label `key` (`pid`).
pub fn num_label(profile: &Profile, sample: &Sample, key: &str) -> Option<i64> {
    sample
        .label
        .iter()
        .find(|label| string(profile, label.key) == key)
        .map(|label| label.num)
}

/// The profile with only the samples of process `pid` (numeric label `pid`), for the figures of
/// one process of a recording of several.
pub fn of_process(profile: &Profile, pid: u32) -> Profile {
    let mut only = profile.clone();
    only.sample
        .retain(|sample| num_label(profile, sample, "pid") == Some(i64::from(pid)));
    only
}

/// The `n` heaviest leaf functions, as "count name" lines: what a failed assertion shows so
/// that its reader sees what the profile held instead.
pub fn top_leaves(profile: &Profile, n: usize) -> String {
    let stacks = Stacks::new(profile);
    let mut by_leaf: HashMap<&str, i64> = HashMap::new();
    for sample in &profile.sample {
        let leaf = stacks.frames(sample).first().copied().unwrap_or(UNKNOWN);
        *by_leaf.entry(leaf).or_default() += weight(sample);
    }
    let mut leaves: Vec<(&str, i64)> = by_leaf.into_iter().collect();
    leaves.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(y.0)));
    let lines: Vec<String> = leaves
        .iter()
        .take(n)
        .map(|(name, count)| format!("{count:>8} {name}"))
        .collect();
    format!(
        "{} samples; top leaves:\n{}",
        total_samples(profile),
        lines.join("\n")
    )
}

/// The profile's sample types, as `(type, unit)`.
pub fn sample_types(profile: &Profile) -> Vec<(&str, &str)> {
    profile
        .sample_type
        .iter()
        .map(|t| (string(profile, t.r#type), string(profile, t.unit)))
        .collect()
}

/// Whether `path` is in `frames` in this order (not necessarily adjacent), each name matching
/// a frame with or without Go's `.abi0` suffix.
pub fn passes_through(frames: &[&str], path: &[&str]) -> bool {
    let mut frames = frames.iter();
    path.iter()
        .all(|want| frames.any(|frame| frame == want || frame.strip_suffix(".abi0") == Some(*want)))
}

/// Asserts that a Go program's stacks end where Go's own traceback ends them: nothing is
/// unwound past a goroutine or thread root, at least 99 % of at least `min_samples` samples
/// reach one, and no frame is `<unknown>`.
pub fn assert_go_stacks_rooted(profile: &Profile, min_samples: i64) {
    let stacks = Stacks::new(profile);
    // Exactly these (goexit0, mstart0 and mstart1 are ordinary frames above them); mcall as in
    // Go's own traceback: the goroutine that called it gave the thread up. clone3 and clone
    // begin the threads a cgo program's C code creates.
    const ROOTS: [&str; 6] = [
        "runtime.goexit",
        "runtime.mstart",
        "runtime.rt0_go",
        "runtime.mcall",
        "clone3",
        "clone",
    ];
    let is_root = |frame: &str| {
        ROOTS
            .iter()
            .any(|root| frame == *root || frame.strip_suffix(".abi0") == Some(*root))
    };
    // A root is always the last frame: nothing past it (heap words under goexit, the cgo
    // trampoline's bytes above mstart, g0's frames under a goroutine) is unwound.
    let past_root = stacks.fraction(
        |frames, _| frames.iter().any(|f| is_root(f)),
        |frames| frames.last().is_some_and(|f| is_root(f)),
    );
    println!("stacks with a root that end at it: {past_root}");
    assert_eq!(
        past_root.hits, past_root.total,
        "frames past a goroutine or thread root"
    );
    // Also rooted: g0's frames under a morestack whose goroutine was descheduled on the way
    // (newstack → gopreempt_m), where Go's own traceback ends too. Not a root in the check
    // above: where the goroutine is still there, its frames follow morestack's.
    let rooted_at = |frames: &[&str]| {
        frames
            .last()
            .is_some_and(|f| is_root(f) || f.starts_with("runtime.morestack"))
    };
    let rooted = stacks.fraction(|_, _| true, |frames| rooted_at(frames));
    println!("stacks reaching a root: {rooted}");
    for sample in &profile.sample {
        let frames = stacks.frames(sample);
        if !rooted_at(&frames) {
            println!("  not rooted: {}", frames.join(" < "));
        }
    }
    assert!(rooted.total >= min_samples, "too few samples: {rooted}");
    assert!(
        rooted.ratio() >= 0.99,
        "only {rooted} of the stacks reach a root\n{}",
        top_leaves(profile, 10)
    );
    let unknown = stacks.fraction(|_, _| true, |frames| frames.contains(&"<unknown>"));
    assert_eq!(unknown.hits, 0, "stacks with an <unknown> frame: {unknown}");
}
