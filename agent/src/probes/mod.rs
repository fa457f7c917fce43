//! Uprobes defined in tracefs and the process that keeps them registered: what the kinds that
//! probe a target's functions per thread share (allocs and heap, threadcreate).
//!
//! - [`tracefs`]: probe definitions in `uprobe_events`, grouped per recording, removed when it
//!   ends (and, when the agent was killed, by its keeper or the next agent);
//! - [`keeper`]: an idle child process holding one event per probe, so that probes stay
//!   registered between windows and are removed if the agent dies.
//!
//! The events themselves are opened per thread of the target by the sampler
//! ([`crate::sampler::Sampler::arm`] for windows, [`crate::sampler::SamplerConfig::probes`] for
//! the whole recording): other processes mapping the same file never hit them.

pub mod keeper;
pub mod tracefs;
