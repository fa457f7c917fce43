//! Waits timed in the kernel. A BPF program (`agent/bpf/offcpu.bpf.c`) runs at every context
//! switch: it notes when a thread of the target leaves the CPU to sleep, draws 1 wait in N to
//! sample and copies a drawn one's registers and stack (a [`StackCopy`]), and when the thread
//! comes back sends the drawn wait's times (an [`End`]). For `mutex`, a program at every wakeup
//! copies the stack of a thread of the target that wakes one away on a drawn wait (the
//! releaser of the lock it waited for). A third program filters `wall`'s per-CPU CPU-time
//! events to the target's ticks.
//!
//! Without it, every switch of the target writes a record (what times its waits) and every
//! sampled one copies a stack: ~2 µs per switch in these VMs, 12–15 % of the throughput of a
//! thread pool that switches 60 000 times a second. The program costs ~0.4 µs per switch of any
//! process while it is attached, and nothing once the recording closes it (the kernel detaches
//! a program with the last descriptor, so also when the agent is killed).

use anyhow::{bail, Context, Result};
use aya::maps::{Array, MapData, PerCpuArray, RingBuf};
use aya::programs::{PerfEvent, TracePoint};
use aya::{Ebpf, EbpfLoader};

use super::waking::tracepoint;
use crate::ebpf::{perf_event_program_fd, u32_at, u64_at};
use crate::probes::tracefs::field_offset;
use crate::unwind::Registers;

/// The compiled program (agent/build.rs).
/// ELF is parsed in place: the bytes must be aligned as its headers are (aya's macro does it).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/offcpu.bpf.o"));

/// Slots of the program's `away` table (`AWAY_SLOTS`): thread `tid` is in slot `tid % AWAY_SLOTS`.
const AWAY_SLOTS: u32 = 65536;

/// The program that filters `wall`'s CPU-time events (`offcpu.bpf.c`).
const TARGET_FILTER: &str = "keep_target";

/// The program's `STACK_PAGES` and page size: a copy holds at most this much stack.
const STACK_PAGES: u32 = 9;
const PAGE_BYTES: u32 = 4096;
/// A copy's header (`struct stack_copy` before its stack).
const COPY_HEADER: usize = 56;

/// Where the programs read the tracepoints' fields (`struct sched_switch_args`,
/// `struct sched_waking_args`).
const SWITCH_LAYOUT: [(&str, usize); 3] = [("prev_pid", 24), ("prev_state", 32), ("next_pid", 56)];
const WAKING_LAYOUT: [(&str, usize); 1] = [("pid", 24)];

/// A drawn wait that ended: `tid` was off the CPU from `since` to `until` (CLOCK_MONOTONIC
/// ns), and stands for `weight` waits; `runnable`: it was no wait but time spent waiting for a
/// CPU (preempted), noted for `wall`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct End {
    pub tid: u32,
    pub weight: u64,
    pub since: u64,
    pub until: u64,
    pub runnable: bool,
}

/// A thread away on a drawn wait (or runnable time) now: since when, what it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StillAway {
    pub since: u64,
    pub weight: u64,
    pub runnable: bool,
    /// Noted by the agent at the window's start, not by the program.
    pub parked: bool,
}

/// What the programs note and copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Noting {
    /// Bytes of each copied stack (rounded up to pages, within the program's bound).
    pub stack_bytes: u32,
    /// The stack of the thread that wakes each drawn wait (`mutex`).
    pub wakers: bool,
    /// Time threads spend runnable off the CPU, as waits are (`wall`).
    pub runnable: bool,
}

/// Thread `tid`'s user registers and stack (from `regs.sp` up) at `time` (CLOCK_MONOTONIC ns):
/// as it left the CPU on a drawn wait (whose `since` is `time`), or as it woke thread `woke`,
/// away on a drawn wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackCopy {
    pub tid: u32,
    pub time: u64,
    pub regs: Registers,
    pub stack: Vec<u8>,
    pub woke: Option<u32>,
}

/// Every wait of the target that ended while the program ran, drawn or not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub waits: u64,
    pub nanoseconds: u64,
    /// Times runnable off the CPU that ended (when noted), and their time.
    pub preemptions: u64,
    pub runnable_ns: u64,
    /// Drawn waits whose end the agent did not read in time (its ring was full).
    pub dropped: u64,
    /// Waits lost: another thread of the target held their slot of the program's table.
    pub untracked: u64,
    /// Stacks of drawn waits (or of their wakers) that could not be read or sent (the agent
    /// read too slowly).
    pub unsampled: u64,
}

/// The loaded programs, attached while this lives.
pub struct KernelTimer {
    ebpf: Ebpf,
    ends: RingBuf<MapData>,
    stacks: RingBuf<MapData>,
}

// The maps' values, laid out as the program's structs (offcpu.bpf.c).
#[repr(C)]
#[derive(Clone, Copy)]
struct Config {
    tgid: u32,
    period: u32,
    stack_pages: u32,
    wakers: u32,
    runnable: u32,
    pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Away {
    since: u64,
    weight: u32,
    /// The slot's thread; 0: free.
    tid: u32,
    runnable: u32,
    /// Noted by `park`, not by the program.
    parked: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct RawTotals {
    waits: u64,
    nanoseconds: u64,
    preemptions: u64,
    runnable_ns: u64,
    dropped: u64,
    untracked: u64,
    unsampled: u64,
}

// SAFETY: plain `repr(C)` integers with no padding (6×4, 8+4×4, 7×8 bytes): any bytes are a
// valid value, which is what `Pod` asks of types copied to and from the kernel's maps.
unsafe impl aya::Pod for Config {}
// SAFETY: as above.
unsafe impl aya::Pod for Away {}
// SAFETY: as above.
unsafe impl aya::Pod for RawTotals {}

impl KernelTimer {
    /// Loads the programs for process `pid` and attaches the switch program, and with
    /// `noting.wakers` the wakeup program. Fails, saying why, where BPF cannot do it: no
    /// CAP_BPF + CAP_PERFMON, no tracefs, a kernel whose tracepoints differ, or an agent outside
    /// the initial PID namespace.
    pub fn load(pid: u32, noting: Noting) -> Result<KernelTimer> {
        let Noting {
            stack_bytes,
            wakers,
            runnable,
        } = noting;
        // The program compares the kernel's thread ids with the target's.
        crate::proc::in_initial_pid_namespace()?;
        check_layout("sched/sched_switch", &SWITCH_LAYOUT)?;
        if wakers {
            check_layout("sched/sched_waking", &WAKING_LAYOUT)?;
        }
        // A copy's scratch entry per CPU number the kernel may give (the possible CPUs can be
        // numbered sparsely).
        let slots = crate::sampler::highest_possible_cpu()
            .context("cannot read the possible CPUs")?
            .saturating_add(1);
        // Two copies per drawn wait when wakers are copied too.
        let ring = if wakers { 32 << 20 } else { 16 << 20 };
        let mut ebpf = EbpfLoader::new()
            .set_max_entries("scratch", slots)
            .set_max_entries("stacks", ring)
            .load(OBJECT)
            .context("cannot load the BPF programs")?;
        let mut config: Array<_, Config> =
            Array::try_from(ebpf.map_mut("config").context("no config map")?)?;
        config.set(
            0,
            Config {
                tgid: pid,
                // Nothing drawn until the agent has measured the rate of waits (`set_period`).
                period: 0,
                stack_pages: stack_pages(stack_bytes),
                wakers: u32::from(wakers),
                runnable: u32::from(runnable),
                pad: 0,
            },
            0,
        )?;
        let filter: &mut PerfEvent = ebpf
            .program_mut(TARGET_FILTER)
            .with_context(|| format!("no {TARGET_FILTER} program"))?
            .try_into()?;
        filter
            .load()
            .with_context(|| format!("the kernel refused the BPF filter {TARGET_FILTER}"))?;
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
        if wakers {
            let waking: &mut TracePoint = ebpf
                .program_mut("on_waking")
                .context("no on_waking program")?
                .try_into()?;
            waking
                .load()
                .context("the kernel refused the BPF wakeup program")?;
            waking
                .attach("sched", "sched_waking")
                .context("cannot attach to sched:sched_waking")?;
        }
        let ends = RingBuf::try_from(ebpf.take_map("ends").context("no ends map")?)?;
        let stacks = RingBuf::try_from(ebpf.take_map("stacks").context("no stacks map")?)?;
        Ok(KernelTimer { ebpf, ends, stacks })
    }

    /// The filter of CPU-time events (`SamplerConfig::filter`): the target's ticks. It stays
    /// open as long as this timer.
    pub fn target_filter(&self) -> Result<i32> {
        perf_event_program_fd(&self.ebpf, TARGET_FILTER)
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
            let value = if held.tid == tid && held.runnable != 0 {
                // It woke and was preempted since the snapshot: the snapshot's stack is stale.
                return Ok(());
            } else if held.tid == tid {
                // The program noted its wait, begun since the program was loaded, but may not
                // have drawn it: the snapshot's stack stands for it, once.
                Away { weight: 1, ..held }
            } else if held.tid == 0 {
                Away {
                    since,
                    weight: 1,
                    tid,
                    runnable: 0,
                    parked: 1,
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

    /// When `tid` left the CPU, what it stands for and whether it is runnable, if it is away
    /// now on a drawn wait (or runnable time).
    pub fn still_away(&self, tid: u32) -> Option<StillAway> {
        let away: Array<&MapData, Away> = Array::try_from(self.ebpf.map("away")?).ok()?;
        let value = away.get(&(tid % AWAY_SLOTS), 0).ok()?;
        (value.tid == tid && value.weight > 0).then_some(StillAway {
            since: value.since,
            weight: u64::from(value.weight),
            runnable: value.runnable != 0,
            parked: value.parked != 0,
        })
    }

    /// Hands over the ends the program sent since the last call.
    pub fn drain(&mut self, mut done: impl FnMut(End)) {
        while let Some(item) = self.ends.next() {
            if let Some(end) = decode(&item) {
                done(end);
            }
        }
    }

    /// Hands over the stacks the programs copied since the last call.
    pub fn drain_stacks(&mut self, mut done: impl FnMut(StackCopy)) {
        while let Some(item) = self.stacks.next() {
            if let Some(copy) = decode_copy(&item) {
                done(copy);
            }
        }
    }

    /// The target's waits (and noted preemptions) per second, measured over `span` (the
    /// program counts from its load).
    pub fn measure_rate(&self, span: std::time::Duration) -> f64 {
        let before = self.totals().noted();
        std::thread::sleep(span);
        let noted = self.totals().noted().saturating_sub(before);
        noted as f64 / span.as_secs_f64()
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
                sum.preemptions += cpu.preemptions;
                sum.runnable_ns += cpu.runnable_ns;
                sum.dropped += cpu.dropped;
                sum.untracked += cpu.untracked;
                sum.unsampled += cpu.unsampled;
            }
            Ok(sum)
        };
        read().unwrap_or_else(|err| {
            tracing::debug!("cannot read the BPF totals: {err}");
            Totals::default()
        })
    }
}

impl Totals {
    /// What the program drew from: waits, and preemptions where noted.
    pub fn noted(&self) -> u64 {
        self.waits.saturating_add(self.preemptions)
    }
}

/// An `ends` entry (`struct end`: u32 tid, u32 weight, u64 since, u64 until, u32 runnable,
/// u32 pad).
fn decode(bytes: &[u8]) -> Option<End> {
    let word32 = |at| u32_at(bytes, at);
    let word64 = |at| u64_at(bytes, at);
    Some(End {
        tid: word32(0)?,
        weight: u64::from(word32(4)?),
        since: word64(8)?,
        until: word64(16)?,
        runnable: word32(24)? != 0,
    })
}

/// A `stacks` entry (`struct stack_copy`: u32 tid, u32 pages, u64 time, ip, sp, bp, base, u32
/// wakee, u32 pad, then `pages` pages of stack from `base`), its stack cut to start at `sp`.
fn decode_copy(bytes: &[u8]) -> Option<StackCopy> {
    let word32 = |at| u32_at(bytes, at);
    let word64 = |at| u64_at(bytes, at);
    let pages = usize::try_from(word32(4)?.min(STACK_PAGES)).ok()?;
    let (sp, base) = (word64(24)?, word64(40)?);
    let copied = bytes.get(COPY_HEADER..COPY_HEADER + pages * PAGE_BYTES as usize)?;
    let skip = usize::try_from(sp.checked_sub(base)?).ok()?;
    let wakee = word32(48)?;
    Some(StackCopy {
        tid: word32(0)?,
        time: word64(8)?,
        regs: Registers {
            ip: word64(16)?,
            sp,
            bp: word64(32)?,
        },
        stack: copied.get(skip..)?.to_vec(),
        woke: (wakee != 0).then_some(wakee),
    })
}

/// Pages the program copies for `stack_bytes` of stack above the stack pointer: the page it is
/// in may hold only a word of it.
fn stack_pages(stack_bytes: u32) -> u32 {
    (stack_bytes.div_ceil(PAGE_BYTES) + 1).clamp(1, STACK_PAGES)
}

/// The programs read the tracepoint's fields at fixed offsets: check them against tracefs.
fn check_layout(event: &str, layout: &[(&str, usize)]) -> Result<()> {
    let (_, format, dir) = tracepoint(event)?;
    for &(field, offset) in layout {
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
        bytes.extend_from_slice(&1u32.to_ne_bytes());
        bytes.extend_from_slice(&0u32.to_ne_bytes());
        assert_eq!(
            decode(&bytes),
            Some(End {
                tid: 77,
                weight: 3,
                since: 1_000,
                until: 5_000,
                runnable: true,
            })
        );
        assert_eq!(decode(&bytes[..26]), None, "cut short");
    }

    fn copy_bytes(pages: u32, sp_in_page: u64, wakee: u32) -> Vec<u8> {
        let base = 0x7fff_0000_0000u64;
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&9u32.to_ne_bytes());
        bytes.extend_from_slice(&pages.to_ne_bytes());
        for word in [1_000, 0x40_1000, base + sp_in_page, base + 0x900, base] {
            bytes.extend_from_slice(&u64::to_ne_bytes(word));
        }
        bytes.extend_from_slice(&wakee.to_ne_bytes());
        bytes.extend_from_slice(&0u32.to_ne_bytes());
        let stack: Vec<u8> = (0..pages * PAGE_BYTES).map(|k| (k / 8) as u8).collect();
        bytes.extend_from_slice(&stack);
        bytes
    }

    #[test]
    fn a_copy_s_stack_starts_at_its_stack_pointer() {
        let copy = decode_copy(&copy_bytes(2, 0x810, 0)).unwrap();
        assert_eq!(copy.tid, 9);
        assert_eq!(copy.time, 1_000);
        assert_eq!(copy.regs.ip, 0x40_1000);
        assert_eq!(copy.regs.sp, 0x7fff_0000_0810);
        assert_eq!(copy.stack.len(), 2 * 4096 - 0x810);
        assert_eq!(copy.stack[0], (0x810 / 8) as u8);
        assert_eq!(copy.woke, None, "a departure");
        let waker = decode_copy(&copy_bytes(1, 0x10, 77)).unwrap();
        assert_eq!(waker.woke, Some(77));
    }

    #[test]
    fn a_malformed_copy_is_refused() {
        let bytes = copy_bytes(2, 0x810, 0);
        assert_eq!(decode_copy(&bytes[..bytes.len() - 1]), None, "cut short");
        let mut below = copy_bytes(1, 0, 0);
        // sp below base.
        below[24..32].copy_from_slice(&0x7ffe_ffff_fff0u64.to_ne_bytes());
        assert_eq!(decode_copy(&below), None);
        // sp past the copy: refused, not a panic.
        let mut past = copy_bytes(1, 0, 0);
        past[24..32].copy_from_slice(&0x7fff_0000_2000u64.to_ne_bytes());
        assert_eq!(decode_copy(&past), None);
    }

    #[test]
    fn a_stack_size_is_rounded_up_to_pages_plus_the_stack_pointer_s_own() {
        assert_eq!(stack_pages(32 << 10), 9);
        assert_eq!(stack_pages(4096), 2);
        assert_eq!(stack_pages(8), 2);
        assert_eq!(stack_pages(u32::MAX), 9);
    }
}
