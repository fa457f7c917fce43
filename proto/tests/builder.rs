//! The builder's output, read back through `decode` as every consumer does.

use std::collections::HashSet;

use rprof_proto::{
    decode, encode_gzip, write_gzip, FunctionSpec, LabelSpec, LineSpec, MappingSpec, Profile,
    ProfileBuilder,
};

const CPU_TYPES: [(&str, &str); 2] = [("samples", "count"), ("cpu", "nanoseconds")];
const PERIOD: i64 = 10_000_000;

fn cpu_builder() -> ProfileBuilder {
    ProfileBuilder::new(&CPU_TYPES, ("cpu", "nanoseconds"), PERIOD)
}

fn exe() -> MappingSpec<'static> {
    MappingSpec {
        memory_start: 0x55_0000_0000,
        memory_limit: 0x55_0000_8000,
        file_offset: 0x1000,
        filename: "/usr/bin/app",
        build_id: "0123456789abcdef",
        has_functions: true,
        has_filenames: true,
        has_line_numbers: true,
        has_inline_frames: true,
    }
}

fn libc() -> MappingSpec<'static> {
    MappingSpec {
        memory_start: 0x7f00_0000_0000,
        memory_limit: 0x7f00_0010_0000,
        filename: "/usr/lib/x86_64-linux-gnu/libc.so.6",
        build_id: "fedcba9876543210",
        has_functions: true,
        ..Default::default()
    }
}

fn func(name: &'static str, filename: &'static str, start_line: i64) -> FunctionSpec<'static> {
    FunctionSpec {
        name,
        system_name: name,
        filename,
        start_line,
    }
}

fn at(function: FunctionSpec<'static>, line: i64) -> LineSpec<'static> {
    LineSpec {
        function,
        line,
        column: 0,
    }
}

fn roundtrip(builder: ProfileBuilder) -> Profile {
    decode(&encode_gzip(&builder.build())).expect("decode what the builder wrote")
}

fn string(profile: &Profile, index: i64) -> &str {
    &profile.string_table[usize::try_from(index).unwrap()]
}

fn function_name(profile: &Profile, function_id: u64) -> &str {
    let function = profile
        .function
        .iter()
        .find(|f| f.id == function_id)
        .expect("line refers to a known function");
    string(profile, function.name)
}

fn assert_unique_nonzero(what: &str, ids: impl IntoIterator<Item = u64>) {
    let mut seen = HashSet::new();
    for id in ids {
        assert_ne!(id, 0, "{what} id 0 is reserved");
        assert!(seen.insert(id), "{what} id {id} is duplicated");
    }
}

#[test]
fn ids_are_nonzero_unique_and_follow_insertion_order() {
    let mut b = cpu_builder();
    let exe_id = b.add_mapping(exe());
    let libc_id = b.add_mapping(libc());
    let main = func("main", "app.c", 10);
    let work = func("work", "app.c", 30);
    let memcpy = func("memcpy", "", 0);
    let l1 = b.add_location(exe_id, 0x55_0000_1100, &[at(work, 33)]);
    let l2 = b.add_location(exe_id, 0x55_0000_1010, &[at(main, 12)]);
    let l3 = b.add_location(libc_id, 0x7f00_0000_2000, &[at(memcpy, 0)]);
    b.add_sample(&[l3, l1, l2], &[1, PERIOD], &[]);
    let p = roundtrip(b);

    assert_eq!((exe_id, libc_id), (1, 2));
    assert_eq!((l1, l2, l3), (1, 2, 3));
    assert_eq!(string(&p, p.mapping[0].filename), "/usr/bin/app");
    assert_eq!(string(&p, p.mapping[0].build_id), "0123456789abcdef");
    assert_eq!(p.mapping[0].file_offset, 0x1000);
    assert!(p.mapping[0].has_inline_frames);
    assert!(p.mapping[1].has_functions && !p.mapping[1].has_line_numbers);
    assert_unique_nonzero("mapping", p.mapping.iter().map(|m| m.id));
    assert_unique_nonzero("location", p.location.iter().map(|l| l.id));
    assert_unique_nonzero("function", p.function.iter().map(|f| f.id));
    assert_eq!(p.function.len(), 3);
    assert_eq!(p.string_table[0], "");
}

#[test]
fn equal_mappings_functions_locations_and_strings_are_stored_once() {
    let mut b = cpu_builder();
    let first = b.add_mapping(exe());
    let again = b.add_mapping(exe());
    let work = func("work", "app.c", 30);
    let a = b.add_location(first, 0x55_0000_1100, &[at(work, 33)]);
    let same = b.add_location(first, 0x55_0000_1100, &[at(work, 33)]);
    let other_line = b.add_location(first, 0x55_0000_1100, &[at(work, 34)]);
    let other_address = b.add_location(first, 0x55_0000_1200, &[at(work, 35)]);
    b.add_sample(&[a, other_line, other_address], &[1, PERIOD], &[]);
    let p = roundtrip(b);

    assert_eq!(first, again);
    assert_eq!(a, same);
    assert_eq!(p.mapping.len(), 1);
    assert_eq!(p.location.len(), 3);
    assert_eq!(
        p.function.len(),
        1,
        "one function shared by three locations"
    );
    let app_c = p.string_table.iter().filter(|s| *s == "app.c").count();
    assert_eq!(app_c, 1);
    // name and system_name are equal and share one entry.
    let work_strings = p.string_table.iter().filter(|s| *s == "work").count();
    assert_eq!(work_strings, 1);
}

#[test]
fn header_fields_round_trip() {
    let mut b = cpu_builder();
    b.set_time_nanos(1_700_000_000_123_456_789);
    b.set_duration_nanos(5_000_000_000);
    b.add_comment("event: cpu-clock (software)");
    b.add_comment("rprof 0.1.0");
    b.set_default_sample_type("cpu");
    b.set_doc_url("https://example.com/rprof/cpu");
    let p = roundtrip(b);

    let types: Vec<(&str, &str)> = p
        .sample_type
        .iter()
        .map(|t| (string(&p, t.r#type), string(&p, t.unit)))
        .collect();
    assert_eq!(types, CPU_TYPES);
    let period_type = p.period_type.expect("period type set");
    assert_eq!(string(&p, period_type.r#type), "cpu");
    assert_eq!(string(&p, period_type.unit), "nanoseconds");
    assert_eq!(p.period, PERIOD);
    assert_eq!(p.time_nanos, 1_700_000_000_123_456_789);
    assert_eq!(p.duration_nanos, 5_000_000_000);
    let comments: Vec<&str> = p.comment.iter().map(|&c| string(&p, c)).collect();
    assert_eq!(comments, ["event: cpu-clock (software)", "rprof 0.1.0"]);
    assert_eq!(string(&p, p.default_sample_type), "cpu");
    assert_eq!(string(&p, p.doc_url), "https://example.com/rprof/cpu");
}

#[test]
fn samples_with_equal_stack_and_labels_are_summed() {
    let mut b = cpu_builder();
    let m = b.add_mapping(exe());
    let main = b.add_location(m, 0x55_0000_1010, &[at(func("main", "app.c", 10), 12)]);
    let work = b.add_location(m, 0x55_0000_1100, &[at(func("work", "app.c", 30), 33)]);
    let t1 = [
        LabelSpec::num("thread_id", 101, "id"),
        LabelSpec::str("thread_name", "worker"),
    ];
    let t2 = [
        LabelSpec::num("thread_id", 102, "id"),
        LabelSpec::str("thread_name", "worker"),
    ];
    b.add_sample(&[work, main], &[1, PERIOD], &t1);
    b.add_sample(&[work, main], &[1, PERIOD], &t1);
    b.add_sample(&[work, main], &[2, 2 * PERIOD], &t1);
    b.add_sample(&[work, main], &[1, PERIOD], &t2);
    b.add_sample(&[main], &[1, PERIOD], &t1);
    let p = roundtrip(b);

    assert_eq!(p.sample.len(), 3);
    for sample in &p.sample {
        assert_eq!(sample.value.len(), p.sample_type.len());
    }
    assert_eq!(p.sample[0].location_id, [work, main]);
    assert_eq!(p.sample[0].value, [4, 4 * PERIOD]);
    assert_eq!(p.sample[0].label[0].num, 101);
    assert_eq!(p.sample[1].value, [1, PERIOD]);
    assert_eq!(p.sample[1].label[0].num, 102);
    assert_eq!(p.sample[2].location_id, [main]);
    assert_eq!(p.sample[2].value, [1, PERIOD]);
}

#[test]
fn inline_lines_keep_callee_first_order() {
    let mut b = cpu_builder();
    let m = b.add_mapping(exe());
    let lines = [
        at(func("hash_byte", "hash.h", 5), 7),
        at(func("hash_block", "hash.h", 12), 15),
        at(func("compute", "compute.c", 40), 44),
    ];
    let loc = b.add_location(m, 0x55_0000_2000, &lines);
    b.add_sample(&[loc], &[1, PERIOD], &[]);
    let p = roundtrip(b);

    let location = &p.location[0];
    assert_eq!(location.id, loc);
    assert_eq!(location.mapping_id, m);
    assert_eq!(location.address, 0x55_0000_2000);
    let decoded: Vec<(&str, i64)> = location
        .line
        .iter()
        .map(|l| (function_name(&p, l.function_id), l.line))
        .collect();
    assert_eq!(
        decoded,
        [("hash_byte", 7), ("hash_block", 15), ("compute", 44)]
    );
    let hash_h = p
        .function
        .iter()
        .find(|f| string(&p, f.name) == "hash_block")
        .unwrap();
    assert_eq!(string(&p, hash_h.filename), "hash.h");
    assert_eq!(hash_h.start_line, 12);
}

#[test]
fn line_columns_and_unsymbolized_locations_round_trip() {
    let mut b = cpu_builder();
    let m = b.add_mapping(exe());
    let with_column = LineSpec {
        function: func("main", "main.rs", 1),
        line: 3,
        column: 17,
    };
    let symbolized = b.add_location(m, 0x55_0000_1000, &[with_column]);
    let bare = b.add_location(0, 0xdead_beef, &[]);
    b.add_sample(&[bare, symbolized], &[1, PERIOD], &[]);
    let p = roundtrip(b);

    assert_eq!(p.location[0].line[0].column, 17);
    assert_eq!(p.location[1].mapping_id, 0);
    assert_eq!(p.location[1].address, 0xdead_beef);
    assert!(p.location[1].line.is_empty());
}

#[test]
fn labels_keep_their_strings_and_units() {
    let mut b = cpu_builder();
    let m = b.add_mapping(exe());
    let loc = b.add_location(m, 0x55_0000_1000, &[at(func("main", "app.c", 1), 2)]);
    let labels = [
        LabelSpec::num("thread_id", 0, "id"),
        LabelSpec::str("thread_name", "main"),
    ];
    b.add_sample(&[loc], &[1, PERIOD], &labels);
    let p = roundtrip(b);

    let [tid, name] = p.sample[0].label.as_slice() else {
        panic!("expected two labels, got {:?}", p.sample[0].label);
    };
    assert_eq!(string(&p, tid.key), "thread_id");
    assert_eq!(tid.num, 0);
    assert_eq!(string(&p, tid.num_unit), "id");
    assert_eq!(tid.str, 0);
    assert_eq!(string(&p, name.key), "thread_name");
    assert_eq!(string(&p, name.str), "main");
    assert_eq!((name.num, name.num_unit), (0, 0));
}

#[test]
#[should_panic(expected = "needs a unit")]
fn numeric_label_without_unit_is_rejected() {
    let mut b = cpu_builder();
    b.add_sample(&[], &[1, PERIOD], &[LabelSpec::num("cpu", 0, "")]);
}

#[test]
#[should_panic(expected = "one value per sample type")]
fn sample_with_wrong_value_count_is_rejected() {
    let mut b = cpu_builder();
    b.add_sample(&[], &[1], &[]);
}

#[test]
#[should_panic(expected = "unknown location id 7")]
fn sample_with_unknown_location_is_rejected() {
    let mut b = cpu_builder();
    b.add_sample(&[7], &[1, PERIOD], &[]);
}

#[test]
#[should_panic(expected = "unknown mapping id 3")]
fn location_with_unknown_mapping_is_rejected() {
    let mut b = cpu_builder();
    b.add_location(3, 0x1000, &[]);
}

#[test]
fn decode_accepts_gzip_and_plain_bytes_and_rejects_garbage() {
    use prost::Message;

    let mut b = ProfileBuilder::new(&[("threads", "count")], ("threads", "count"), 1);
    let m = b.add_mapping(exe());
    let loc = b.add_location(m, 0x55_0000_1000, &[at(func("start_thread", "", 0), 0)]);
    b.add_sample(&[loc], &[3], &[]);
    let profile = b.build();

    let gzipped = encode_gzip(&profile);
    assert_eq!(&gzipped[..2], [0x1f, 0x8b]);
    let mut written = Vec::new();
    write_gzip(&profile, &mut written).unwrap();

    assert_eq!(decode(&gzipped).unwrap(), profile);
    assert_eq!(decode(&written).unwrap(), profile);
    assert_eq!(decode(&profile.encode_to_vec()).unwrap(), profile);
    assert!(
        decode(&[0x1f, 0x8b, 0x08, 0x00, 0x01]).is_err(),
        "truncated gzip"
    );
    assert!(decode(&[0xff, 0xff, 0xff]).is_err(), "not protobuf");
}
