//! What the sampler has seen so far, to report and to judge a profile's quality by.

/// Counters since `Sampler::open`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SamplerStats {
    /// Samples handed to `drain` callbacks.
    pub samples: u64,
    /// Records the kernel dropped because a ring buffer was full (sum of PERF_RECORD_LOST).
    pub lost: u64,
    /// Threads given events of their own (at open and by `refresh_threads`).
    pub threads_attached: usize,
    /// Threads sampled through events inherited from the thread that created them.
    pub threads_inherited: usize,
    /// Online CPUs, one ring buffer each.
    pub cpus: usize,
    /// Data bytes of all ring buffers together (smaller than planned under a low mlock limit).
    pub ring_bytes: usize,
    /// Times the kernel throttled an event for interrupting too often.
    pub throttled: u64,
    /// Copies written for a thread sampled twice, dropped.
    pub duplicates_dropped: u64,
    /// Records of other processes (child processes, on kernels that inherit into them), dropped.
    pub foreign_dropped: u64,
    /// Records that did not decode, and ring resynchronisations after a bad record size.
    pub malformed: u64,
}

impl SamplerStats {
    /// Every record the sampler knows it did not hand out, each under its own name: for a
    /// profile's comments.
    pub fn drops(&self) -> String {
        format!(
            "records dropped: {} lost by the kernel (ring full; records of any kind), {} \
             throttled events, {} malformed, {} duplicates of threads attached twice, {} of \
             other processes",
            self.lost,
            self.throttled,
            self.malformed,
            self.duplicates_dropped,
            self.foreign_dropped
        )
    }
}
