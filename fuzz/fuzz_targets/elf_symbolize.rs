//! `ObjectInfo` on arbitrary bytes: headers, build id, unwind sections, symbolization. Must
//! never panic, hang or allocate without bound, whatever the file claims.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use rprof_symbolizer::{Bytes, ObjectInfo};

/// Where a second ELF image starts in the input, if one does: it is then the first one's
/// separate debug file (and dwz supplementary file), as the symbolizer would attach it.
fn second_image(data: &[u8]) -> Option<usize> {
    let start = 64.min(data.len());
    data[start..]
        .windows(4)
        .position(|w| w == b"\x7fELF")
        .map(|at| start + at)
}

fuzz_target!(|data: &[u8]| {
    let split = second_image(data).unwrap_or(data.len());
    let (main, debug) = data.split_at(split);
    let Ok(mut object) = ObjectInfo::from_bytes("fuzz", Bytes::from_vec(main.to_vec())) else {
        return;
    };
    if let Ok(debug) = ObjectInfo::from_bytes("fuzz.debug", Bytes::from_vec(debug.to_vec())) {
        let debug = Arc::new(debug);
        object = object
            .with_debug_file(Arc::clone(&debug))
            .with_supplementary_file(debug);
    }
    let _ = object.build_id_hex();
    let _ = (object.go_build_id(), object.is_go(), object.debug_link());
    let _ = (object.debug_alt_link(), object.first_load_svma());
    let _ = (object.has_dwarf(), object.has_symbols());
    let _ = object.load_bias(0, 0x5555_5555_4000, true);
    let sections = object.unwind_sections();
    // Addresses the file itself makes interesting, plus a few fixed ones.
    let mut addresses = vec![0, 1, 0x1000, 0x401000, u64::MAX];
    if let Some(text) = &sections.text_svma {
        let mid = text
            .start
            .wrapping_add(text.end.wrapping_sub(text.start) / 2);
        addresses.extend([text.start, mid, text.end.wrapping_sub(1)]);
    }
    if let Some(first) = object.first_load_svma() {
        addresses.push(first.wrapping_add(0x40));
    }
    for address in addresses {
        for frame in object.symbolize(address) {
            let _ = format!("{frame:?}");
        }
    }
});
