//! One pprof profile out of the profiles of one kind taken of several processes in one window
//! (`record` following a command's children, or several `--pid`s): each process's strings,
//! mappings, locations and functions are carried over under new ids, and every sample is
//! labelled with the process it was taken of (`pid`, `process`).

use std::collections::HashMap;

use rprof_proto::{
    Function, Label, Line, Location, Mapping, Profile, Sample, StringTable, ValueType,
};

/// One process's profile, with what its samples are labelled with.
pub struct ProcessProfile {
    pub pid: u32,
    /// The process's name (its comm), the `process` label.
    pub name: String,
    pub profile: Profile,
}

/// The profiles of `parts` as one, in their order. The first part gives what is common to all
/// (sample types, period, time, duration); a part whose sample types differ from the first's
/// (never the case for one kind) is left out, and a comment says so. Each part's comments are
/// kept, prefixed with its PID.
pub fn merge(parts: Vec<ProcessProfile>) -> Profile {
    let mut merged = Merged::default();
    let mut parts = parts.into_iter();
    let Some(first) = parts.next() else {
        return Profile::default();
    };
    merged.header(&first.profile);
    let kinds: Vec<(String, String)> = sample_types(&first.profile)
        .map(|(t, u)| (t.to_owned(), u.to_owned()))
        .collect();
    merged.add(first);
    for part in parts {
        if sample_types(&part.profile).eq(kinds.iter().map(|(t, u)| (t.as_str(), u.as_str()))) {
            merged.add(part);
        } else {
            let note = format!(
                "PID {}: left out: its sample types differ from PID {}'s",
                part.pid,
                merged.first_pid.unwrap_or(0)
            );
            let comment = merged.strings.intern(&note);
            merged.profile.comment.push(comment);
        }
    }
    merged.finish()
}

/// The (type, unit) names of a profile's sample values.
fn sample_types(profile: &Profile) -> impl Iterator<Item = (&str, &str)> {
    profile
        .sample_type
        .iter()
        .map(|t| (profile.string(t.r#type), profile.string(t.unit)))
}

#[derive(Default)]
struct Merged {
    profile: Profile,
    strings: StringTable,
    first_pid: Option<u32>,
    next_mapping: u64,
    next_location: u64,
    next_function: u64,
}

impl Merged {
    /// What the first profile says for all: sample types, period, time and duration.
    fn header(&mut self, first: &Profile) {
        let mut strings = Strings::new(&mut self.strings, first);
        let profile = &mut self.profile;
        profile.sample_type = first
            .sample_type
            .iter()
            .map(|t| strings.value_type(t))
            .collect();
        profile.period_type = first.period_type.as_ref().map(|t| strings.value_type(t));
        profile.period = first.period;
        profile.time_nanos = first.time_nanos;
        profile.duration_nanos = first.duration_nanos;
        profile.default_sample_type = strings.of(first.default_sample_type);
        profile.drop_frames = strings.of(first.drop_frames);
        profile.keep_frames = strings.of(first.keep_frames);
        profile.doc_url = strings.of(first.doc_url);
    }

    /// Carries `part` over under new ids, its samples labelled with its process.
    fn add(&mut self, part: ProcessProfile) {
        let ProcessProfile { pid, name, profile } = part;
        self.first_pid.get_or_insert(pid);
        let mut strings = Strings::new(&mut self.strings, &profile);
        let mappings = renumber(profile.mapping.iter().map(|m| m.id), &mut self.next_mapping);
        let functions = renumber(
            profile.function.iter().map(|f| f.id),
            &mut self.next_function,
        );
        let locations = renumber(
            profile.location.iter().map(|l| l.id),
            &mut self.next_location,
        );
        let out = &mut self.profile;
        for &comment in &profile.comment {
            let text = format!("PID {pid}: {}", profile.string(comment));
            out.comment.push(strings.text(&text));
        }
        out.mapping.extend(profile.mapping.iter().map(|m| Mapping {
            id: mappings[&m.id],
            filename: strings.of(m.filename),
            build_id: strings.of(m.build_id),
            ..*m
        }));
        out.function
            .extend(profile.function.iter().map(|f| Function {
                id: functions[&f.id],
                name: strings.of(f.name),
                system_name: strings.of(f.system_name),
                filename: strings.of(f.filename),
                start_line: f.start_line,
            }));
        out.location.extend(profile.location.iter().map(|l| {
            Location {
                id: locations[&l.id],
                mapping_id: renumbered(&mappings, l.mapping_id),
                line: l
                    .line
                    .iter()
                    .map(|line| Line {
                        function_id: renumbered(&functions, line.function_id),
                        ..*line
                    })
                    .collect(),
                ..l.clone()
            }
        }));
        // Unit "none": pprof drops a numeric label without unit whose value is 0, and prints
        // this one as a bare number.
        let process_labels = [
            Label {
                key: strings.text("pid"),
                num: i64::from(pid),
                num_unit: strings.text("none"),
                ..Label::default()
            },
            Label {
                key: strings.text("process"),
                str: strings.text(&name),
                ..Label::default()
            },
        ];
        out.sample.extend(profile.sample.iter().map(|sample| {
            let mut label: Vec<Label> = sample
                .label
                .iter()
                .map(|l| Label {
                    key: strings.of(l.key),
                    str: strings.of(l.str),
                    num: l.num,
                    num_unit: strings.of(l.num_unit),
                })
                .collect();
            label.extend(process_labels.iter().cloned());
            Sample {
                location_id: sample
                    .location_id
                    .iter()
                    .map(|&id| renumbered(&locations, id))
                    .collect(),
                value: sample.value.clone(),
                label,
            }
        }));
    }

    fn finish(mut self) -> Profile {
        self.profile.string_table = self.strings.into_vec();
        self.profile
    }
}

/// The merged string table, seen from one part: its indices become the table's.
struct Strings<'a> {
    table: &'a mut StringTable,
    part: &'a Profile,
}

impl<'a> Strings<'a> {
    fn new(table: &'a mut StringTable, part: &'a Profile) -> Self {
        Strings { table, part }
    }

    /// The merged index of the part's string `index`.
    fn of(&mut self, index: i64) -> i64 {
        self.table.intern(self.part.string(index))
    }

    /// The merged index of `text`.
    fn text(&mut self, text: &str) -> i64 {
        self.table.intern(text)
    }

    fn value_type(&mut self, t: &ValueType) -> ValueType {
        ValueType {
            r#type: self.of(t.r#type),
            unit: self.of(t.unit),
        }
    }
}

/// New ids for a part's `ids` (mappings, locations or functions), following on from `next`.
/// A duplicate id (a malformed part) keeps its first new id.
fn renumber(ids: impl Iterator<Item = u64>, next: &mut u64) -> HashMap<u64, u64> {
    let mut renumbered = HashMap::new();
    for id in ids {
        renumbered.entry(id).or_insert_with(|| {
            *next += 1;
            *next
        });
    }
    renumbered
}

/// The new id of a reference; 0 (none) for a reference to nothing.
fn renumbered(ids: &HashMap<u64, u64>, id: u64) -> u64 {
    ids.get(&id).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-sample profile of `function` in `file`, under ids and string indices of its own
    /// (`shift` moves both, as two independent profiles would have them).
    fn profile(function: &str, file: &str, value: i64, shift: u64) -> Profile {
        let mut strings = vec![String::new()];
        for _ in 0..shift {
            strings.push(format!("filler{}", strings.len()));
        }
        let base = strings.len() as i64;
        strings.extend(
            [
                "samples",
                "count",
                function,
                file,
                "thread",
                "main",
                "a comment",
            ]
            .map(String::from),
        );
        let id = 1 + shift;
        Profile {
            sample_type: vec![ValueType {
                r#type: base,
                unit: base + 1,
            }],
            mapping: vec![Mapping {
                id,
                filename: base + 3,
                ..Mapping::default()
            }],
            function: vec![Function {
                id,
                name: base + 2,
                ..Function::default()
            }],
            location: vec![Location {
                id,
                mapping_id: id,
                line: vec![Line {
                    function_id: id,
                    line: 7,
                    column: 0,
                }],
                ..Location::default()
            }],
            sample: vec![Sample {
                location_id: vec![id],
                value: vec![value],
                label: vec![Label {
                    key: base + 4,
                    str: base + 5,
                    ..Label::default()
                }],
            }],
            comment: vec![base + 6],
            string_table: strings,
            ..Profile::default()
        }
    }

    fn part(pid: u32, name: &str, profile: Profile) -> ProcessProfile {
        ProcessProfile {
            pid,
            name: name.to_owned(),
            profile,
        }
    }

    /// A label as (key, string value, number).
    type Labelled<'a> = (&'a str, &'a str, i64);

    /// The function name, mapping file, value and labels of every sample of `merged`.
    fn samples(merged: &Profile) -> Vec<(&str, &str, i64, Vec<Labelled<'_>>)> {
        merged
            .sample
            .iter()
            .map(|sample| {
                let location = merged
                    .location
                    .iter()
                    .find(|l| l.id == sample.location_id[0])
                    .expect("the location");
                let function = merged
                    .function
                    .iter()
                    .find(|f| f.id == location.line[0].function_id)
                    .expect("the function");
                let mapping = merged
                    .mapping
                    .iter()
                    .find(|m| m.id == location.mapping_id)
                    .expect("the mapping");
                let labels = sample
                    .label
                    .iter()
                    .map(|l| (merged.string(l.key), merged.string(l.str), l.num))
                    .collect();
                (
                    merged.string(function.name),
                    merged.string(mapping.filename),
                    sample.value[0],
                    labels,
                )
            })
            .collect()
    }

    #[test]
    fn each_process_keeps_its_stacks_under_its_pid_and_name() {
        let merged = merge(vec![
            part(10, "sh", profile("wait", "/bin/sh", 2, 0)),
            part(11, "leaf", profile("leaf_a", "/tmp/leaf", 30, 3)),
        ]);
        assert_eq!(
            samples(&merged),
            vec![
                (
                    "wait",
                    "/bin/sh",
                    2,
                    vec![("thread", "main", 0), ("pid", "", 10), ("process", "sh", 0)]
                ),
                (
                    "leaf_a",
                    "/tmp/leaf",
                    30,
                    vec![
                        ("thread", "main", 0),
                        ("pid", "", 11),
                        ("process", "leaf", 0)
                    ]
                ),
            ]
        );
        let ids = |ids: Vec<u64>| {
            let mut unique = ids.clone();
            unique.dedup();
            assert_eq!(unique.len(), ids.len(), "{ids:?}");
        };
        let pid_label = merged.sample[0].label[1];
        // A unit, or go tool pprof would drop a numeric label of 0.
        assert_eq!(merged.string(pid_label.num_unit), "none");
        ids(merged.location.iter().map(|l| l.id).collect());
        ids(merged.function.iter().map(|f| f.id).collect());
        ids(merged.mapping.iter().map(|m| m.id).collect());
        let comments: Vec<&str> = merged.comment.iter().map(|&c| merged.string(c)).collect();
        assert_eq!(comments, ["PID 10: a comment", "PID 11: a comment"]);
        assert_eq!(merged.string(merged.sample_type[0].r#type), "samples");
        assert_eq!(merged.string_table[0], "");
    }

    #[test]
    fn a_profile_of_other_sample_types_is_left_out_and_said_so() {
        let mut other = profile("leaf_a", "/tmp/leaf", 30, 0);
        other.string_table[1] = "bytes".to_owned();
        let merged = merge(vec![
            part(10, "sh", profile("wait", "/bin/sh", 2, 0)),
            part(11, "leaf", other),
        ]);
        assert_eq!(merged.sample.len(), 1);
        let comments: Vec<&str> = merged.comment.iter().map(|&c| merged.string(c)).collect();
        assert_eq!(
            comments,
            [
                "PID 10: a comment",
                "PID 11: left out: its sample types differ from PID 10's"
            ]
        );
        assert_eq!(merge(Vec::new()), Profile::default());
    }
}
