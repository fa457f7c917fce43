//! Uprobe events: a sample each time any thread of the target executes one instruction of a
//! file, opened through the uprobe PMU (no tracefs, no BPF).
//!
//! Uprobe events are opened per CPU, for every task, never per thread, and the threads get no
//! events of their own:
//! - an inherited uprobe event makes thread creation fail in the target (the kernel re-reads
//!   the path pointer, and checks CAP_PERFMON, in the target's forking thread);
//! - the kernel creates a probe per uprobe event and closes each with RCU grace periods under a
//!   global mutex (~80 ms measured here), so per-thread events cannot follow a churning target;
//! - any per-thread event, even a side-band-only dummy, makes the kernel copy it into each new
//!   thread and free it at exit: that halved a thread-creating loop's rate here.
//!
//! So the first probe event of each CPU also carries the side-band records (thread creation
//! and exit, names, executable mappings) of every task on that CPU. A per-CPU probe fires in
//! every process that maps the probed file, too. The sampler keeps the target's records and
//! drops the others'.

use std::fs;
use std::io;

use nix::errno::Errno;

use super::attr;
use super::config::{SamplerConfig, Uprobe};
use super::error::SamplerError;
use super::event::PerfEvent;

/// Where the uprobe PMU publishes its dynamic type number.
const PMU_TYPE_PATH: &str = "/sys/bus/event_source/devices/uprobe/type";

/// The uprobe PMU's type number (`perf_event_attr.type`).
pub(crate) fn pmu_type() -> Result<u32, SamplerError> {
    let unsupported = |reason: String| SamplerError::UprobesUnsupported { reason };
    let text = fs::read_to_string(PMU_TYPE_PATH).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => unsupported(format!("{PMU_TYPE_PATH} does not exist")),
        _ => unsupported(format!("cannot read {PMU_TYPE_PATH}: {e}")),
    })?;
    text.trim()
        .parse()
        .map_err(|_| unsupported(format!("{PMU_TYPE_PATH} holds {:?}", text.trim())))
}

/// Opens, disabled, one event per probe on each of `cpus`: `result[i]` holds the events of
/// `cpus[i]`, in the order of `probes`; the first of each CPU reports the side-band records.
pub(crate) fn open_per_cpu(
    config: &SamplerConfig,
    probes: &[Uprobe],
    cpus: &[u32],
) -> Result<Vec<Vec<PerfEvent>>, SamplerError> {
    let pmu = pmu_type()?;
    cpus.iter()
        .map(|&cpu| {
            probes
                .iter()
                .enumerate()
                .map(|(index, probe)| {
                    // `probe` outlives the open: the attr's path pointer stays valid.
                    let attr = attr::uprobe(config, probe, pmu, index == 0);
                    PerfEvent::open_per_cpu(&attr, cpu)
                        .map_err(|errno| open_error(errno, probe, cpus.len()))
                })
                .collect()
        })
        .collect()
}

fn open_error(errno: Errno, probe: &Uprobe, cpus: usize) -> SamplerError {
    match errno {
        Errno::EACCES | Errno::EPERM => SamplerError::uprobe_permission_denied(),
        Errno::EMFILE | Errno::ENFILE => SamplerError::too_many_files(1, cpus),
        errno => SamplerError::UprobeRefused {
            probe: probe.name.clone(),
            offset: probe.offset,
            errno,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_pmu_type_is_read_where_the_kernel_publishes_it() {
        match pmu_type() {
            Ok(pmu) => assert!(Path::new(PMU_TYPE_PATH).exists() && pmu > 0),
            Err(error) => {
                assert!(!Path::new(PMU_TYPE_PATH).exists(), "{error}");
                assert!(error.to_string().contains("uprobe"), "{error}");
            }
        }
    }

    #[test]
    fn refusals_name_the_probe() {
        let probe = Uprobe {
            path: c"/proc/self/fd/7".into(),
            offset: 0x89380,
            name: "pthread_create in /usr/lib/libc.so.6".into(),
        };
        let text = open_error(Errno::EINVAL, &probe, 2).to_string();
        assert!(
            text.contains("pthread_create in /usr/lib/libc.so.6") && text.contains("0x89380"),
            "{text}"
        );
        assert!(text.contains("EINVAL"), "{text}");
        assert!(matches!(
            open_error(Errno::EPERM, &probe, 2),
            SamplerError::UprobePermissionDenied { .. }
        ));
    }
}
