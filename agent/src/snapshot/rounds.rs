//! The rounds of a snapshot that stop nothing: read the blocked threads, sample the running
//! ones, again, until every thread has a stack or the wait for running threads is over. A
//! thread found running in one round may be blocked in the next, and the other way round.

use std::time::{Duration, Instant};

use super::stack::{StackCapture, StackReader};
use super::{blocked, sampled, SnapshotOptions};

/// Most rounds: each costs a pass over the threads still missing and a perf session.
const ROUNDS: u32 = 4;

/// The stacks of `missing` threads of `pid` that could be taken without stopping them; the
/// others stay in `missing`.
pub(crate) fn without_stopping(
    pid: u32,
    missing: &mut Vec<u32>,
    reader: &mut StackReader,
    opts: &SnapshotOptions,
) -> Vec<StackCapture> {
    let mut stacks = Vec::with_capacity(missing.len());
    // The wait for running threads starts with the first sampling, not before the reads.
    let mut deadline = None;
    for round in 1..=ROUNDS {
        read_blocked(pid, missing, reader, &mut stacks);
        if missing.is_empty() || !opts.sample_running {
            break;
        }
        let deadline = *deadline.get_or_insert_with(|| Instant::now() + opts.running_wait);
        // Most of the wait goes to the first round, which ends as soon as every thread ran;
        // the last round takes what is left.
        let left = deadline.saturating_duration_since(Instant::now());
        let slice = if round == ROUNDS { left } else { left / 2 };
        if !sample_running(pid, missing, opts.max_stack_bytes, slice, &mut stacks) {
            break;
        }
        if missing.is_empty() || Instant::now() >= deadline {
            break;
        }
    }
    stacks
}

/// Moves the threads of `missing` that are blocked, and stay so while read, to `stacks`.
fn read_blocked(
    pid: u32,
    missing: &mut Vec<u32>,
    reader: &mut StackReader,
    stacks: &mut Vec<StackCapture>,
) {
    let started = Instant::now();
    missing.retain(|&tid| match blocked::capture(pid, tid, reader) {
        Some(stack) => {
            stacks.push(stack);
            false
        }
        None => true,
    });
    let (took, left) = (started.elapsed(), missing.len());
    tracing::debug!(pid, ?took, left, "blocked threads read");
}

/// Moves the threads of `missing` that run within `wait` to `stacks`, with one perf sample
/// each. False when perf refused (the caller stops trying).
fn sample_running(
    pid: u32,
    missing: &mut Vec<u32>,
    max_stack_bytes: usize,
    wait: Duration,
    stacks: &mut Vec<StackCapture>,
) -> bool {
    let started = Instant::now();
    match sampled::capture(pid, missing, max_stack_bytes, wait) {
        Ok(sampled) => {
            missing.retain(|tid| !sampled.iter().any(|s| s.tid == *tid));
            stacks.extend(sampled);
            let (took, left) = (started.elapsed(), missing.len());
            tracing::debug!(pid, ?took, left, "running threads sampled");
            true
        }
        Err(err) => {
            tracing::debug!(pid, %err, "running threads not sampled");
            false
        }
    }
}
