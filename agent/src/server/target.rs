//! The process the server profiles: a fixed PID, or the process with a given name, looked up in
//! /proc and followed when it restarts under a new PID. PIDs are the ones the agent's PID
//! namespace sees (the pod's, with `shareProcessNamespace`); the target's files are read
//! through /proc/PID/root by the symbolizer.

use std::time::Duration;

use anyhow::Result;
use tokio::sync::watch;

use super::errors::PprofError;
use super::procs::{access_problem, find_by_name, Incarnation};
use super::shutdown::Shutdown;

/// How often the target is looked for (or checked to be still there).
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// What the command line asked to profile.
#[derive(Debug, Clone)]
pub enum TargetSpec {
    Pid(u32),
    Name(String),
}

impl std::fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetSpec::Pid(pid) => write!(f, "PID {pid}"),
            TargetSpec::Name(name) => write!(f, "the process named {name:?}"),
        }
    }
}

/// The current target, kept up to date by a task of its own.
#[derive(Clone)]
pub struct TargetWatch {
    spec: TargetSpec,
    current: watch::Receiver<Option<Incarnation>>,
}

impl TargetWatch {
    /// Resolves the target once — a `--pid` that names no process is an error now rather than a
    /// 503 on every request — then follows it until `shutdown`. (The first look blocks on
    /// /proc, once, before the server takes requests.)
    pub fn start(spec: TargetSpec, shutdown: Shutdown) -> Result<Self> {
        let first = match &spec {
            TargetSpec::Pid(pid) => {
                crate::target::check_pid(*pid)?;
                Incarnation::of(*pid)
            }
            TargetSpec::Name(name) => find_by_name(name),
        };
        announce(&spec, None, first);
        let (sender, current) = watch::channel(first);
        tokio::spawn(follow(spec.clone(), sender, shutdown));
        Ok(TargetWatch { spec, current })
    }

    pub fn spec(&self) -> &TargetSpec {
        &self.spec
    }

    /// The target now, if there is one.
    pub fn peek(&self) -> Option<Incarnation> {
        *self.current.borrow()
    }

    /// The target now, or the 503 that explains why there is none or why it cannot be
    /// profiled (a program found by name may be a 32-bit one; `--pid` is checked at start).
    pub fn current(&self) -> Result<Incarnation, PprofError> {
        let target = self
            .peek()
            .ok_or_else(|| PprofError::unavailable(self.absent_reason()))?;
        crate::architecture::check_process(target.pid)
            .map_err(|err| PprofError::unavailable(err.to_string()))?;
        Ok(target)
    }

    fn absent_reason(&self) -> String {
        match &self.spec {
            TargetSpec::Pid(pid) => format!(
                "process {pid} has exited; restart rprof-agent with the new PID, or use \
                 --process NAME to follow a program across restarts"
            ),
            TargetSpec::Name(name) => format!(
                "no process named {name:?} is running; rprof-agent is waiting for one to start \
                 (it looks every {} ms){}",
                POLL_INTERVAL.as_millis(),
                if own_pid_namespace() {
                    OWN_PID_NAMESPACE_HINT
                } else {
                    ""
                }
            ),
        }
    }
}

/// Why a container's agent finds nothing: it sees only its own container's processes.
const OWN_PID_NAMESPACE_HINT: &str = "; rprof-agent is PID 1, alone in its PID namespace: \
     share the application's (Kubernetes: shareProcessNamespace: true in the pod spec; \
     docker run --pid=container:APP)";

/// The agent is the first process of its PID namespace: nothing started before it, so it was
/// started as a container's entrypoint without the pod's or the application's namespace (in
/// a pod with shareProcessNamespace, the pause container is PID 1).
fn own_pid_namespace() -> bool {
    std::process::id() == 1
}

/// Re-checks the target every [`POLL_INTERVAL`] and publishes changes.
async fn follow(spec: TargetSpec, sender: watch::Sender<Option<Incarnation>>, shutdown: Shutdown) {
    let mut ticks = tokio::time::interval(POLL_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.wait() => return,
        }
        let previous = *sender.borrow();
        let lookup = spec.clone();
        // Scanning /proc is blocking file I/O: off the async workers.
        let next = tokio::task::spawn_blocking(move || resolve(&lookup, previous))
            .await
            .unwrap_or(previous);
        if next != previous {
            announce(&spec, previous, next);
            sender.send_replace(next);
        }
    }
}

/// The target after `previous`: the same process while it lives; for a name, else the oldest
/// process with that name. A PID that is gone never comes back (a new process under that
/// number is somebody else).
fn resolve(spec: &TargetSpec, previous: Option<Incarnation>) -> Option<Incarnation> {
    if let Some(target) = previous.filter(Incarnation::is_alive) {
        return Some(target);
    }
    match spec {
        TargetSpec::Pid(_) => None,
        TargetSpec::Name(name) => find_by_name(name),
    }
}

/// One log line per change of target.
fn announce(spec: &TargetSpec, previous: Option<Incarnation>, next: Option<Incarnation>) {
    if let Some(gone) = previous {
        tracing::info!("PID {} exited", gone.pid);
    }
    match (next, spec) {
        (Some(target), _) => {
            tracing::info!("profiling PID {} ({})", target.pid, target.name());
            if let Err(err) = crate::architecture::check_process(target.pid) {
                tracing::warn!("{err}: requests get 503");
            }
            if let Some(problem) = access_problem(target.pid) {
                tracing::warn!("{problem}");
            }
        }
        (None, TargetSpec::Name(_)) => tracing::info!("waiting for {spec} to start"),
        (None, TargetSpec::Pid(_)) => {
            tracing::warn!("{spec} is gone: requests get 503 until rprof-agent is restarted")
        }
    }
}
