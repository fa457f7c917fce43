//! rprof-agent: sampling, unwinding, snapshots and pprof output for a running process.
//!
//! Pipeline stages: [`sampler`] (perf_event ring buffers) and [`snapshot`] (ptrace pause) capture
//! raw registers and stacks; [`unwind`] turns them into return addresses with framehop;
//! [`recording`] drives a window of any kind; each kind's module in [`kinds`] (one registry)
//! turns events into weighted samples; [`profile`] aggregates, symbolizes and writes pprof.
//! One module per verb: [`record`], [`threads`], [`server`], [`top`]. See docs/ARCHITECTURE.md.

pub mod architecture;
pub mod cli;
pub mod ebpf;
pub mod flamegraph;
pub mod frames;
pub mod gostack;
pub mod kallsyms;
pub mod kernel_entry;
pub mod kinds;
pub mod launch;
pub mod probes;
pub mod proc;
pub mod process_identity;
pub mod profile;
pub mod record;
pub mod recording;
pub mod sampler;
pub mod server;
pub mod snapshot;
pub mod stop;
pub mod target;
#[cfg(test)]
mod test_threads;
pub mod threads;
pub mod timestamp;
pub mod top;
pub mod unwind;
pub mod wording;
