//! Assembles a pprof [`Profile`] from mappings, locations and samples,
//! interning everything so that each distinct value is written once.

use std::collections::HashMap;

use crate::pb::{Function, Label, Line, Location, Mapping, Profile, Sample, ValueType};
use crate::spec::{FunctionSpec, LabelSpec, LineSpec, MappingSpec};
use crate::strings::StringTable;

/// A function after string interning: (name, system_name, filename, start_line).
type FunctionKey = (i64, i64, i64, i64);
/// A location: mapping id, address and its (function id, line, column) lines.
type LocationKey = (u64, u64, Vec<(u64, i64, i64)>);
/// A sample's identity: its stack (leaf first) and its labels, in order.
type SampleKey = (Vec<u64>, Vec<Label>);

/// Builds one pprof profile.
///
/// Ids of mappings, functions and locations start at 1 and follow insertion
/// order, so the first mapping added (the main binary, by pprof convention)
/// gets id 1. Adding an equal mapping, function or location again returns the
/// existing id; adding a sample with the same stack and labels as an earlier
/// one adds its values to that sample.
///
/// ```
/// use rprof_proto::{FunctionSpec, LabelSpec, LineSpec, MappingSpec, ProfileBuilder};
///
/// let mut b = ProfileBuilder::new(
///     &[("samples", "count"), ("cpu", "nanoseconds")],
///     ("cpu", "nanoseconds"),
///     10_000_000,
/// );
/// let exe = b.add_mapping(MappingSpec {
///     memory_start: 0x40_0000,
///     memory_limit: 0x50_0000,
///     filename: "/usr/bin/app",
///     has_functions: true,
///     ..Default::default()
/// });
/// let main = FunctionSpec { name: "main", ..Default::default() };
/// let loc = b.add_location(exe, 0x40_1000, &[LineSpec { function: main, line: 7, column: 0 }]);
/// b.add_sample(&[loc], &[1, 10_000_000], &[LabelSpec::num("thread_id", 42, "id")]);
/// let profile = b.build();
/// assert_eq!(profile.sample.len(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct ProfileBuilder {
    strings: StringTable,
    sample_types: Vec<ValueType>,
    period_type: ValueType,
    period: i64,
    time_nanos: i64,
    duration_nanos: i64,
    comments: Vec<i64>,
    default_sample_type: i64,
    doc_url: i64,
    mappings: Vec<Mapping>,
    mapping_ids: HashMap<Mapping, u64>,
    functions: Vec<Function>,
    function_ids: HashMap<FunctionKey, u64>,
    locations: Vec<Location>,
    location_ids: HashMap<LocationKey, u64>,
    samples: Vec<Sample>,
    sample_positions: HashMap<SampleKey, usize>,
}

impl ProfileBuilder {
    /// Starts a profile whose samples carry one value per `(type, unit)` in
    /// `sample_types`, taken every `period` units of `period_type`.
    pub fn new(sample_types: &[(&str, &str)], period_type: (&str, &str), period: i64) -> Self {
        let mut strings = StringTable::new();
        let sample_types = sample_types
            .iter()
            .map(|&pair| value_type(&mut strings, pair))
            .collect();
        let period_type = value_type(&mut strings, period_type);
        Self {
            strings,
            sample_types,
            period_type,
            period,
            time_nanos: 0,
            duration_nanos: 0,
            comments: Vec::new(),
            default_sample_type: 0,
            doc_url: 0,
            mappings: Vec::new(),
            mapping_ids: HashMap::new(),
            functions: Vec::new(),
            function_ids: HashMap::new(),
            locations: Vec::new(),
            location_ids: HashMap::new(),
            samples: Vec::new(),
            sample_positions: HashMap::new(),
        }
    }

    /// Start of the recording, in nanoseconds since the Unix epoch.
    pub fn set_time_nanos(&mut self, time_nanos: i64) {
        self.time_nanos = time_nanos;
    }

    /// Length of the recording, in nanoseconds.
    pub fn set_duration_nanos(&mut self, duration_nanos: i64) {
        self.duration_nanos = duration_nanos;
    }

    /// Adds a human-readable note; `go tool pprof` prints comments in its
    /// header (e.g. which perf event was sampled).
    pub fn add_comment(&mut self, comment: &str) {
        let index = self.strings.intern(comment);
        self.comments.push(index);
    }

    /// Names the sample type tools show by default (otherwise the last one).
    pub fn set_default_sample_type(&mut self, sample_type: &str) {
        self.default_sample_type = self.strings.intern(sample_type);
    }

    /// Sets the URL documenting this kind of profile.
    pub fn set_doc_url(&mut self, url: &str) {
        self.doc_url = self.strings.intern(url);
    }

    /// Adds a mapping and returns its id.
    pub fn add_mapping(&mut self, spec: MappingSpec<'_>) -> u64 {
        let mapping = Mapping {
            id: 0,
            memory_start: spec.memory_start,
            memory_limit: spec.memory_limit,
            file_offset: spec.file_offset,
            filename: self.strings.intern(spec.filename),
            build_id: self.strings.intern(spec.build_id),
            has_functions: spec.has_functions,
            has_filenames: spec.has_filenames,
            has_line_numbers: spec.has_line_numbers,
            has_inline_frames: spec.has_inline_frames,
        };
        if let Some(&id) = self.mapping_ids.get(&mapping) {
            return id;
        }
        let id = next_id(self.mappings.len());
        self.mapping_ids.insert(mapping, id);
        self.mappings.push(Mapping { id, ..mapping });
        id
    }

    /// Adds a location and returns its id.
    ///
    /// `mapping_id` is an id returned by [`add_mapping`](Self::add_mapping),
    /// or 0 when the address belongs to no known mapping. `lines` lists the
    /// innermost inlined function first and the physical function last; it
    /// is empty for an address that could not be symbolized.
    ///
    /// # Panics
    /// If `mapping_id` is neither 0 nor a known mapping id.
    pub fn add_location(&mut self, mapping_id: u64, address: u64, lines: &[LineSpec<'_>]) -> u64 {
        assert!(
            mapping_id <= self.mappings.len() as u64,
            "location {address:#x} refers to unknown mapping id {mapping_id}"
        );
        let lines: Vec<Line> = lines.iter().map(|line| self.line(line)).collect();
        let key = (
            mapping_id,
            address,
            lines
                .iter()
                .map(|l| (l.function_id, l.line, l.column))
                .collect(),
        );
        if let Some(&id) = self.location_ids.get(&key) {
            return id;
        }
        let id = next_id(self.locations.len());
        self.location_ids.insert(key, id);
        self.locations.push(Location {
            id,
            mapping_id,
            address,
            line: lines,
            is_folded: false,
        });
        id
    }

    /// Records `values` (one per sample type) for the stack `location_ids`
    /// (leaf first) with `labels`, adding them to an earlier sample with the
    /// same stack and the same labels in the same order.
    ///
    /// # Panics
    /// If the number of values differs from the number of sample types, if
    /// a location id is unknown, or if a numeric label has an empty unit.
    pub fn add_sample(&mut self, location_ids: &[u64], values: &[i64], labels: &[LabelSpec<'_>]) {
        assert_eq!(
            values.len(),
            self.sample_types.len(),
            "a sample needs one value per sample type"
        );
        let known = self.locations.len() as u64;
        if let Some(bad) = location_ids.iter().find(|&&id| id == 0 || id > known) {
            panic!("sample refers to unknown location id {bad}");
        }
        let labels: Vec<Label> = labels.iter().map(|label| self.label(label)).collect();
        let key = (location_ids.to_vec(), labels);
        if let Some(&position) = self.sample_positions.get(&key) {
            let sample = &mut self.samples[position];
            for (sum, value) in sample.value.iter_mut().zip(values) {
                *sum += value;
            }
            return;
        }
        self.samples.push(Sample {
            location_id: key.0.clone(),
            value: values.to_vec(),
            label: key.1.clone(),
        });
        self.sample_positions.insert(key, self.samples.len() - 1);
    }

    /// Finishes the profile.
    pub fn build(self) -> Profile {
        Profile {
            sample_type: self.sample_types,
            sample: self.samples,
            mapping: self.mappings,
            location: self.locations,
            function: self.functions,
            string_table: self.strings.into_vec(),
            drop_frames: 0,
            keep_frames: 0,
            time_nanos: self.time_nanos,
            duration_nanos: self.duration_nanos,
            period_type: Some(self.period_type),
            period: self.period,
            comment: self.comments,
            default_sample_type: self.default_sample_type,
            doc_url: self.doc_url,
        }
    }

    fn line(&mut self, spec: &LineSpec<'_>) -> Line {
        Line {
            function_id: self.function(&spec.function),
            line: spec.line,
            column: spec.column,
        }
    }

    fn function(&mut self, spec: &FunctionSpec<'_>) -> u64 {
        let key = (
            self.strings.intern(spec.name),
            self.strings.intern(spec.system_name),
            self.strings.intern(spec.filename),
            spec.start_line,
        );
        if let Some(&id) = self.function_ids.get(&key) {
            return id;
        }
        let id = next_id(self.functions.len());
        self.function_ids.insert(key, id);
        let (name, system_name, filename, start_line) = key;
        self.functions.push(Function {
            id,
            name,
            system_name,
            filename,
            start_line,
        });
        id
    }

    fn label(&mut self, spec: &LabelSpec<'_>) -> Label {
        match *spec {
            LabelSpec::Str { key, value } => Label {
                key: self.strings.intern(key),
                str: self.strings.intern(value),
                num: 0,
                num_unit: 0,
            },
            LabelSpec::Num { key, value, unit } => {
                assert!(!unit.is_empty(), "numeric label {key:?} needs a unit");
                Label {
                    key: self.strings.intern(key),
                    str: 0,
                    num: value,
                    num_unit: self.strings.intern(unit),
                }
            }
        }
    }
}

fn value_type(strings: &mut StringTable, (kind, unit): (&str, &str)) -> ValueType {
    ValueType {
        r#type: strings.intern(kind),
        unit: strings.intern(unit),
    }
}

/// Ids are 1-based positions: pprof reserves 0 for "none".
fn next_id(len: usize) -> u64 {
    len as u64 + 1
}
