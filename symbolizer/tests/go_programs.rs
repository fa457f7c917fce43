//! Go binaries: recognized, Go build id read, DWARF (compressed by the Go linker) gives names
//! and lines, and `.debug_frame` is provided for unwinding.

mod common;

use std::path::Path;
use std::process::Command;

use common::{marker_line, nm_symbol, run, Scratch};
use rprof_symbolizer::{Frame, Symbolizer};

#[test]
fn go_binary() {
    let scratch = Scratch::new();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/hello.go");
    let binary = scratch.path("hello");
    run(Command::new("go")
        .arg("build")
        .arg("-o")
        .arg(&binary)
        .arg(&source)
        .env("GOCACHE", scratch.path("gocache"))
        .env("GOPATH", scratch.path("gopath"))
        .env("GO111MODULE", "off"));

    let object = Symbolizer::new().load_file(&binary).unwrap();
    assert!(object.is_go());
    let build_id = run(Command::new("go").args(["tool", "buildid"]).arg(&binary));
    assert_eq!(object.go_build_id(), Some(build_id.trim()));
    assert!(object.has_dwarf());

    let (address, _) = nm_symbol(&binary, "main.checksum");
    assert_eq!(
        object.symbolize(address),
        vec![Frame {
            function: Some("main.checksum".to_owned()),
            system_name: Some("main.checksum".to_owned()),
            file: Some(source.to_str().unwrap().to_owned()),
            line: Some(marker_line(&source, "MARK_GO_CHECKSUM")),
            inlined: false,
        }]
    );

    // The Go linker writes no .eh_frame; unwinding relies on .debug_frame (decompressed here).
    let sections = object.unwind_sections();
    assert!(sections.eh_frame.is_none());
    let debug_frame = sections.debug_frame.expect(".debug_frame");
    let headers = run(Command::new("readelf").arg("-SW").arg(&binary));
    assert!(
        headers.contains(".zdebug_frame") || headers.contains(".debug_frame"),
        "{headers}"
    );
    // A CIE starts the section: 32-bit length, then CIE id 0xffffffff.
    assert_eq!(&debug_frame[4..8], &[0xff; 4]);
}
