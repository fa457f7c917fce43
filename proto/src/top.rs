//! A `go tool pprof -top` style summary, computed without Go.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use crate::pb::{Location, Profile};

/// One row of [`pprof_top`]: a function and what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct TopEntry {
    pub name: String,
    /// Value of the samples in which this function is the leaf.
    pub flat: i64,
    /// `flat` as a percentage of the profile's total.
    pub flat_pct: f64,
    /// Value of the samples in which this function is on the stack.
    pub cum: i64,
    /// `cum` as a percentage of the profile's total.
    pub cum_pct: f64,
}

/// The `n` most expensive functions by value `sample_index`, as
/// `go tool pprof -top` ranks them: by flat, then cum, descending.
///
/// The leaf of a sample is the first line (the innermost inlined function)
/// of its first location. A function appearing several times in one stack
/// (recursion, inlining) counts once towards its cum. Addresses without
/// symbols are named by their hex address. Samples lacking the requested
/// value count as 0, and ids that resolve to nothing are skipped, so a
/// malformed profile yields a partial table rather than a panic.
pub fn pprof_top(profile: &Profile, sample_index: usize, n: usize) -> Vec<TopEntry> {
    let names = FrameNames::new(profile);
    let mut costs: HashMap<Cow<'_, str>, (i64, i64)> = HashMap::new();
    let mut total = 0i64;
    for sample in &profile.sample {
        let value = sample.value.get(sample_index).copied().unwrap_or(0);
        total += value;
        let frames: Vec<Cow<'_, str>> = sample
            .location_id
            .iter()
            .flat_map(|&id| names.of_location(id))
            .collect();
        if let Some(leaf) = frames.first() {
            costs.entry(leaf.clone()).or_default().0 += value;
        }
        let mut seen = HashSet::new();
        for frame in frames {
            if seen.insert(frame.clone()) {
                costs.entry(frame).or_default().1 += value;
            }
        }
    }

    let mut entries: Vec<TopEntry> = costs
        .into_iter()
        .map(|(name, (flat, cum))| TopEntry {
            name: name.into_owned(),
            flat,
            flat_pct: percent(flat, total),
            cum,
            cum_pct: percent(cum, total),
        })
        .collect();
    entries.sort_by(|a, b| {
        (b.flat, b.cum)
            .cmp(&(a.flat, a.cum))
            .then_with(|| a.name.cmp(&b.name))
    });
    entries.truncate(n);
    entries
}

/// Resolves location ids to the function names of their lines.
struct FrameNames<'p> {
    strings: &'p [String],
    locations: HashMap<u64, &'p Location>,
    function_names: HashMap<u64, i64>,
}

impl<'p> FrameNames<'p> {
    fn new(profile: &'p Profile) -> Self {
        Self {
            strings: &profile.string_table,
            locations: profile.location.iter().map(|l| (l.id, l)).collect(),
            function_names: profile.function.iter().map(|f| (f.id, f.name)).collect(),
        }
    }

    /// Names at one location, innermost inlined function first.
    fn of_location(&self, id: u64) -> Vec<Cow<'p, str>> {
        let Some(location) = self.locations.get(&id) else {
            return Vec::new();
        };
        if location.line.is_empty() {
            return vec![Cow::Owned(format!("{:#x}", location.address))];
        }
        location
            .line
            .iter()
            .filter_map(|line| self.function_names.get(&line.function_id))
            .map(|&name| Cow::Borrowed(self.string(name)))
            .collect()
    }

    fn string(&self, index: i64) -> &'p str {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.strings.get(i))
            .map_or("", String::as_str)
    }
}

fn percent(part: i64, total: i64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 * 100.0 / total as f64
    }
}
