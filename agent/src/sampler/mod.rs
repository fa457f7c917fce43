//! Sampling a process with perf_event_open: one event per thread and CPU, shared ring buffers.
//!
//! [`Sampler::open`] attaches an event to every thread of the target on every online CPU
//! (hardware cycles, or the cpu-clock timer where there is no PMU). Events are inherited by the
//! threads those threads create, and all events of a CPU write into that CPU's ring buffer.
//! Each sample carries the user registers and a copy of the user stack for the unwinder;
//! side-band records report new executable mappings, thread names, thread creation and exit.
//!
//! With [`Trigger::Uprobes`] per-CPU uprobe events, one per probe and CPU, replace the
//! threads' events: they sample every hit and report the side-band records of every task, and
//! the sampler keeps the target's (see `uprobe.rs` for why per CPU).
//!
//! The owner of a `Sampler` loops: [`Sampler::wait`], [`Sampler::drain`] (records in time
//! order), [`Sampler::refresh_threads`], until [`Sampler::target_alive`] turns false or the
//! profile is long enough.

mod attr;
mod cgroup;
mod config;
mod coverage;
mod cpu;
mod error;
mod event;
mod hold;
mod host;
mod merge;
mod oneshot;
mod poll;
mod record;
mod ring;
mod session;
mod stats;
mod threads;
mod uprobe;
mod wake;

pub use config::{
    EventKind, SamplerConfig, Trigger, Uprobe, WindowEvent, DEFAULT_FREQUENCY, DEFAULT_STACK_BYTES,
    MAX_STACK_BYTES,
};
pub use error::SamplerError;
pub use hold::{hold_probes, ProbeHold};
pub(crate) use host::{highest_possible_cpu, monotonic_ns};
pub use oneshot::{sample_each, ThreadSample};
pub use record::{Record, Sample};
pub use session::{Armed, Sampler};
pub use stats::SamplerStats;
pub use wake::{is_stopping, stop_waiting, wake_on_signals};

/// Entry point for the `perf_records` fuzz target in `fuzz/`: decodes `bytes` as one ring-buffer
/// record, as the drain loop does. Not API.
#[doc(hidden)]
pub fn fuzz_decode_record(bytes: &[u8], callchain: bool) -> bool {
    let _ = record::timestamp(bytes);
    let mut scratch = record::DecodeScratch::default();
    record::decode(
        bytes,
        record::SampleFormat {
            callchain,
            period: false,
            raw: false,
        },
        &mut scratch,
    )
    .is_ok()
}
