//! `rprof-agent record --profile growth`, end to end: a real program that makes memory
//! resident from two call sites, measuring how much; sampled page faults checked against it.

use std::time::Duration;

use rprof_integration::{
    agent_bin, assert_split, build_c, exclusive_cpu, string, total, Measuring, Stacks,
};

/// Optimized, with DWARF, without frame pointers: only unwind tables can unwind it.
const C_FLAGS: &[&str] = &["-O2", "-fomit-frame-pointer", "-g"];

#[test]
fn growth_attributes_new_resident_memory_to_the_code_that_touched_it() {
    let _cpu = exclusive_cpu();
    agent_bin();
    let program = Measuring::start(&build_c("grow_ratio", C_FLAGS));
    let (recording, [rate_a, rate_b]) = program.record("growth", 3);
    let profile = &recording.profile;
    println!("{}", recording.stdout);
    let types: Vec<(&str, &str)> = profile
        .sample_type
        .iter()
        .map(|t| (string(profile, t.r#type), string(profile, t.unit)))
        .collect();
    assert_eq!(types, [("faults", "count"), ("resident", "bytes")]);
    assert_eq!(string(profile, profile.default_sample_type), "resident");
    let at = |site: &'static str| move |frames: &[&str], _: &_| frames.contains(&site);
    let bytes_a = total(profile, 1, at("grow_a"));
    let bytes_b = total(profile, 1, at("grow_b"));
    assert_split(
        "grow_a's share of the resident bytes",
        [bytes_a, bytes_b],
        [rate_a, rate_b],
        0.7..=0.8,
    );
    // Bytes per second of window against the program's per second of its own clock.
    let seconds = Duration::from_nanos(profile.duration_nanos.unsigned_abs()).as_secs_f64();
    let error = (bytes_a + bytes_b) / seconds / (rate_a + rate_b) - 1.0;
    println!(
        "resident bytes: {:+.1} % off what the program touched",
        100.0 * error
    );
    assert!(
        error.abs() <= 0.15,
        "the profile's resident bytes are {:+.1} % off what the program touched",
        100.0 * error
    );
    // The faulting stacks reach main through the sites.
    let stacks = Stacks::new(profile);
    for sample in &profile.sample {
        let frames = stacks.frames(sample);
        if frames.contains(&"grow_a") || frames.contains(&"grow_b") {
            assert!(frames.contains(&"main"), "{frames:?}");
        }
    }
}
