//! What the allocs and heap kinds share: recording the target's allocator from outside.
//!
//! # Mechanism
//!
//! The allocator's functions ([`functions::FUNCTIONS`]: the malloc family, jemalloc's API,
//! C++'s operators where the allocator defines them) are found by symbol in every file the
//! target maps that defines `malloc` ([`allocators`]), and probed with uprobes defined in
//! tracefs ([`crate::probes::tracefs`]): an entry probe fetching the arguments, with a copy of the stack
//! (the allocation's stack), and a return probe fetching the address. Probes are opened per
//! thread of the target, inherited by the threads it creates, so other processes mapping the
//! same libc never hit them.
//!
//! A uprobe traps on every call while its event is open, whatever its sampling period: it
//! cannot be sampled 1 in N. So probes are open in short windows at random moments, for a
//! share of the time that keeps the traps' cost near 1 % ([`schedule`]), and the figures
//! are scaled by that share ([`ledger`] has the estimator). `--exact` keeps them open all along.
//! A keeper process holds one event per probe so that closing a window takes 0.17 ms, not
//! the ~85 ms of unregistering a uprobe ([`crate::probes::keeper`]).
//!
//! Nothing is written to the target: the kernel puts its breakpoints in private copies of
//! the probed pages and takes them out when the last event closes — when the window closes,
//! and when the agent dies (its descriptors close). The definitions a killed agent leaves in
//! tracefs trap nothing (no event is open); its keeper removes them, or the next agent does.

pub mod allocators;
pub mod entry;
pub mod functions;
pub mod ledger;
pub mod pace;
pub mod recording;
pub mod schedule;

pub use recording::View;
