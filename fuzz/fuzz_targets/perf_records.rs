//! The sampler's ring-buffer record decoder on arbitrary bytes (the kernel's records are
//! trusted for nothing).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, record)) = data.split_first() else {
        return;
    };
    rprof_agent::sampler::fuzz_decode_record(record, flags & 1 == 1);
});
