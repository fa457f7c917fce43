//! The perf_event_attr of every event the sampler opens: the threads' own events (sampling CPU
//! time) and the per-CPU uprobe events.

use perf_event_open_sys::bindings::{self as sys, perf_event_attr};

use super::config::{EventKind, SamplerConfig, Trigger, Uprobe, WindowEvent};
use super::record::SampleFormat;

/// The user registers an unwinder starts from, in ascending bit order because that is the order
/// the kernel writes them in: frame pointer, stack pointer, instruction pointer.
#[cfg(target_arch = "x86_64")]
const USER_REGS: [u32; 3] = [
    sys::PERF_REG_X86_BP,
    sys::PERF_REG_X86_SP,
    sys::PERF_REG_X86_IP,
];
#[cfg(target_arch = "aarch64")]
const USER_REGS: [u32; 3] = [
    sys::PERF_REG_ARM64_X29,
    sys::PERF_REG_ARM64_SP,
    sys::PERF_REG_ARM64_PC,
];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("the sampler knows the user register numbers of x86_64 and aarch64 only");

const _: () = assert!(USER_REGS[0] < USER_REGS[1] && USER_REGS[1] < USER_REGS[2]);

/// What a thread's own events count: CPU time, by the CPU's cycle counter or by the kernel's
/// cpu-clock timer; or the times it leaves the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ThreadEvent {
    Cycles,
    CpuClock,
    ContextSwitches,
    Tracepoint,
    PageFaults,
    /// Counts nothing: side-band records only.
    Dummy,
}

impl ThreadEvent {
    pub(crate) fn kind(self) -> EventKind {
        match self {
            ThreadEvent::Cycles => EventKind::Cycles,
            ThreadEvent::CpuClock => EventKind::CpuClock,
            ThreadEvent::ContextSwitches => EventKind::ContextSwitches,
            ThreadEvent::Tracepoint => EventKind::Tracepoint,
            ThreadEvent::PageFaults => EventKind::PageFaults,
            ThreadEvent::Dummy => EventKind::Dummy,
        }
    }
}

/// Which event to open for each thread and which optional kernel features to ask for;
/// `Sampler::open` tries these in order until one opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EventSpec {
    pub event: ThreadEvent,
    /// Inherit into new threads only, not into child processes (Linux 5.13+). Without it,
    /// records of child processes reach the ring too and are filtered out by pid.
    pub inherit_thread: bool,
}

const CPU_TIME_SPECS: [EventSpec; 4] = [
    EventSpec {
        event: ThreadEvent::Cycles,
        inherit_thread: true,
    },
    EventSpec {
        event: ThreadEvent::Cycles,
        inherit_thread: false,
    },
    EventSpec {
        event: ThreadEvent::CpuClock,
        inherit_thread: true,
    },
    EventSpec {
        event: ThreadEvent::CpuClock,
        inherit_thread: false,
    },
];

const CONTEXT_SWITCH_SPECS: [EventSpec; 2] = [
    EventSpec {
        event: ThreadEvent::ContextSwitches,
        inherit_thread: true,
    },
    EventSpec {
        event: ThreadEvent::ContextSwitches,
        inherit_thread: false,
    },
];

const TRACEPOINT_SPECS: [EventSpec; 2] = [
    EventSpec {
        event: ThreadEvent::Tracepoint,
        inherit_thread: true,
    },
    EventSpec {
        event: ThreadEvent::Tracepoint,
        inherit_thread: false,
    },
];

const PAGE_FAULT_SPECS: [EventSpec; 2] = [
    EventSpec {
        event: ThreadEvent::PageFaults,
        inherit_thread: true,
    },
    EventSpec {
        event: ThreadEvent::PageFaults,
        inherit_thread: false,
    },
];

const SIDE_BAND_SPECS: [EventSpec; 1] = [EventSpec {
    event: ThreadEvent::Dummy,
    inherit_thread: true,
}];

/// The event specs to try, in order, for the threads' own events under `trigger`.
pub(crate) fn specs(trigger: &Trigger) -> &'static [EventSpec] {
    match trigger {
        Trigger::ContextSwitches { .. } => &CONTEXT_SWITCH_SPECS,
        Trigger::Tracepoint { .. } => &TRACEPOINT_SPECS,
        Trigger::PageFaults { .. } => &PAGE_FAULT_SPECS,
        Trigger::CpuTime | Trigger::Uprobes(_) => &CPU_TIME_SPECS,
        // The cpu-clock only: its ticks are time, which a cycle count is not.
        Trigger::UserTime { .. } => &CPU_TIME_SPECS[2..],
        Trigger::SideBand => &SIDE_BAND_SPECS,
    }
}

/// The sample layout `build` asks for with this configuration.
pub(crate) fn sample_format(config: &SamplerConfig) -> SampleFormat {
    SampleFormat {
        callchain: config.kernel,
        // Fixed-period events must not ask for it: the kernel would then sample every event
        // and report 1 as its period. The sampler's owner knows the period it set.
        period: false,
        raw: matches!(
            config.trigger,
            Trigger::Tracepoint { .. } | Trigger::UserTime { .. }
        ),
    }
}

/// Builds the attr of a thread's own event; events start disabled and are enabled once wired
/// to a ring.
pub(crate) fn build(config: &SamplerConfig, spec: EventSpec) -> perf_event_attr {
    let mut attr = common(config);
    let (type_, event) = match spec.event {
        ThreadEvent::Cycles => (sys::PERF_TYPE_HARDWARE, sys::PERF_COUNT_HW_CPU_CYCLES),
        ThreadEvent::CpuClock => (sys::PERF_TYPE_SOFTWARE, sys::PERF_COUNT_SW_CPU_CLOCK),
        ThreadEvent::ContextSwitches => {
            (sys::PERF_TYPE_SOFTWARE, sys::PERF_COUNT_SW_CONTEXT_SWITCHES)
        }
        ThreadEvent::Tracepoint => (sys::PERF_TYPE_TRACEPOINT, 0),
        ThreadEvent::PageFaults => (sys::PERF_TYPE_SOFTWARE, sys::PERF_COUNT_SW_PAGE_FAULTS),
        ThreadEvent::Dummy => (sys::PERF_TYPE_SOFTWARE, sys::PERF_COUNT_SW_DUMMY),
    };
    attr.type_ = type_;
    attr.config = match config.trigger {
        Trigger::Tracepoint { id, .. } => id,
        _ => u64::from(event),
    };
    match config.trigger {
        Trigger::ContextSwitches { period } | Trigger::Tracepoint { period, .. } => {
            // A fixed period the owner adapts (`Sampler::set_period`): the kernel's frequency
            // mode misjudges events of threads that mostly sleep, and samples too few of them.
            attr.sample_period = period;
            if let (Trigger::ContextSwitches { .. }, true) =
                (&config.trigger, config.switch_records)
            {
                // A record each time a thread leaves the CPU or comes back, with its time:
                // what weights a switch-out sample by how long the thread stayed off.
                attr.set_context_switch(1);
            }
            // The event counts in the kernel (in schedule(), at a tracepoint): excluding the
            // kernel would exclude every hit. The user registers and stack are still the ones
            // the thread entered the kernel with.
            attr.set_exclude_kernel(0);
        }
        Trigger::PageFaults { period } => {
            // A fault taken in user space is counted with the user's registers: it passes
            // exclude_kernel, which keeps the event within perf_event_paranoid=2.
            attr.sample_period = period;
        }
        Trigger::UserTime { period_ns } => {
            // A fixed period: every tick stands for the same CPU time. The timer still runs
            // while the thread is in the kernel; exclude_kernel drops those ticks.
            attr.sample_period = period_ns;
            attr.set_exclude_kernel(1);
        }
        Trigger::CpuTime | Trigger::Uprobes(_) => {
            attr.set_freq(1);
            attr.sample_freq = config.frequency;
        }
        // Never overflows: no period.
        Trigger::SideBand => {}
    }
    // New threads of a sampled thread get copies of its events, writing to the same rings.
    attr.set_inherit(1);
    attr.set_inherit_thread(u64::from(spec.inherit_thread));
    set_side_band(&mut attr);
    attr
}

/// Builds the attr of a per-CPU event, scoped to a cgroup (which covers new threads) or kept
/// to the target by a BPF filter: a thread event that is not inherited, with the side-band
/// records of every task it covers.
pub(crate) fn per_cpu(config: &SamplerConfig, spec: EventSpec) -> perf_event_attr {
    let mut attr = build(config, spec);
    attr.set_inherit(0);
    attr.set_inherit_thread(0);
    attr
}

/// Builds the attr of a per-CPU event, for every task, that samples each execution of
/// `probe` through the uprobe PMU (`pmu_type`). With `side_band` it also reports the
/// side-band records of every task on its CPU (one event per CPU should: each would write its
/// own copy).
///
/// The attr points at `probe.path`: open it while `probe` lives.
pub(crate) fn uprobe(
    config: &SamplerConfig,
    probe: &Uprobe,
    pmu_type: u32,
    side_band: bool,
) -> perf_event_attr {
    let mut attr = common(config);
    attr.type_ = pmu_type;
    // Bit 0 of config would make it a return probe: we want the function's entry.
    attr.config = 0;
    attr.uprobe_path = probe.path.as_ptr() as u64;
    attr.probe_offset = probe.offset;
    attr.sample_period = 1;
    if side_band {
        set_side_band(&mut attr);
    }
    attr
}

/// The attr of a thread's event for a probe window: `thread_attr` (the sampler's own event,
/// whose layout, clock and wakeup the ring expects) turned into `event`, with no side-band
/// records (the sampler's own events report them).
pub(crate) fn window_event(thread_attr: &perf_event_attr, event: &WindowEvent) -> perf_event_attr {
    let mut attr = *thread_attr;
    attr.set_freq(0);
    let in_kernel = matches!(event, WindowEvent::KernelTracepoint { .. });
    attr.type_ = sys::PERF_TYPE_TRACEPOINT;
    attr.config = event.id();
    attr.sample_period = 1;
    attr.sample_stack_user = event.stack_bytes();
    // A uprobe hit is reported with the user registers it trapped with: it passes
    // exclude_kernel. A kernel tracepoint fires in kernel mode, which exclude_kernel drops.
    attr.set_exclude_kernel(u64::from(!in_kernel));
    attr.set_mmap(0);
    attr.set_mmap2(0);
    attr.set_comm(0);
    attr.set_comm_exec(0);
    attr.set_task(0);
    attr.set_context_switch(0);
    attr
}

/// The attr of a one-shot event (`oneshot.rs`): one thread's cpu-clock on one CPU, a sample
/// every `period_ns` of its CPU time with its user registers and stack, nothing inherited and
/// no side-band records. `exclude_kernel` drops the ticks that land in the kernel, which
/// `perf_event_paranoid` 2 requires without CAP_PERFMON; with them, a thread busy in a system
/// call is sampled with the user registers it entered the kernel with.
pub(crate) fn one_shot(stack_bytes: u32, period_ns: u64, exclude_kernel: bool) -> perf_event_attr {
    let config = SamplerConfig {
        stack_bytes,
        ..SamplerConfig::new(0)
    };
    let mut attr = common(&config);
    attr.type_ = sys::PERF_TYPE_SOFTWARE;
    attr.config = u64::from(sys::PERF_COUNT_SW_CPU_CLOCK);
    attr.sample_period = period_ns;
    attr.set_exclude_kernel(u64::from(exclude_kernel));
    attr
}

/// Side-band records: new executable mappings, thread names, thread creation and exit.
fn set_side_band(attr: &mut perf_event_attr) {
    attr.set_mmap(1);
    attr.set_mmap2(1);
    attr.set_comm(1);
    attr.set_comm_exec(1);
    attr.set_task(1);
}

/// What every event of a sampler shares: the sample layout, the clock and the wakeup (the
/// kernel refuses to redirect events with different clocks into one ring), disabled at first.
fn common(config: &SamplerConfig) -> perf_event_attr {
    let mut attr = perf_event_attr {
        size: std::mem::size_of::<perf_event_attr>() as u32,
        sample_type: sample_type(config),
        sample_regs_user: USER_REGS.iter().map(|&bit| 1u64 << bit).sum(),
        sample_stack_user: config.stack_bytes,
        // Stamp records with CLOCK_MONOTONIC so their times compare with the sampler's clock.
        clockid: libc::CLOCK_MONOTONIC,
        ..perf_event_attr::default()
    };
    attr.set_disabled(1);
    // Kernel samples need more privilege than perf_event_paranoid=2 grants; hypervisor frames
    // could not be symbolized anyway.
    attr.set_exclude_kernel(u64::from(!config.kernel));
    attr.set_exclude_hv(1);
    attr.set_exclude_callchain_kernel(u64::from(!config.kernel));
    // User frames come from unwinding the stack copy, not from the kernel's frame-pointer walk.
    attr.set_exclude_callchain_user(1);
    // Every record carries its time (to merge rings in order), task and event id (to drop the
    // copies written for a thread sampled twice).
    attr.set_sample_id_all(1);
    attr.set_use_clockid(1);
    // Wake poll(2) per batch, not per sample: a watermark of 0 bytes is, to the kernel, half of
    // the ring the owner event maps (ring_buffer_init), whatever size the locked-memory limit
    // left it. A ring that fills slowly is read at the drain's poll timeout instead; the half
    // left free absorbs the time the agent takes to be scheduled. No per-sample wakeup
    // (`wakeup_events`) either: with `watermark` set the kernel counts bytes only.
    attr.set_watermark(1);
    attr.wakeup_watermark = 0;
    attr
}

fn sample_type(config: &SamplerConfig) -> u64 {
    let mut bits = sys::PERF_SAMPLE_IDENTIFIER
        | sys::PERF_SAMPLE_IP
        | sys::PERF_SAMPLE_TID
        | sys::PERF_SAMPLE_TIME
        | sys::PERF_SAMPLE_REGS_USER
        | sys::PERF_SAMPLE_STACK_USER;
    if config.kernel {
        bits |= sys::PERF_SAMPLE_CALLCHAIN;
    }
    if let Trigger::Tracepoint { .. } | Trigger::UserTime { .. } = config.trigger {
        bits |= sys::PERF_SAMPLE_RAW;
    }
    u64::from(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_only_attr_excludes_the_kernel() {
        let config = SamplerConfig::new(1);
        let attr = build(&config, CPU_TIME_SPECS[3]);
        assert_eq!(attr.type_, sys::PERF_TYPE_SOFTWARE);
        assert_eq!(attr.exclude_kernel(), 1);
        assert_eq!(attr.sample_type & u64::from(sys::PERF_SAMPLE_CALLCHAIN), 0);
        assert_eq!(attr.sample_stack_user, config.stack_bytes);
        assert_eq!(attr.sample_regs_user.count_ones(), 3);
        assert_eq!(attr.disabled(), 1);
        assert_eq!(attr.inherit(), 1);
        assert_eq!(attr.inherit_thread(), 0);
        assert_eq!(attr.freq(), 1);
        assert_eq!(attr.sample_freq, 100);
        // Woken at half the ring (the kernel's rule for a watermark of 0), never per sample.
        assert_eq!(attr.watermark(), 1);
        assert_eq!(attr.wakeup_watermark, 0);
        assert_eq!(attr.task(), 1);
        assert_eq!(
            sample_format(&config),
            SampleFormat {
                callchain: false,
                period: false,
                raw: false
            }
        );
    }

    #[test]
    fn uprobe_attr_samples_every_hit_of_one_instruction() {
        let config = SamplerConfig::new(1);
        let probe = Uprobe {
            path: c"/usr/lib/libc.so.6".into(),
            offset: 0x89380,
            name: "pthread_create".into(),
        };
        let attr = uprobe(&config, &probe, 8, false);
        assert_eq!((attr.type_, attr.config), (8, 0));
        assert_eq!(attr.uprobe_path, probe.path.as_ptr() as u64);
        assert_eq!(attr.probe_offset, 0x89380);
        assert_eq!((attr.freq(), attr.sample_period), (0, 1));
        assert_eq!(attr.inherit(), 0);
        assert_eq!((attr.task(), attr.comm(), attr.mmap()), (0, 0, 0));
        assert_eq!(attr.sample_stack_user, config.stack_bytes);
        assert_eq!(attr.disabled(), 1);
        let reporting = uprobe(&config, &probe, 8, true);
        assert_eq!(
            (reporting.task(), reporting.comm(), reporting.mmap2()),
            (1, 1, 1)
        );
        // The same layout and clock as the threads' events.
        let thread = build(&config, CPU_TIME_SPECS[3]);
        assert_eq!(reporting.sample_type, thread.sample_type);
        assert_eq!(reporting.clockid, thread.clockid);
    }

    #[test]
    fn kernel_attr_asks_for_kernel_call_chains() {
        let mut config = SamplerConfig::new(1);
        config.kernel = true;
        let attr = build(&config, CPU_TIME_SPECS[0]);
        assert_eq!(attr.type_, sys::PERF_TYPE_HARDWARE);
        assert_eq!(attr.exclude_kernel(), 0);
        assert_eq!(attr.exclude_callchain_kernel(), 0);
        assert_ne!(attr.sample_type & u64::from(sys::PERF_SAMPLE_CALLCHAIN), 0);
        assert_eq!(attr.inherit_thread(), 1);
        assert_eq!(
            sample_format(&config),
            SampleFormat {
                callchain: true,
                period: false,
                raw: false
            }
        );
    }

    #[test]
    fn context_switch_attr_samples_switches_in_the_kernel_with_records() {
        let mut config = SamplerConfig::new(1);
        config.trigger = Trigger::ContextSwitches { period: 4 };
        let spec = specs(&config.trigger)[0];
        let attr = build(&config, spec);
        assert_eq!(
            (attr.type_, attr.config),
            (
                sys::PERF_TYPE_SOFTWARE,
                u64::from(sys::PERF_COUNT_SW_CONTEXT_SWITCHES)
            )
        );
        assert_eq!((attr.freq(), attr.sample_period), (0, 4));
        assert_eq!(attr.sample_type & u64::from(sys::PERF_SAMPLE_PERIOD), 0);
        assert_eq!(attr.context_switch(), 1);
        assert_eq!(attr.exclude_kernel(), 0, "switches happen in the kernel");
        assert_eq!(attr.exclude_callchain_kernel(), 1);
        assert_eq!((attr.inherit(), attr.inherit_thread()), (1, 1));
        assert_eq!(spec.event.kind(), EventKind::ContextSwitches);
    }
}
