//! What the kinds that show where threads wait (`block`, `mutex`, `wall`) share:
//! context-switch sampling paired into off-CPU intervals ([`tracker`]), what each wait is for
//! ([`classify`]), which wakeup ended it ([`releases`]), their aggregate ([`aggregate`]) and
//! recording ([`recording`]).

pub mod aggregate;
pub mod classify;
pub mod recording;
pub mod releases;
pub mod tracker;
pub mod waking;

/// Context-switch samples per second per thread (and CPU) at most: a thread that leaves the
/// CPU less often has every switch sampled; a busier one 1 in N, weighted by N, which bounds
/// what sampling costs a target that switches hundreds of thousands of times a second.
pub const SWITCH_SAMPLES_PER_SECOND: u64 = 10_000;

/// User stack bytes copied per context-switch sample at most. Every switch of a busy waiter is
/// sampled, so the copy is what sampling costs it; a waiting thread's stack is rarely deeper
/// than this, and `--stack-size` can only lower it.
pub const SWITCH_STACK_BYTES: u32 = 32 << 10;
