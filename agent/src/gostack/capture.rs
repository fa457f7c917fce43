//! Loading the program that copies goroutine stacks, and reading what it sends.

use anyhow::{Context, Result};
use aya::maps::{Array, MapData, PerCpuArray, RingBuf};
use aya::programs::PerfEvent;
use aya::Ebpf;
use rprof_symbolizer::GoRuntimeLayout;

use crate::ebpf::{perf_event_program_fd, u32_at, u64_at};
use crate::unwind::{Registers, SwitchKind, SwitchedStack};

/// The compiled program (agent/build.rs), aligned as its ELF headers need.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/gostack.bpf.o"));
/// The same without the search for signal frames, which needs bpf_loop (Linux >= 5.17).
static WITHOUT_SIGNALS: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/gostack_nosignal.bpf.o"));

/// The program for the target's own events, and the one for events that count every task on
/// a CPU (which drops the overflows of other processes).
const PROGRAM: &str = "go_stack";
const TARGET_PROGRAM: &str = "go_stack_target";

/// `struct switched`'s header: tid, kind (u32 each), then time, pc, sp, bp, len (u64 each).
const HEADER_BYTES: usize = 48;

/// One entry the program sent with a sample of thread `tid` (at `time`, CLOCK_MONOTONIC ns,
/// within microseconds of the sample's own time): a goroutine's stack, or None where there was
/// nothing to follow. Every sample's entries end with one that is not a vdso call's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    pub tid: u32,
    pub time: u64,
    pub stack: Option<SwitchedStack>,
}

impl Captured {
    /// Whether this entry is the last of its sample's.
    pub fn ends_sample(&self) -> bool {
        self.stack
            .as_ref()
            .is_none_or(|stack| !matches!(stack.kind, SwitchKind::Vdso | SwitchKind::Signal))
    }
}

/// The loaded program, for one Go process; the kernel drops it with the last descriptor (this
/// and the events it is attached to), so also when the agent is killed.
pub struct GoStackCapture {
    ebpf: Ebpf,
    /// The program loaded: [`PROGRAM`] or [`TARGET_PROGRAM`].
    program: &'static str,
    stacks: RingBuf<MapData>,
    /// Whether signal handlers' interrupted stacks are copied (the kernel took the program
    /// with its search for signal frames).
    follows_signals: bool,
}

/// The program's `struct config`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Config {
    tgid: u32,
    pad: u32,
    g_m: u64,
    g_sched_sp: u64,
    g_sched_pc: u64,
    g_sched_bp: u64,
    g_stack_hi: u64,
    m_g0: u64,
    m_curg: u64,
    m_vdso_sp: u64,
    m_vdso_pc: u64,
    tls_g: i64,
    m_gsignal: u64,
    g_stack_lo: u64,
}

/// The program's `struct counts`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Counts {
    dropped: u64,
}

// SAFETY: plain `repr(C)` integers without padding (2×4 + 12×8 bytes): any bytes are a
// valid value, as `Pod` requires of what is copied to and from the kernel's maps.
unsafe impl aya::Pod for Config {}
// SAFETY: as above.
unsafe impl aya::Pod for Counts {}

impl GoStackCapture {
    /// Loads the program for Go process `pid`, whose runtime lays its structs out as `layout`
    /// and keeps g at `tls_g` from the thread pointer (if known); with the search for signal
    /// frames if `signals` and the kernel takes it (Linux >= 5.17), else without; for events
    /// that count every task on a CPU if `every_task` (it then drops other tasks' overflows,
    /// as [`crate::sampler::SamplerConfig::filter`]). Fails,
    /// saying why, where BPF cannot do it (no CAP_BPF + CAP_PERFMON, a kernel without
    /// `bpf_task_pt_regs` or BTF, an agent in a PID namespace of its own).
    pub fn load(
        pid: u32,
        layout: &GoRuntimeLayout,
        tls_g: Option<i64>,
        signals: bool,
        every_task: bool,
    ) -> Result<GoStackCapture> {
        crate::proc::in_initial_pid_namespace()?;
        let config = config_for(pid, layout, tls_g);
        let program = if every_task { TARGET_PROGRAM } else { PROGRAM };
        if signals {
            match Self::load_object(OBJECT, program, config) {
                Ok((ebpf, stacks)) => {
                    return Ok(GoStackCapture {
                        ebpf,
                        program,
                        stacks,
                        follows_signals: true,
                    })
                }
                Err(err) => tracing::debug!("goroutine stacks without signal frames: {err:#}"),
            }
        }
        let (ebpf, stacks) = Self::load_object(WITHOUT_SIGNALS, program, config)?;
        Ok(GoStackCapture {
            ebpf,
            program,
            stacks,
            follows_signals: false,
        })
    }

    fn load_object(object: &[u8], name: &str, config: Config) -> Result<(Ebpf, RingBuf<MapData>)> {
        let mut ebpf = Ebpf::load(object).context("cannot load the BPF program")?;
        let mut map: Array<_, Config> =
            Array::try_from(ebpf.map_mut("config").context("no config map")?)?;
        map.set(0, config, 0)?;
        let program: &mut PerfEvent = ebpf
            .program_mut(name)
            .with_context(|| format!("no {name} program"))?
            .try_into()?;
        program
            .load()
            .context("the kernel refused the BPF program that copies goroutine stacks")?;
        let stacks = RingBuf::try_from(ebpf.take_map("stacks").context("no stacks map")?)?;
        Ok((ebpf, stacks))
    }

    /// Whether signal handlers are followed into the code they interrupted.
    pub fn follows_signals(&self) -> bool {
        self.follows_signals
    }

    /// The program's descriptor, to attach to each CPU-time event (`PERF_EVENT_IOC_SET_BPF`);
    /// open as long as this lives.
    pub fn program_fd(&self) -> Result<i32> {
        perf_event_program_fd(&self.ebpf, self.program)
    }

    /// Hands over the stacks the program sent since the last call.
    pub fn drain(&mut self, mut each: impl FnMut(Captured)) {
        while let Some(item) = self.stacks.next() {
            if let Some(captured) = decode(&item) {
                each(captured);
            }
        }
    }

    /// Entries the program could not send (its ring was full) and goroutine stacks it could
    /// not read, so far.
    pub fn dropped(&self) -> u64 {
        let read = || -> Result<u64> {
            let map: PerCpuArray<&MapData, Counts> =
                PerCpuArray::try_from(self.ebpf.map("counts").context("no counts map")?)?;
            Ok(map.get(&0, 0)?.iter().map(|c| c.dropped).sum())
        };
        read().unwrap_or_else(|err| {
            tracing::debug!("cannot read the goroutine stack counts: {err}");
            0
        })
    }
}

fn config_for(pid: u32, layout: &GoRuntimeLayout, tls_g: Option<i64>) -> Config {
    Config {
        tgid: pid,
        pad: 0,
        g_m: layout.g_m,
        g_sched_sp: layout.g_sched_sp,
        g_sched_pc: layout.g_sched_pc,
        g_sched_bp: layout.g_sched_bp,
        g_stack_hi: layout.g_stack_hi,
        m_g0: layout.m_g0,
        m_curg: layout.m_curg,
        m_vdso_sp: layout.m_vdso_sp,
        m_vdso_pc: layout.m_vdso_pc,
        // 0: unknown (g is never at the thread pointer itself).
        tls_g: tls_g.unwrap_or(0),
        m_gsignal: layout.m_gsignal,
        // `stack` is `{lo, hi}` in every Go version (assembly relies on it).
        g_stack_lo: layout.g_stack_hi.saturating_sub(8),
    }
}

/// A `stacks` entry, as the program lays out `struct switched`; None if malformed.
fn decode(bytes: &[u8]) -> Option<Captured> {
    let word32 = |at| u32_at(bytes, at);
    let word64 = |at| u64_at(bytes, at);
    let kind = match word32(4)? {
        0 => None,
        1 => Some(SwitchKind::Scheduled),
        2 => Some(SwitchKind::Vdso),
        3 => Some(SwitchKind::Parked),
        4 => Some(SwitchKind::Signal),
        _ => return None,
    };
    let len = usize::try_from(word64(40)?).ok()?;
    let stack = bytes.get(HEADER_BYTES..HEADER_BYTES.checked_add(len)?)?;
    let regs = Registers {
        ip: word64(16)?,
        sp: word64(24)?,
        bp: word64(32)?,
    };
    Some(Captured {
        tid: word32(0)?,
        time: word64(8)?,
        stack: kind.map(|kind| SwitchedStack {
            kind,
            regs,
            stack: stack.to_vec(),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: u32, len: u64, stack: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend(7u32.to_ne_bytes());
        bytes.extend(kind.to_ne_bytes());
        for word in [1000u64, 0x40_1000, 0xc000_1000, 0xc000_1100, len] {
            bytes.extend(word.to_ne_bytes());
        }
        bytes.extend(stack);
        bytes
    }

    #[test]
    fn an_entry_is_decoded_as_the_program_lays_it_out() {
        let captured = decode(&entry(1, 3, &[1, 2, 3, 0, 0])).unwrap();
        assert_eq!(captured.tid, 7);
        assert_eq!(captured.time, 1000);
        assert!(captured.ends_sample());
        let stack = captured.stack.unwrap();
        assert_eq!(stack.kind, SwitchKind::Scheduled);
        assert_eq!(
            stack.regs,
            Registers {
                ip: 0x40_1000,
                sp: 0xc000_1000,
                bp: 0xc000_1100
            }
        );
        assert_eq!(stack.stack, vec![1, 2, 3]);
        let kind = |raw| decode(&entry(raw, 0, &[])).unwrap().stack.map(|s| s.kind);
        assert_eq!(kind(0), None);
        assert_eq!(kind(2), Some(SwitchKind::Vdso));
        assert_eq!(kind(3), Some(SwitchKind::Parked));
        assert_eq!(kind(4), Some(SwitchKind::Signal));
        // A vdso call's stack, or a signal's interrupted one, is followed by more entries for
        // the same sample.
        assert!(!decode(&entry(2, 0, &[])).unwrap().ends_sample());
        assert!(!decode(&entry(4, 0, &[])).unwrap().ends_sample());
        assert!(decode(&entry(0, 0, &[])).unwrap().ends_sample());
    }

    #[test]
    fn malformed_entries_are_refused() {
        assert_eq!(decode(&entry(5, 0, &[])), None);
        assert_eq!(decode(&entry(1, 10, &[1, 2])), None);
        assert_eq!(decode(&entry(1, u64::MAX, &[])), None);
        assert_eq!(decode(&[1, 2, 3]), None);
    }
}
