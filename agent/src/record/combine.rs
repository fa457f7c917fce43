//! One profile of a kind out of the recordings of several processes: one file per kind, whatever
//! the number of processes, each sample labelled with its process.

use crate::profile::{merge, ProcessProfile};
use crate::recording::Finished;

/// One process's finished recording of a kind.
pub struct ProcessFinished {
    pub pid: u32,
    /// The `process` label.
    pub name: String,
    pub finished: Finished,
}

/// The profiles of `parts` as one: samples labelled `pid` and `process`, each process's summary
/// on a line of its own (after the number of processes), the first process's title.
pub fn combine(parts: Vec<ProcessFinished>) -> Finished {
    let has_samples = parts.iter().any(|part| part.finished.has_samples);
    let title = title(&parts);
    let summary = summary(&parts);
    let profiles = parts
        .into_iter()
        .map(|part| ProcessProfile {
            pid: part.pid,
            name: part.name,
            profile: part.finished.profile,
        })
        .collect();
    Finished {
        profile: merge(profiles),
        summary,
        title,
        has_samples,
    }
}

/// One process's summary as it is; several, one line each after their number, but those with
/// nothing to say (no samples, no warning: a shell waiting for its child) in one line together.
fn summary(parts: &[ProcessFinished]) -> String {
    if let [only] = parts {
        return only.finished.summary.clone();
    }
    let mut summary = format!("{} processes", parts.len());
    let quiet = |part: &&ProcessFinished| {
        !part.finished.has_samples && !part.finished.summary.contains('\n')
    };
    for part in parts.iter().filter(|part| !quiet(part)) {
        let own = part.finished.summary.replace('\n', "\n    ");
        summary.push_str(&format!("\n  PID {} ({}): {own}", part.pid, part.name));
    }
    let quiet: Vec<String> = parts
        .iter()
        .filter(quiet)
        .map(|part| format!("{} ({})", part.pid, part.name))
        .collect();
    if let Some((listed, more)) = listed(&quiet) {
        summary.push_str(&format!("\n  nothing recorded of PID {listed}{more}"));
    }
    summary
}

/// Most processes named in the line of those without samples (a script's hundred `sleep`s).
const QUIET_LISTED: usize = 8;

/// The first [`QUIET_LISTED`] of `names` and how many more there are; None for none.
fn listed(names: &[String]) -> Option<(String, String)> {
    if names.is_empty() {
        return None;
    }
    let shown = &names[..names.len().min(QUIET_LISTED)];
    let more = match names.len() - shown.len() {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    Some((shown.join(", "), more))
}

fn title(parts: &[ProcessFinished]) -> String {
    let Some((first, others)) = parts.split_first() else {
        return String::new();
    };
    if others.is_empty() {
        return first.finished.title.clone();
    }
    let pids: Vec<String> = others.iter().map(|part| part.pid.to_string()).collect();
    let noun = if pids.len() == 1 { "PID" } else { "PIDs" };
    format!("{} and {noun} {}", first.finished.title, pids.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rprof_proto::Profile;

    fn part(pid: u32, name: &str, summary: &str, has_samples: bool) -> ProcessFinished {
        ProcessFinished {
            pid,
            name: name.to_owned(),
            finished: Finished {
                profile: Profile::default(),
                summary: summary.to_owned(),
                title: format!("PID {pid}"),
                has_samples,
            },
        }
    }

    #[test]
    fn processes_with_nothing_to_say_share_one_line() {
        let combined = combine(vec![
            part(1, "sh", "0 samples", false),
            part(2, "bench", "90 samples", true),
            part(3, "sleep", "0 samples", false),
            part(4, "odd", "0 samples\nwarning: all lost", false),
        ]);
        assert_eq!(
            combined.summary,
            "4 processes\n  PID 2 (bench): 90 samples\n  PID 4 (odd): 0 samples\n    \
             warning: all lost\n  nothing recorded of PID 1 (sh), 3 (sleep)"
        );
        assert_eq!(combined.title, "PID 1 and PIDs 2, 3, 4");
        assert!(combined.has_samples);
        let many: Vec<ProcessFinished> = (1..=10)
            .map(|pid| part(pid, "sleep", "0 samples", false))
            .collect();
        assert!(combine(many).summary.ends_with("8 (sleep) and 2 more"));
        let two = combine(vec![part(1, "sh", "0", false), part(2, "b", "1", true)]);
        assert_eq!(two.title, "PID 1 and PID 2");
        let alone = combine(vec![part(7, "bench", "9 samples", true)]);
        assert_eq!(
            (alone.summary.as_str(), alone.title.as_str()),
            ("9 samples", "PID 7")
        );
    }
}
