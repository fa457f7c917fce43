//! The perf_event_attr every sampling event is opened with.

use perf_event_open_sys::bindings::{self as sys, perf_event_attr};

use super::config::{EventKind, SamplerConfig};
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

/// Which event to open and which optional kernel features to ask for; `Sampler::open` tries
/// these in order until one opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EventSpec {
    pub kind: EventKind,
    /// Inherit into new threads only, not into child processes (Linux 5.13+). Without it,
    /// records of child processes reach the ring too and are filtered out by pid.
    pub inherit_thread: bool,
}

pub(crate) const SPECS: [EventSpec; 4] = [
    EventSpec {
        kind: EventKind::Cycles,
        inherit_thread: true,
    },
    EventSpec {
        kind: EventKind::Cycles,
        inherit_thread: false,
    },
    EventSpec {
        kind: EventKind::CpuClock,
        inherit_thread: true,
    },
    EventSpec {
        kind: EventKind::CpuClock,
        inherit_thread: false,
    },
];

/// The sample layout `build` asks for with this configuration.
pub(crate) fn sample_format(config: &SamplerConfig) -> SampleFormat {
    SampleFormat {
        callchain: config.kernel,
    }
}

/// Builds the attr for `config`; events start disabled and are enabled once wired to a ring.
/// `wakeup_bytes` is how much unread data makes poll(2) report the ring readable.
pub(crate) fn build(config: &SamplerConfig, spec: EventSpec, wakeup_bytes: u32) -> perf_event_attr {
    let (type_, event) = match spec.kind {
        EventKind::Cycles => (sys::PERF_TYPE_HARDWARE, sys::PERF_COUNT_HW_CPU_CYCLES),
        EventKind::CpuClock => (sys::PERF_TYPE_SOFTWARE, sys::PERF_COUNT_SW_CPU_CLOCK),
    };
    let mut attr = perf_event_attr {
        size: std::mem::size_of::<perf_event_attr>() as u32,
        type_,
        config: u64::from(event),
        sample_type: sample_type(config),
        sample_regs_user: USER_REGS.iter().map(|&bit| 1u64 << bit).sum(),
        sample_stack_user: config.stack_bytes,
        // Stamp records with CLOCK_MONOTONIC so their times compare with the sampler's clock.
        clockid: libc::CLOCK_MONOTONIC,
        ..perf_event_attr::default()
    };
    attr.set_freq(1);
    attr.sample_freq = config.frequency;
    attr.set_disabled(1);
    // New threads of a sampled thread get copies of its events, writing to the same rings.
    attr.set_inherit(1);
    attr.set_inherit_thread(u64::from(spec.inherit_thread));
    // Kernel samples need more privilege than perf_event_paranoid=2 grants; hypervisor frames
    // could not be symbolized anyway.
    attr.set_exclude_kernel(u64::from(!config.kernel));
    attr.set_exclude_hv(1);
    attr.set_exclude_callchain_kernel(u64::from(!config.kernel));
    // User frames come from unwinding the stack copy, not from the kernel's frame-pointer walk.
    attr.set_exclude_callchain_user(1);
    // Side-band records: new executable mappings, thread names, thread creation and exit.
    attr.set_mmap(1);
    attr.set_mmap2(1);
    attr.set_comm(1);
    attr.set_comm_exec(1);
    attr.set_task(1);
    // Every record carries its time (to merge rings in order), task and event id (to drop the
    // copies written for a thread sampled twice).
    attr.set_sample_id_all(1);
    attr.set_use_clockid(1);
    attr.set_watermark(1);
    attr.wakeup_watermark = wakeup_bytes;
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
    u64::from(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_only_attr_excludes_the_kernel() {
        let config = SamplerConfig::new(1);
        let attr = build(&config, SPECS[3], 4096);
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
        assert_eq!(sample_format(&config), SampleFormat { callchain: false });
    }

    #[test]
    fn kernel_attr_asks_for_kernel_call_chains() {
        let mut config = SamplerConfig::new(1);
        config.kernel = true;
        let attr = build(&config, SPECS[0], 4096);
        assert_eq!(attr.type_, sys::PERF_TYPE_HARDWARE);
        assert_eq!(attr.exclude_kernel(), 0);
        assert_eq!(attr.exclude_callchain_kernel(), 0);
        assert_ne!(attr.sample_type & u64::from(sys::PERF_SAMPLE_CALLCHAIN), 0);
        assert_eq!(attr.inherit_thread(), 1);
        assert_eq!(sample_format(&config), SampleFormat { callchain: true });
    }
}
