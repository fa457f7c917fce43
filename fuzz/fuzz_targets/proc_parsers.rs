//! procfs parsers on arbitrary text: maps (symbolizer and snapshot), stat, status, syscall,
//! wchan, uptime; and the target's perf map (`/tmp/perf-PID.map`, JIT symbols).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rprof_symbolizer::maps::parse_maps;
use rprof_symbolizer::PerfMap;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        for entry in parse_maps(text) {
            assert!(entry.start <= entry.end);
            let _ = (entry.is_file(), entry.map_files_name());
        }
    }
    rprof_agent::snapshot::fuzzing::parse_procfs(data);
    let map = PerfMap::parse(&String::from_utf8_lossy(data));
    for address in [0, 0x1000, u64::MAX, data.len() as u64] {
        let _ = map.lookup(address);
    }
});
