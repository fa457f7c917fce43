//! Keeping tracefs probes registered between probe windows.
//!
//! The kernel registers a tracefs uprobe with the first perf event opened on it and unregisters
//! it with the last one closed, and unregistering waits for an SRCU grace period (~85 ms
//! here). One event per probe held open on an idle task the whole recording keeps every
//! window's close cheap (0.17 ms). The held events count without sampling; the breakpoint they
//! install lies only in the idle task's memory, which never runs the probed code.

use perf_event_open_sys::bindings::{self as sys, perf_event_attr};

use super::error::SamplerError;
use super::event::PerfEvent;

/// Events that hold probes registered; dropping it releases them.
pub struct ProbeHold {
    _events: Vec<PerfEvent>,
}

/// Opens, on task `tid` (any CPU), a counting event for each tracepoint of `ids`.
pub fn hold_probes(tid: u32, ids: &[u64]) -> Result<ProbeHold, SamplerError> {
    let events = ids
        .iter()
        .map(|&id| {
            let mut attr = perf_event_attr {
                size: std::mem::size_of::<perf_event_attr>() as u32,
                type_: sys::PERF_TYPE_TRACEPOINT,
                config: id,
                ..perf_event_attr::default()
            };
            attr.set_disabled(1);
            attr.set_exclude_kernel(1);
            attr.set_exclude_hv(1);
            PerfEvent::open_any_cpu(&attr, tid)
                .map_err(|errno| SamplerError::io("perf_event_open(probe holder)", errno))
        })
        .collect::<Result<_, _>>()?;
    Ok(ProbeHold { _events: events })
}
