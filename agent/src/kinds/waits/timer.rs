//! Waits timed in the kernel. A BPF program (`agent/bpf/offcpu.bpf.c`) runs at every context
//! switch: it notes when a thread of the target leaves the CPU to sleep, draws 1 wait in N to
//! sample, and when the thread comes back sends the drawn wait's times here. A second program
//! filters the target's context-switch event so that only drawn switches copy a stack.
//!
//! Without it, every switch of the target writes a record (what times its waits) and every
//! sampled one copies a stack: ~2 µs per switch in these VMs, 12–15 % of the throughput of a
//! thread pool that switches 60 000 times a second. The program costs ~0.4 µs per switch of any
//! process while it is attached, and nothing once the recording closes it (the kernel detaches
//! a program with the last descriptor, so also when the agent is killed).

use std::os::fd::{AsFd, AsRawFd};

use anyhow::{bail, Context, Result};
use aya::maps::{Array, MapData, PerCpuArray, RingBuf};
use aya::programs::{PerfEvent, TracePoint};
use aya::Ebpf;

use super::waking::tracepoint;
use crate::probes::tracefs::field_offset;

/// The compiled program (agent/build.rs).
/// ELF is parsed in place: the bytes must be aligned as its headers are (aya's macro does it).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/offcpu.bpf.o"));

/// Slots of the program's `away` table (`AWAY_SLOTS`): thread `tid` is in slot `tid % AWAY_SLOTS`.
const AWAY_SLOTS: u32 = 65536;

/// The programs that filter perf events (`offcpu.bpf.c`).
const SWITCH_FILTER: &str = "keep_sampled";
const TARGET_FILTER: &str = "keep_target";

/// Where the program reads `sched_switch`'s fields (its `struct sched_switch_args`).
const LAYOUT: [(&str, usize); 3] = [("prev_pid", 24), ("prev_state", 32), ("next_pid", 56)];

/// A drawn wait that ended: `tid` was off the CPU from `since` to `until` (CLOCK_MONOTONIC
/// ns), and stands for `weight` waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct End {
    pub tid: u32,
    pub weight: u64,
    pub since: u64,
    pub until: u64,
}

/// Every wait of the target that ended while the program ran, drawn or not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub waits: u64,
    pub nanoseconds: u64,
    /// Drawn waits whose end the agent did not read in time (its ring was full).
    pub dropped: u64,
    /// Waits lost: another thread of the target held their slot of the program's table.
    pub untracked: u64,
}

/// The loaded programs, attached while this lives.
pub struct KernelTimer {
    ebpf: Ebpf,
    ends: RingBuf<MapData>,
}

// The maps' values, laid out as the program's structs (offcpu.bpf.c).
#[repr(C)]
#[derive(Clone, Copy)]
struct Config {
    tgid: u32,
    period: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Away {
    since: u64,
    weight: u32,
    /// The slot's thread; 0: free.
    tid: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct RawTotals {
    waits: u64,
    nanoseconds: u64,
    dropped: u64,
    untracked: u64,
}

// SAFETY: plain `repr(C)` integers with no padding (4+4, 8+4+4, 4×8 bytes): any bytes are a
// valid value, which is what `Pod` asks of types copied to and from the kernel's maps.
unsafe impl aya::Pod for Config {}
// SAFETY: as above.
unsafe impl aya::Pod for Away {}
// SAFETY: as above.
unsafe impl aya::Pod for RawTotals {}

impl KernelTimer {
    /// Loads the programs for process `pid` and attaches the switch program. Fails, saying
    /// why, where BPF cannot do it: no CAP_BPF + CAP_PERFMON, no tracefs, a kernel whose
    /// `sched_switch` differs, or an agent outside the initial PID namespace.
    pub fn load(pid: u32) -> Result<KernelTimer> {
        // The program compares the kernel's thread ids with the target's.
        crate::proc::in_initial_pid_namespace()?;
        check_layout()?;
        let mut ebpf = Ebpf::load(OBJECT).context("cannot load the BPF programs")?;
        let mut config: Array<_, Config> =
            Array::try_from(ebpf.map_mut("config").context("no config map")?)?;
        config.set(
            0,
            Config {
                tgid: pid,
                period: 1,
            },
            0,
        )?;
        for name in [SWITCH_FILTER, TARGET_FILTER] {
            let filter: &mut PerfEvent = ebpf
                .program_mut(name)
                .with_context(|| format!("no {name} program"))?
                .try_into()?;
            filter
                .load()
                .with_context(|| format!("the kernel refused the BPF filter {name}"))?;
        }
        let switch: &mut TracePoint = ebpf
            .program_mut("on_switch")
            .context("no on_switch program")?
            .try_into()?;
        switch
            .load()
            .context("the kernel refused the BPF switch program")?;
        switch
            .attach("sched", "sched_switch")
            .context("cannot attach to sched:sched_switch")?;
        let ends = RingBuf::try_from(ebpf.take_map("ends").context("no ends map")?)?;
        Ok(KernelTimer { ebpf, ends })
    }

    /// The filter of the context-switch events (`SamplerConfig::filter`): the target's drawn
    /// switches into a wait. It stays open as long as this timer.
    pub fn switch_filter(&self) -> Result<i32> {
        self.filter_fd(SWITCH_FILTER)
    }

    /// The filter of CPU-time events: the target's ticks.
    pub fn target_filter(&self) -> Result<i32> {
        self.filter_fd(TARGET_FILTER)
    }

    fn filter_fd(&self, name: &str) -> Result<i32> {
        let program: &PerfEvent = self
            .ebpf
            .program(name)
            .with_context(|| format!("no {name} program"))?
            .try_into()?;
        Ok(program.fd()?.as_fd().as_raw_fd())
    }

    /// Samples 1 wait in `period` from now on (each standing for `period`).
    pub fn set_period(&mut self, period: u64) {
        let result = self.config().and_then(|mut config| {
            let mut value = config.get(&0, 0)?;
            value.period = u32::try_from(period).unwrap_or(u32::MAX).max(1);
            config.set(0, value, 0)?;
            Ok(())
        });
        if let Err(err) = result {
            tracing::debug!("cannot set the BPF sampling period: {err}");
        }
    }

    fn config(&mut self) -> Result<Array<&mut MapData, Config>> {
        Ok(Array::try_from(
            self.ebpf.map_mut("config").context("no config map")?,
        )?)
    }

    /// `tid` is already off the CPU, since `since`: its return ends a wait of weight 1.
    pub fn park(&mut self, tid: u32, since: u64) {
        let result = self.away_mut().and_then(|mut away| {
            let slot = tid % AWAY_SLOTS;
            let held = away.get(&slot, 0)?;
            let value = if held.tid == tid {
                // The program noted its wait, begun since the program was loaded, but may not
                // have drawn it: the snapshot's stack stands for it, once.
                Away { weight: 1, ..held }
            } else if held.tid == 0 {
                Away {
                    since,
                    weight: 1,
                    tid,
                }
            } else {
                // Another thread's (ids that share a slot): that one keeps it.
                return Ok(());
            };
            away.set(slot, value, 0)?;
            Ok(())
        });
        if let Err(err) = result {
            tracing::debug!(tid, "cannot note a waiting thread: {err}");
        }
    }

    fn away_mut(&mut self) -> Result<Array<&mut MapData, Away>> {
        Ok(Array::try_from(
            self.ebpf.map_mut("away").context("no away map")?,
        )?)
    }

    /// When `tid` left the CPU and what it stands for, if it is away now on a drawn wait.
    pub fn still_away(&self, tid: u32) -> Option<(u64, u64)> {
        let away: Array<&MapData, Away> = Array::try_from(self.ebpf.map("away")?).ok()?;
        let value = away.get(&(tid % AWAY_SLOTS), 0).ok()?;
        (value.tid == tid && value.weight > 0).then_some((value.since, u64::from(value.weight)))
    }

    /// Hands over the ends the program sent since the last call.
    pub fn drain(&mut self, mut done: impl FnMut(End)) {
        while let Some(item) = self.ends.next() {
            if let Some(end) = decode(&item) {
                done(end);
            }
        }
    }

    /// The target's waits per second, measured over `span` (the program counts from its load).
    pub fn measure_rate(&self, span: std::time::Duration) -> f64 {
        let before = self.totals().waits;
        std::thread::sleep(span);
        let waits = self.totals().waits.saturating_sub(before);
        waits as f64 / span.as_secs_f64()
    }

    /// The program's counts so far, all CPUs together.
    pub fn totals(&self) -> Totals {
        let read = || -> Result<Totals> {
            let map: PerCpuArray<&MapData, RawTotals> =
                PerCpuArray::try_from(self.ebpf.map("totals").context("no totals map")?)?;
            let mut sum = Totals::default();
            for cpu in map.get(&0, 0)?.iter() {
                sum.waits += cpu.waits;
                sum.nanoseconds += cpu.nanoseconds;
                sum.dropped += cpu.dropped;
                sum.untracked += cpu.untracked;
            }
            Ok(sum)
        };
        read().unwrap_or_else(|err| {
            tracing::debug!("cannot read the BPF totals: {err}");
            Totals::default()
        })
    }
}

/// An `ends` entry (`struct end`: u32 tid, u32 weight, u64 since, u64 until).
fn decode(bytes: &[u8]) -> Option<End> {
    let u32_at = |at: usize| Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_ne_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
    Some(End {
        tid: u32_at(0)?,
        weight: u64::from(u32_at(4)?),
        since: u64_at(8)?,
        until: u64_at(16)?,
    })
}

/// The program reads `sched_switch`'s fields at fixed offsets: check them against tracefs.
fn check_layout() -> Result<()> {
    let (_, format, dir) = tracepoint("sched/sched_switch")?;
    for (field, offset) in LAYOUT {
        let found = field_offset(&format, field);
        if found != Some(offset) {
            bail!(
                "{}: field {field} at {found:?}, not at {offset} as the BPF program reads it",
                dir.join("format").display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_end_is_decoded_as_the_program_lays_it_out() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&77u32.to_ne_bytes());
        bytes.extend_from_slice(&3u32.to_ne_bytes());
        bytes.extend_from_slice(&1_000u64.to_ne_bytes());
        bytes.extend_from_slice(&5_000u64.to_ne_bytes());
        assert_eq!(
            decode(&bytes),
            Some(End {
                tid: 77,
                weight: 3,
                since: 1_000,
                until: 5_000
            })
        );
        assert_eq!(decode(&bytes[..20]), None, "cut short");
    }
}
