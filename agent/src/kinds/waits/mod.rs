//! What the kinds that show where threads wait (`block`, `mutex`, `wall`) share:
//! context-switch sampling paired into off-CPU intervals ([`tracker`]), what each wait is for
//! ([`classify`]), which wakeup ended it ([`releases`], with [`pid_map`] and [`host_ids`] in a
//! container), their aggregate ([`aggregate`]) and recording ([`recording`]).

pub mod aggregate;
pub mod classify;
pub mod host_ids;
pub mod period;
pub mod pid_map;
pub mod recording;
pub mod releases;
pub mod timed;
pub mod timer;
pub mod timing;
pub mod tracker;
pub mod waking;

/// User stack bytes copied per context-switch sample at most. Every switch of a busy waiter is
/// sampled, so the copy is what sampling costs it; a waiting thread's stack is rarely deeper
/// than this, and `--stack-size` can only lower it.
pub const SWITCH_STACK_BYTES: u32 = 32 << 10;
