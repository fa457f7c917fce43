//! procfs parsers on arbitrary text: maps (symbolizer and snapshot), stat, status, syscall,
//! wchan, uptime.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rprof_symbolizer::maps::parse_maps;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        for entry in parse_maps(text) {
            assert!(entry.start <= entry.end);
            let _ = (entry.is_file(), entry.map_files_name());
        }
    }
    rprof_agent::snapshot::fuzzing::parse_procfs(data);
});
