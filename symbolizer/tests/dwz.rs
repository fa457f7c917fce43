//! DWARF compressed with dwz: names and inline functions that live in the supplementary file
//! named by `.gnu_debugaltlink` (as in distributions' debug packages).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{compile, marker_line, nm_symbol, run, Scratch};
use rprof_symbolizer::{Frame, Symbolizer};

fn programs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/dwz")
}

#[test]
fn names_from_the_supplementary_file() {
    let scratch = Scratch::new();
    let binaries: Vec<PathBuf> = [1, 2]
        .iter()
        .map(|variant| {
            let binary = scratch.path(&format!("measure{variant}"));
            let define = format!("-DVARIANT={variant}");
            compile(
                "gcc",
                &programs().join("measure.c"),
                &binary,
                &["-O2", "-g", &define],
            );
            binary
        })
        .collect();
    let common_file = scratch.path("common.debug");
    run(Command::new("dwz")
        .arg("-m")
        .arg(&common_file)
        .arg("-M")
        .arg(&common_file)
        .args(&binaries));
    let binary = &binaries[0];
    let sections = run(Command::new("readelf").arg("-SW").arg(binary));
    assert!(
        sections.contains(".gnu_debugaltlink"),
        "dwz did not apply: {sections}"
    );

    let object = Symbolizer::new().load_file(binary).unwrap();
    assert_eq!(
        object.debug_alt_link().unwrap().path,
        common_file.to_str().unwrap()
    );

    // `main`'s DW_AT_name is an alternate string (DW_FORM_GNU_strp_alt).
    let (main, _) = nm_symbol(binary, "main");
    assert_eq!(
        object.symbolize(main).last().unwrap().function.as_deref(),
        Some("main")
    );

    // shape_area's abstract origin is in the supplementary file (DW_FORM_GNU_ref_alt).
    let header = programs().join("shared.h");
    let source = programs().join("measure.c");
    let inline_frame = Frame {
        function: Some("shape_area".to_owned()),
        system_name: Some("shape_area".to_owned()),
        file: Some(header.to_str().unwrap().to_owned()),
        line: Some(marker_line(&header, "MARK_SHARED_INLINE")),
        inlined: true,
    };
    let caller_frame = Frame {
        function: Some("measure".to_owned()),
        system_name: Some("measure".to_owned()),
        file: Some(source.to_str().unwrap().to_owned()),
        line: Some(marker_line(&source, "MARK_MEASURE")),
        inlined: false,
    };
    let (measure, size) = nm_symbol(binary, "measure");
    let found = (measure..measure + size)
        .any(|address| object.symbolize(address) == [inline_frame.clone(), caller_frame.clone()]);
    assert!(found, "no address of measure() gave [shape_area, measure]");
}
