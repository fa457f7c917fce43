//! What to sample and how often, and which perf event ended up doing it.

use std::ffi::CString;
use std::fmt;

use super::error::SamplerError;

/// Bytes of a sample record besides the stack copy (and the call chain, when asked for):
/// header, identifier, ip, pid/tid, time, abi, three registers, stack size and dyn_size. Here,
/// with the settings, because the default stack copy is sized from it; `record.rs` decodes
/// that layout and `attr.rs` asks for it.
pub(crate) const SAMPLE_FIXED_BYTES: u32 = 88;

/// 100 Hz, like Go's CPU profiler: enough for a profile, cheap for the target.
pub const DEFAULT_FREQUENCY: u64 = 100;

/// The largest user-stack copy the kernel accepts (`sample_stack_user` must be below
/// `u16::MAX` and a multiple of 8).
pub const MAX_STACK_BYTES: u32 = (u16::MAX as u32) & !7;

/// The largest stack copy whose sample still fits one record (record sizes are `u16`), so that
/// deep stacks reach the thread root. A smaller copy truncates them (perf's 8 KiB default does).
pub const DEFAULT_STACK_BYTES: u32 = (u16::MAX as u32 - SAMPLE_FIXED_BYTES) & !7;

/// What to sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamplerConfig {
    /// The process; all its threads are sampled.
    pub pid: u32,
    /// What makes the kernel take a sample.
    pub trigger: Trigger,
    /// Samples per second of CPU time, per thread ([`Trigger::CpuTime`] only: a uprobe samples
    /// every hit).
    pub frequency: u64,
    /// User stack bytes copied per sample, from the stack pointer up. A multiple of 8, at most
    /// [`MAX_STACK_BYTES`]; the kernel trims it further if the record would exceed 64 KiB.
    pub stack_bytes: u32,
    /// Also record kernel call chains (needs more privilege: kernel samples are not excluded).
    pub kernel: bool,
    /// Probes opened on every thread of the target with its own events, for the whole
    /// recording (threads created later inherit them), writing into the same rings: their
    /// samples come out with the trigger's, told apart by their raw fields (a tracepoint's
    /// start with its id). Only with a per-thread trigger.
    pub probes: Vec<WindowEvent>,
    /// [`Trigger::CpuTime`]: sample with per-CPU events scoped to the target's cgroup when it
    /// has one of its own (see `sampler::cgroup`), per-thread events otherwise.
    pub cgroup_scope: bool,
    /// How many samplers of one recording share the locked-memory budget for ring buffers:
    /// this one and those the recording opens after it. Under a memlock limit (no
    /// CAP_IPC_LOCK, as in a container) the first would otherwise map rings as large as the
    /// whole budget allows and leave the next ones nothing.
    pub budget_share: usize,
    /// A BPF program (`BPF_PROG_TYPE_PERF_EVENT`, by file descriptor, kept open by the owner
    /// while sampling) that decides which overflows become samples. With one, the sampler
    /// opens an event per CPU for every task, and the program keeps the target's: events of
    /// the target's own threads would cost each of its context switches a switch of their
    /// perf context (38 % of a ping-pong's throughput on these VMs, against 8 % per CPU).
    pub filter: Option<i32>,
    /// [`Trigger::ContextSwitches`]: also write a record of every switch out and in (what
    /// times each wait). Off when the owner times waits in the kernel (`filter`).
    pub switch_records: bool,
    /// A BPF program (`BPF_PROG_TYPE_PERF_EVENT`, by file descriptor, kept open by the owner
    /// while sampling) run with every sample of the target's own events (per-thread or per
    /// cgroup), keeping them all: one that reads what the sample cannot carry, at that moment
    /// (Go's goroutine stacks under the system stack, `crate::gostack`).
    pub on_sample: Option<i32>,
}

impl SamplerConfig {
    /// The defaults for `pid`: CPU time at [`DEFAULT_FREQUENCY`], [`DEFAULT_STACK_BYTES`], user
    /// space only.
    pub fn new(pid: u32) -> Self {
        SamplerConfig {
            pid,
            trigger: Trigger::CpuTime,
            frequency: DEFAULT_FREQUENCY,
            stack_bytes: DEFAULT_STACK_BYTES,
            kernel: false,
            probes: Vec::new(),
            cgroup_scope: false,
            budget_share: 1,
            filter: None,
            switch_records: true,
            on_sample: None,
        }
    }

    /// Rejects settings the kernel would refuse with a bare EINVAL.
    pub(crate) fn validate(&self) -> Result<(), SamplerError> {
        match &self.trigger {
            Trigger::CpuTime if self.frequency == 0 => {
                return Err(invalid("frequency must be at least 1 Hz"));
            }
            Trigger::Uprobes(probes) if probes.is_empty() => {
                return Err(invalid("no uprobe to sample"));
            }
            Trigger::Uprobes(probes) if probes.iter().any(|p| p.path.is_empty()) => {
                return Err(invalid("a uprobe has an empty file path"));
            }
            Trigger::ContextSwitches { period: 0 }
            | Trigger::Tracepoint { period: 0, .. }
            | Trigger::PageFaults { period: 0 }
            | Trigger::UserTime { period_ns: 0 } => {
                return Err(invalid(
                    "the kernel event sampling period must be at least 1",
                ));
            }
            _ => {}
        }
        if matches!(self.trigger, Trigger::Uprobes(_)) && !self.probes.is_empty() {
            return Err(invalid(
                "per-CPU uprobes leave threads no events to add probes to",
            ));
        }
        if self
            .probes
            .iter()
            .any(|probe| !valid_stack(probe.stack_bytes()))
        {
            return Err(invalid(&format!(
                "a probe's stack copy must be a multiple of 8 between 8 and {MAX_STACK_BYTES}"
            )));
        }
        if !valid_stack(self.stack_bytes) {
            return Err(invalid(&format!(
                "stack_bytes must be a multiple of 8 between 8 and {MAX_STACK_BYTES}, not {}",
                self.stack_bytes
            )));
        }
        Ok(())
    }
}

fn valid_stack(bytes: u32) -> bool {
    bytes != 0 && bytes & 7 == 0 && bytes <= MAX_STACK_BYTES
}

fn invalid(reason: &str) -> SamplerError {
    SamplerError::InvalidConfig(reason.to_owned())
}

/// What makes the kernel take a sample.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Trigger {
    /// CPU time: a sample every 1/frequency second a thread runs.
    #[default]
    CpuTime,
    /// Every execution, by any thread of the target, of any of these instructions.
    Uprobes(Vec<Uprobe>),
    /// Every `period`-th time a thread of the target leaves the CPU (see
    /// [`Sampler::set_period`](super::Sampler::set_period) to change it while sampling), with a
    /// record of every time one leaves or comes back (`Record::Switch`). The switch happens in
    /// the kernel, so the event cannot exclude it: it needs CAP_PERFMON or
    /// `perf_event_paranoid` ≤ 1.
    ContextSwitches { period: u64 },
    /// Every `period`-th hit of kernel tracepoint `id` (from tracefs) in a thread of the
    /// target, each with the tracepoint's raw fields. Like context switches, it counts in the kernel: CAP_PERFMON.
    Tracepoint { id: u64, period: u64 },
    /// Every `period`-th page fault a thread of the target takes in user space (first touches
    /// of new memory, copy-on-write). Needs no more privilege than CPU time.
    PageFaults { period: u64 },
    /// A sample every `period_ns` of CPU time a thread of the target spends in user space
    /// (the cpu-clock timer; ticks that find the thread in the kernel are not sampled), in the
    /// layout of tracepoint samples, raw fields included, so that probe windows
    /// ([`Sampler::arm`](super::Sampler::arm)) write their samples into the same rings.
    UserTime { period_ns: u64 },
    /// No samples: only the side-band records (new mappings, thread names, exits) of every
    /// task, from a `dummy` event per CPU, for an owner whose samples come from elsewhere (a
    /// BPF program). An event per CPU costs the target nothing per context switch, where
    /// events of its own threads would switch their perf context with them. CPU-wide events
    /// need CAP_PERFMON.
    SideBand,
}

impl Trigger {
    /// The event counts in the kernel, so it cannot exclude it.
    pub(crate) fn counts_in_kernel(&self) -> bool {
        matches!(
            self,
            Trigger::ContextSwitches { .. } | Trigger::Tracepoint { .. }
        )
    }
}

/// An event a probe window opens on every thread of the target (see
/// [`Sampler::arm`](super::Sampler::arm)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowEvent {
    /// Every hit of a tracefs-defined probe (a uprobe in `uprobe_events`, opened as a
    /// tracepoint: `events/GROUP/NAME/id`), with `stack_bytes` of user stack (a multiple of 8,
    /// at most [`MAX_STACK_BYTES`]).
    Tracepoint { id: u64, stack_bytes: u32 },
    /// Every hit of a kernel tracepoint (`events/GROUP/NAME/id`) in a thread of the target,
    /// with its raw fields and no stack to speak of: for what the kernel says about the thread
    /// (its id in the tracepoints' numbering, `host_ids`). It fires in the kernel, so it is not
    /// excluded there: CAP_PERFMON, as for the sampler's own tracepoints.
    KernelTracepoint { id: u64 },
}

impl WindowEvent {
    /// The tracepoint's id.
    pub fn id(&self) -> u64 {
        match *self {
            WindowEvent::Tracepoint { id, .. } | WindowEvent::KernelTracepoint { id } => id,
        }
    }

    /// User stack bytes each sample copies.
    pub fn stack_bytes(&self) -> u32 {
        match *self {
            WindowEvent::Tracepoint { stack_bytes, .. } => stack_bytes,
            // The least a sample can copy.
            WindowEvent::KernelTracepoint { .. } => 8,
        }
    }

    /// Whether a sample's raw fields are this event's (a tracepoint's raw fields start with
    /// its id, as a 16-bit `common_type`; other events' are empty or zero).
    pub fn wrote(&self, raw: &[u8]) -> bool {
        let id = self.id();
        raw.get(..2)
            .map(|bytes| u64::from(u16::from_ne_bytes([bytes[0], bytes[1]])))
            .is_some_and(|common_type| common_type == id)
    }
}

/// One probed instruction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Uprobe {
    /// The file, as the kernel can open it from the agent's mount namespace while the sampler
    /// opens (e.g. `/proc/self/fd/N` of a descriptor the caller holds). The probe attaches to
    /// the inode the path resolves to.
    pub path: CString,
    /// File offset of the probed instruction.
    pub offset: u64,
    /// How messages name the probe, e.g. `pthread_create in /usr/lib/libc.so.6`.
    pub name: String,
}

/// The event that drives sampling: for CPU time, hardware cycles where a PMU exists, else the
/// cpu-clock timer (VMs without a virtual PMU); or uprobes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Cycles,
    CpuClock,
    Uprobe,
    ContextSwitches,
    Tracepoint,
    PageFaults,
    Dummy,
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EventKind::Cycles => "cycles",
            EventKind::CpuClock => "cpu-clock",
            EventKind::Uprobe => "uprobe",
            EventKind::ContextSwitches => "context-switches",
            EventKind::Tracepoint => "tracepoint",
            EventKind::PageFaults => "page-faults",
            EventKind::Dummy => "dummy",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_stack_fills_a_record_exactly() {
        assert_eq!(DEFAULT_STACK_BYTES % 8, 0);
        assert!(SAMPLE_FIXED_BYTES + DEFAULT_STACK_BYTES <= u32::from(u16::MAX));
        assert!(SAMPLE_FIXED_BYTES + DEFAULT_STACK_BYTES + 8 > u32::from(u16::MAX));
        assert_eq!(MAX_STACK_BYTES, 65528);
    }

    #[test]
    fn defaults_are_valid() {
        SamplerConfig::new(1).validate().unwrap();
    }

    #[test]
    fn invalid_settings_are_named() {
        let mut config = SamplerConfig::new(1);
        config.stack_bytes = 100;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("stack_bytes"), "{error}");
        config.stack_bytes = MAX_STACK_BYTES + 8;
        assert!(config.validate().is_err());
        config = SamplerConfig::new(1);
        config.frequency = 0;
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("frequency"));
    }

    #[test]
    fn uprobe_settings_are_checked() {
        let mut config = SamplerConfig::new(1);
        config.trigger = Trigger::Uprobes(Vec::new());
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("uprobe"));
        config.trigger = Trigger::Uprobes(vec![Uprobe {
            path: c"".into(),
            offset: 0,
            name: "nothing".into(),
        }]);
        assert!(config.validate().is_err());
        config.trigger = Trigger::Uprobes(vec![Uprobe {
            path: c"/usr/lib/libc.so.6".into(),
            offset: 0x89380,
            name: "pthread_create".into(),
        }]);
        // The frequency means nothing to a uprobe.
        config.frequency = 0;
        config.validate().unwrap();
    }

    #[test]
    fn probes_on_threads_are_checked() {
        let probe = WindowEvent::Tracepoint {
            id: 2210,
            stack_bytes: 4096,
        };
        let mut config = SamplerConfig {
            trigger: Trigger::UserTime { period_ns: 1 },
            probes: vec![probe],
            ..SamplerConfig::new(1)
        };
        config.validate().unwrap();
        config.probes = vec![WindowEvent::Tracepoint {
            id: 2210,
            stack_bytes: 100,
        }];
        assert!(config.validate().is_err());
        config.probes = vec![probe];
        config.trigger = Trigger::Uprobes(vec![Uprobe {
            path: c"/usr/lib/libc.so.6".into(),
            offset: 0x89380,
            name: "pthread_create".into(),
        }]);
        assert!(config.validate().is_err(), "per-CPU probes have no threads");
    }

    #[test]
    fn a_probe_knows_its_samples_by_their_common_type() {
        let probe = WindowEvent::Tracepoint {
            id: 2210,
            stack_bytes: 8,
        };
        let mut raw = vec![0u8; 16];
        raw[..2].copy_from_slice(&2210u16.to_ne_bytes());
        assert!(probe.wrote(&raw));
        // A cpu-clock tick's raw fields: four zero bytes.
        assert!(!probe.wrote(&[0; 4]));
        assert!(!probe.wrote(&[]));
        raw[..2].copy_from_slice(&2211u16.to_ne_bytes());
        assert!(!probe.wrote(&raw));
    }

    #[test]
    fn event_kinds_display_like_perf_names_them() {
        assert_eq!(EventKind::Cycles.to_string(), "cycles");
        assert_eq!(EventKind::CpuClock.to_string(), "cpu-clock");
        assert_eq!(EventKind::Uprobe.to_string(), "uprobe");
    }
}
