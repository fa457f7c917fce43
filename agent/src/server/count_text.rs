//! Go's `debug=1` text of a recorded count profile (threadcreate, and any recorded kind without
//! a text form of its own): the samples grouped by stack, from the finished pprof profile.

use std::collections::HashMap;

use rprof_proto::{Function, Line, Location, Mapping, Profile};

use super::legacy_text::{self, entry_offset, FrameLine, StackRecord};
use crate::unwind::ModuleSet;

/// Go's `debug=1` text, `NAME profile: total N`: the first sample value summed by stack.
pub fn counts_by_stack(name: &str, profile: &Profile, modules: Option<&ModuleSet>) -> String {
    let mut counts: HashMap<&[u64], usize> = HashMap::new();
    for sample in &profile.sample {
        let count = usize::try_from(sample.value.first().copied().unwrap_or(0)).unwrap_or(0);
        *counts.entry(sample.location_id.as_slice()).or_default() += count;
    }
    let total = counts.values().sum();
    let index = Index::new(profile, modules);
    let records = counts
        .into_iter()
        .map(|(locations, count)| index.stack_record(locations, count))
        .collect();
    legacy_text::render(name, total, records, &[])
}

/// A profile's tables by id.
struct Index<'p> {
    profile: &'p Profile,
    /// The target's modules, for entry offsets; None once it is gone.
    modules: Option<&'p ModuleSet>,
    locations: HashMap<u64, &'p Location>,
    functions: HashMap<u64, &'p Function>,
    mappings: HashMap<u64, &'p Mapping>,
}

impl<'p> Index<'p> {
    fn new(profile: &'p Profile, modules: Option<&'p ModuleSet>) -> Self {
        Index {
            profile,
            modules,
            locations: profile.location.iter().map(|l| (l.id, l)).collect(),
            functions: profile.function.iter().map(|f| (f.id, f)).collect(),
            mappings: profile.mapping.iter().map(|m| (m.id, m)).collect(),
        }
    }

    fn string(&self, index: i64) -> Option<String> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.profile.string_table.get(i))
            .filter(|s| !s.is_empty())
            .cloned()
    }

    /// A record from a sample's location ids: addresses for the `@` line, each location's
    /// lines (inlined callee first) for the `#` lines.
    fn stack_record(&self, location_ids: &[u64], count: usize) -> StackRecord {
        let mut pcs = Vec::new();
        let mut frames = Vec::new();
        for id in location_ids {
            let Some(location) = self.locations.get(id) else {
                continue;
            };
            pcs.push(legacy_text::pc(location.address));
            frames.extend(self.frame_lines(location));
        }
        StackRecord { count, pcs, frames }
    }

    fn frame_lines(&self, location: &Location) -> Vec<FrameLine> {
        let module = self
            .mappings
            .get(&location.mapping_id)
            .and_then(|m| self.string(m.filename));
        if location.line.is_empty() {
            return vec![FrameLine {
                pc: location.address,
                function: None,
                offset: None,
                location: module,
            }];
        }
        let offset = self
            .modules
            .and_then(|modules| entry_offset(modules, location.address));
        let line_of = |line: &Line| {
            let function = self.functions.get(&line.function_id);
            let file = function.and_then(|f| self.string(f.filename));
            FrameLine {
                pc: location.address,
                function: function.and_then(|f| self.string(f.name)),
                offset,
                location: match file {
                    Some(file) if line.line > 0 => Some(format!("{file}:{}", line.line)),
                    _ => module.clone(),
                },
            }
        };
        location.line.iter().map(line_of).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rprof_proto::{FunctionSpec, LabelSpec, LineSpec, MappingSpec, ProfileBuilder};

    fn line<'a>(name: &'a str, file: &'a str, line: i64) -> LineSpec<'a> {
        LineSpec {
            function: FunctionSpec {
                name,
                filename: file,
                ..FunctionSpec::default()
            },
            line,
            column: 0,
        }
    }

    #[test]
    fn creations_are_grouped_by_stack_whatever_their_labels() {
        let mut builder =
            ProfileBuilder::new(&[("threadcreate", "count")], ("threadcreate", "count"), 1);
        let mapping = builder.add_mapping(MappingSpec {
            memory_start: 0x1000,
            memory_limit: 0x9000,
            filename: "/srv/app",
            has_functions: true,
            ..MappingSpec::default()
        });
        let leaf = builder.add_location(mapping, 0x1010, &[line("spawn", "app.c", 7)]);
        let caller = builder.add_location(mapping, 0x2020, &[line("main", "", 0)]);
        for worker in ["w1", "w2"] {
            builder.add_sample(&[leaf, caller], &[2], &[LabelSpec::str("thread", worker)]);
        }
        let text = counts_by_stack("threadcreate", &builder.build(), None);
        // Every `@` address is one past the one to name, the leaf's too: pprof subtracts one.
        assert_eq!(
            text,
            "threadcreate profile: total 4\n\
             4 @ 0x1011 0x2021\n\
             #\t0x1010\tspawn\tapp.c:7\n\
             #\t0x2020\tmain\t/srv/app\n\
             \n"
        );
    }
}
