//! rprof-agent: sampling, unwinding, snapshots and pprof output for a running process.
//!
//! Pipeline stages: [`sampler`] (perf_event ring buffers) and [`snapshot`] (ptrace pause) capture
//! raw registers and stacks; [`unwind`] turns them into return addresses with framehop;
//! [`profile`] symbolizes and writes pprof. One module per verb: [`record`], [`threads`], [`top`].

pub mod architecture;
pub mod cli;
pub mod flamegraph;
pub mod frames;
pub mod kallsyms;
pub mod launch;
pub mod process_identity;
pub mod profile;
pub mod record;
pub mod sampler;
pub mod server;
pub mod snapshot;
pub mod stop;
pub mod target;
pub mod threadcreate;
pub mod threads;
pub mod timestamp;
pub mod top;
pub mod unwind;
