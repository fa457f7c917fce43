//! `pprof_top` figures on hand-built profiles.

use rprof_proto::{pprof_top, FunctionSpec, LineSpec, Profile, ProfileBuilder, TopEntry};

const PERIOD: i64 = 10_000_000;

fn line(name: &'static str) -> LineSpec<'static> {
    LineSpec {
        function: FunctionSpec {
            name,
            ..Default::default()
        },
        line: 1,
        column: 0,
    }
}

/// A CPU profile whose samples are the given stacks (leaf first), each a
/// list of locations, each a list of function names (callee first).
fn profile(stacks: &[&[&[&'static str]]]) -> Profile {
    let mut b = ProfileBuilder::new(
        &[("samples", "count"), ("cpu", "nanoseconds")],
        ("cpu", "nanoseconds"),
        PERIOD,
    );
    let m = b.add_mapping(Default::default());
    for stack in stacks {
        let ids: Vec<u64> = stack
            .iter()
            .map(|names| {
                let lines: Vec<LineSpec> = names.iter().map(|&n| line(n)).collect();
                // Locations with different lines stay apart even at one address.
                b.add_location(m, 0x1000, &lines)
            })
            .collect();
        b.add_sample(&ids, &[1, PERIOD], &[]);
    }
    b.build()
}

fn row(name: &str, flat: i64, flat_pct: f64, cum: i64, cum_pct: f64) -> TopEntry {
    TopEntry {
        name: name.to_owned(),
        flat,
        flat_pct,
        cum,
        cum_pct,
    }
}

#[test]
fn three_samples_in_a_and_one_in_b() {
    let p = profile(&[
        &[&["a"], &["main"]],
        &[&["a"], &["main"]],
        &[&["a"], &["main"]],
        &[&["b"], &["main"]],
    ]);

    assert_eq!(
        pprof_top(&p, 0, 10),
        [
            row("a", 3, 75.0, 3, 75.0),
            row("b", 1, 25.0, 1, 25.0),
            row("main", 0, 0.0, 4, 100.0),
        ]
    );
    let by_time = pprof_top(&p, 1, 1);
    assert_eq!(by_time, [row("a", 3 * PERIOD, 75.0, 3 * PERIOD, 75.0)]);
}

#[test]
fn inlined_callee_is_the_leaf_and_recursion_counts_once() {
    let p = profile(&[
        // hash inlined into compute, which recursed once, called from main.
        &[&["hash", "compute"], &["compute"], &["main"]],
        &[&["compute"], &["main"]],
    ]);

    assert_eq!(
        pprof_top(&p, 0, 10),
        [
            row("compute", 1, 50.0, 2, 100.0),
            row("hash", 1, 50.0, 1, 50.0),
            row("main", 0, 0.0, 2, 100.0),
        ]
    );
}

#[test]
fn unsymbolized_addresses_are_named_by_address() {
    let mut b = ProfileBuilder::new(&[("samples", "count")], ("cpu", "nanoseconds"), PERIOD);
    let bare = b.add_location(0, 0x7f12_3456, &[]);
    b.add_sample(&[bare], &[2], &[]);
    let p = b.build();

    assert_eq!(
        pprof_top(&p, 0, 10),
        [row("0x7f123456", 2, 100.0, 2, 100.0)]
    );
}

#[test]
fn empty_profile_and_missing_values_give_zeroes_not_panics() {
    let p = profile(&[]);
    assert!(pprof_top(&p, 0, 10).is_empty());

    let p = profile(&[&[&["a"]]]);
    assert_eq!(pprof_top(&p, 5, 10), [row("a", 0, 0.0, 0, 0.0)]);
}
