//! Stacks of running threads, from one perf sample each (see [`crate::sampler::sample_each`]):
//! no stop, and registers and stack of one moment.

use std::time::Duration;

use super::maps::ReadableRanges;
use super::stack::{CaptureSource, Registers, StackCapture};
use crate::sampler::{sample_each, SamplerError, DEFAULT_STACK_BYTES};

/// One sample of each of `tids` (threads of `pid`) that runs within `wait`, with at most
/// `max_stack_bytes` of stack (and no more than a perf sample holds), cut at the end of the
/// mapping that holds the stack pointer, as every capture is: the kernel's copy runs on into
/// whatever memory follows (another thread's stack).
pub(crate) fn capture(
    pid: u32,
    tids: &[u32],
    max_stack_bytes: usize,
    wait: Duration,
) -> Result<Vec<StackCapture>, SamplerError> {
    let limit = u32::try_from(max_stack_bytes).unwrap_or(u32::MAX);
    // A multiple of 8, as the kernel requires, and at least one word.
    let stack_bytes = (limit.min(DEFAULT_STACK_BYTES) & !7).max(8);
    let samples = sample_each(tids, stack_bytes, wait)?;
    let ranges = ReadableRanges::read_any(pid, tids);
    Ok(samples
        .into_iter()
        .map(|sample| {
            let mut stack = sample.stack;
            // Unknown mappings (unreadable maps) leave the copy as the kernel made it.
            let room = ranges
                .containing(sample.sp)
                .map_or(u64::MAX, |mapping| mapping.end.saturating_sub(sample.sp));
            stack.truncate(usize::try_from(room).unwrap_or(usize::MAX));
            StackCapture {
                tid: sample.tid,
                regs: Registers {
                    ip: sample.ip,
                    sp: sample.sp,
                    bp: sample.bp,
                },
                source: CaptureSource::Sampled,
                stack,
            }
        })
        .collect())
}
