//! C++ at -O2 -g: an always_inline member function in a namespace yields an inline frame
//! (demangled, with its mangled linkage name) before the physical caller.

mod common;

use std::path::{Path, PathBuf};

use common::{binutils_addr2line, compile, marker_line, nm_symbol, Scratch};
use rprof_symbolizer::{Frame, Symbolizer};

fn source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/inline.cpp")
}

#[test]
fn inlined_member_function_comes_first() {
    let scratch = Scratch::new();
    let binary = scratch.path("inline");
    compile("g++", &source(), &binary, &["-O2", "-g"]);
    let object = Symbolizer::new().load_file(&binary).unwrap();
    let (caller, size) = nm_symbol(&binary, "_Z6callerPN2ns6WidgetEi");
    let src = source().to_str().unwrap().to_owned();
    let inline_frame = Frame {
        function: Some("ns::Widget::compute(int)".to_owned()),
        system_name: Some("_ZN2ns6Widget7computeEi".to_owned()),
        file: Some(src.clone()),
        line: Some(marker_line(&source(), "MARK_INLINE_BODY")),
        inlined: true,
    };
    let caller_frame = Frame {
        function: Some("caller(ns::Widget*, int)".to_owned()),
        system_name: Some("_Z6callerPN2ns6WidgetEi".to_owned()),
        file: Some(src),
        line: Some(marker_line(&source(), "MARK_CALL_SITE")),
        inlined: false,
    };

    let mut inlined_addresses = 0;
    for address in caller..caller + size {
        let frames = object.symbolize(address);
        // Every address of the caller ends in the physical function, named as binutils names it.
        let physical = frames.last().expect("caller address unnamed");
        assert_eq!(physical.function, caller_frame.function, "{address:#x}");
        assert_eq!(physical.system_name, caller_frame.system_name);
        assert!(!physical.inlined);
        let expected = binutils_addr2line(&binary, address);
        let actual: Vec<_> = frames
            .iter()
            .map(|f| {
                (
                    f.function.clone().unwrap(),
                    f.file.clone().unwrap(),
                    f.line.unwrap(),
                )
            })
            .collect();
        assert_eq!(actual, expected, "{address:#x}");
        if frames == [inline_frame.clone(), caller_frame.clone()] {
            inlined_addresses += 1;
        }
    }
    assert!(
        inlined_addresses > 0,
        "no address of caller() symbolized to [compute, caller]"
    );
}
