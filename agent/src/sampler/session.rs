//! The sampling stage: events on every thread of the target and every online CPU (for uprobes,
//! per-CPU probe events instead), one ring buffer per CPU, records handed out in time order.

use std::collections::{HashMap, HashSet};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use perf_event_open_sys::bindings::perf_event_attr;

use super::attr::{self, EventSpec};
use super::cgroup::OwnCgroup;
use super::config::{EventKind, SamplerConfig, Trigger, Uprobe, WindowEvent};
use super::coverage::Coverage;
use super::cpu::CpuEvents;
use super::error::SamplerError;
use super::event::PerfEvent;
use super::host;
use super::merge;
use super::poll;
use super::record::{self, DecodeScratch, Decoded, Record, SampleFormat};
use super::ring::{RecordCursor, Ring, RingPlan};
use super::stats::SamplerStats;
use super::threads;
use super::uprobe;
use super::wake;
use crate::process_identity::ProcessHandle;

/// Samples one process. Dropping it stops sampling and releases every event and buffer.
pub struct Sampler {
    target: ProcessHandle,
    kind: EventKind,
    /// The attr of each thread's own events; `None` when per-CPU events cover every thread.
    thread_attr: Option<perf_event_attr>,
    format: SampleFormat,
    cpus: Vec<CpuEvents>,
    coverage: Coverage,
    scratch: DecodeScratch,
    stats: SamplerStats,
    /// The events of the probe window open now (see [`Sampler::arm`]).
    armed: Vec<PerfEvent>,
    /// The attrs of the probes every thread gets with its own events ([`SamplerConfig::probes`]).
    probe_attrs: Vec<perf_event_attr>,
    /// The target's pidfd said it exited: it is no longer polled (it would stay readable).
    exit_seen: bool,
    /// The cgroup the events are scoped to, when they are (per-CPU events of the target's
    /// own cgroup rather than per-thread events).
    cgroup: Option<String>,
    /// [`SamplerConfig::on_sample`], for the events of threads attached later.
    on_sample: Option<i32>,
}

/// The threads a probe window was opened on, and when.
#[derive(Debug, Clone, Default)]
pub struct Armed {
    /// CLOCK_MONOTONIC ns when the first thread's probes were enabled.
    pub at: u64,
    /// The threads whose probes opened (threads they create inherit them).
    pub tids: Vec<u32>,
    /// The ids samples of the window's events carry, each with the index of its event in
    /// what was armed.
    pub ids: HashMap<u64, usize>,
}

impl Sampler {
    /// Starts sampling every thread of `config.pid`: for CPU time, hardware cycles where the CPU
    /// has a PMU, else the cpu-clock timer; or every hit of the uprobes.
    pub fn open(config: &SamplerConfig) -> Result<Sampler, SamplerError> {
        config.validate()?;
        if config.trigger == Trigger::CpuTime {
            check_frequency(config.frequency)?;
        }
        let target = threads::inspect(config.pid)?;
        if let Err(error) = host::raise_nofile_limit() {
            tracing::debug!(%error, "could not raise the open-file limit");
        }
        let cpu_list = host::online_cpus()
            .map_err(|e| SamplerError::io("read /sys/devices/system/cpu/online", e))?;
        let plan = RingPlan::for_trigger(&config.trigger, cpu_list.len(), config.budget_share);
        let cgroup = (config.trigger == Trigger::CpuTime && config.cgroup_scope)
            .then(|| OwnCgroup::of(config.pid))
            .flatten();
        if let Some(cgroup) = cgroup {
            match open_cgroup_events(config, &cgroup, &cpu_list) {
                Ok((spec, events)) => {
                    let sampler =
                        Self::open_cgroup(config, target, spec, events, &cpu_list, plan, cgroup)?;
                    sampler.report_small_rings(plan);
                    return Ok(sampler);
                }
                // Kernels without cgroup events, or not allowed (CPU-wide events need
                // CAP_PERFMON whatever the cgroup): per-thread events do the same job.
                Err(errno) => tracing::debug!(%errno, "no cgroup-scoped events; per-thread"),
            }
        }
        if let Some(program) = config.filter {
            let sampler = Self::open_filtered(config, target, &cpu_list, plan, program)?;
            sampler.report_small_rings(plan);
            return Ok(sampler);
        }
        let sampler = match &config.trigger {
            Trigger::CpuTime
            | Trigger::ContextSwitches { .. }
            | Trigger::Tracepoint { .. }
            | Trigger::PageFaults { .. }
            | Trigger::UserTime { .. } => Self::open_per_thread(config, target, &cpu_list, plan)?,
            Trigger::Uprobes(probes) => {
                Self::open_per_cpu(config, probes, target, &cpu_list, plan)?
            }
            Trigger::SideBand => Self::open_side_band(config, target, &cpu_list, plan)?,
        };
        sampler.report_small_rings(plan);
        Ok(sampler)
    }

    /// Events on every thread, the first thread's owning the rings.
    fn open_per_thread(
        config: &SamplerConfig,
        target: ProcessHandle,
        cpu_list: &[u32],
        plan: RingPlan,
    ) -> Result<Sampler, SamplerError> {
        let tids = target.tasks();
        let (spec, first_tid, first_events, rest) = first_thread(&target, config, &tids, cpu_list)?;
        let page_size = page_size();
        let mut cpus = Vec::with_capacity(cpu_list.len());
        for (&cpu, event) in cpu_list.iter().zip(first_events) {
            cpus.push(CpuEvents::new(
                cpu,
                Ring::map_within(event, plan, page_size)?,
            ));
        }
        let attr = attr::build(config, spec);
        let mut sampler = Sampler::new(target, spec.event.kind(), Some(attr), config, cpus);
        observe(
            config.on_sample,
            sampler.cpus.iter().map(|cpu| cpu.ring().owner()),
        );
        // The first thread's probes, if it still runs (else it needs none).
        let probes = sampler.open_probes(first_tid)?.unwrap_or_default();
        sampler.connect(&probes)?;
        let mut events: Vec<&PerfEvent> =
            sampler.cpus.iter().map(|cpu| cpu.ring().owner()).collect();
        events.extend(&probes);
        start(&mut sampler.coverage, first_tid, &events)?;
        sampler.keep(first_tid, probes);
        for &tid in rest {
            sampler.attach_thread(tid)?;
        }
        Ok(sampler)
    }

    /// Per-CPU events scoped to the target's own cgroup, which own the rings and cover every
    /// thread of the cgroup (records of other processes that join it are dropped by pid).
    fn open_cgroup(
        config: &SamplerConfig,
        target: ProcessHandle,
        spec: EventSpec,
        events: Vec<PerfEvent>,
        cpu_list: &[u32],
        plan: RingPlan,
        cgroup: OwnCgroup,
    ) -> Result<Sampler, SamplerError> {
        observe(config.on_sample, &events);
        let per_cpu = events.into_iter().map(|event| vec![event]).collect();
        let mut sampler =
            Self::start_per_cpu(config, target, spec.event.kind(), per_cpu, cpu_list, plan)?;
        sampler.cgroup = Some(cgroup.path);
        Ok(sampler)
    }

    /// Per-CPU events for every task, which own the rings; BPF program `program` keeps the
    /// target's overflows ([`SamplerConfig::filter`]), and records of other processes are
    /// dropped by pid.
    fn open_filtered(
        config: &SamplerConfig,
        target: ProcessHandle,
        cpu_list: &[u32],
        plan: RingPlan,
        program: i32,
    ) -> Result<Sampler, SamplerError> {
        let opened = open_per_cpu_events(config, cpu_list, |attr, cpu| {
            let event = PerfEvent::open_per_cpu(attr, cpu)?;
            event.set_bpf(program)?;
            Ok(event)
        });
        let (spec, events) = opened
            .map_err(|errno| thread_open_error(config, errno, target.pid(), cpu_list.len()))?;
        let per_cpu = events.into_iter().map(|event| vec![event]).collect();
        Self::start_per_cpu(config, target, spec.event.kind(), per_cpu, cpu_list, plan)
    }

    /// Per-CPU dummy events for every task ([`Trigger::SideBand`]), whose records of other
    /// processes are dropped by pid.
    fn open_side_band(
        config: &SamplerConfig,
        target: ProcessHandle,
        cpu_list: &[u32],
        plan: RingPlan,
    ) -> Result<Sampler, SamplerError> {
        let opened = open_per_cpu_events(config, cpu_list, PerfEvent::open_per_cpu);
        let (spec, events) = opened
            .map_err(|errno| thread_open_error(config, errno, target.pid(), cpu_list.len()))?;
        let per_cpu = events.into_iter().map(|event| vec![event]).collect();
        Self::start_per_cpu(config, target, spec.event.kind(), per_cpu, cpu_list, plan)
    }

    /// Per-CPU probe events, which own the rings and cover every thread.
    fn open_per_cpu(
        config: &SamplerConfig,
        probes: &[Uprobe],
        target: ProcessHandle,
        cpu_list: &[u32],
        plan: RingPlan,
    ) -> Result<Sampler, SamplerError> {
        let per_cpu = uprobe::open_per_cpu(config, probes, cpu_list)?;
        Self::start_per_cpu(config, target, EventKind::Uprobe, per_cpu, cpu_list, plan)
    }

    /// Maps the rings of per-CPU events (each CPU's first event owns its ring) and enables
    /// them: a sampler whose events cover every thread.
    fn start_per_cpu(
        config: &SamplerConfig,
        target: ProcessHandle,
        kind: EventKind,
        per_cpu: Vec<Vec<PerfEvent>>,
        cpu_list: &[u32],
        plan: RingPlan,
    ) -> Result<Sampler, SamplerError> {
        let cpus = probe_rings(cpu_list, per_cpu, plan, page_size())?;
        let sampler = Sampler::new(target, kind, None, config, cpus);
        for cpu in &sampler.cpus {
            cpu.enable_per_cpu()
                .map_err(|e| SamplerError::io("ioctl(PERF_EVENT_IOC_ENABLE)", e))?;
        }
        Ok(sampler)
    }

    fn new(
        target: ProcessHandle,
        kind: EventKind,
        thread_attr: Option<perf_event_attr>,
        config: &SamplerConfig,
        cpus: Vec<CpuEvents>,
    ) -> Sampler {
        let probe_attrs = match &thread_attr {
            Some(thread_attr) => config
                .probes
                .iter()
                .map(|probe| attr::window_event(thread_attr, probe))
                .collect(),
            None => Vec::new(),
        };
        Sampler {
            probe_attrs,
            target,
            kind,
            thread_attr,
            format: attr::sample_format(config),
            cpus,
            coverage: Coverage::default(),
            scratch: DecodeScratch::default(),
            stats: SamplerStats::default(),
            armed: Vec::new(),
            exit_seen: false,
            cgroup: None,
            on_sample: config.on_sample,
        }
    }

    /// The cgroup sampling is scoped to, when per-CPU events of the target's own cgroup cover
    /// its threads; None when each thread has events of its own.
    pub fn cgroup(&self) -> Option<&str> {
        self.cgroup.as_deref()
    }

    /// Opens a probe window: `probes` on threads `tids` of the target (those alive; threads
    /// they create inherit the probes), writing into this sampler's rings, until
    /// [`Sampler::disarm`]. A probe traps on every call while its event is open, enabled or
    /// not, so windows are how the owner bounds what probing costs the target. Needs a
    /// per-thread trigger whose samples carry raw fields ([`Trigger::UserTime`]).
    ///
    /// The events start in the order of `probes` (every thread's first probe, then every
    /// thread's second, ...) and stop in the reverse order: list what must see everything the
    /// others see (frees) first.
    pub fn arm(&mut self, probes: &[WindowEvent], tids: &[u32]) -> Result<Armed, SamplerError> {
        let _ = self.disarm();
        let Some(thread_attr) = &self.thread_attr else {
            return Err(SamplerError::InvalidConfig(
                "probe windows need the threads' own events".into(),
            ));
        };
        if !self.format.raw {
            return Err(SamplerError::InvalidConfig(
                "probe windows need samples with raw fields".into(),
            ));
        }
        let attrs: Vec<perf_event_attr> = probes
            .iter()
            .map(|probe| attr::window_event(thread_attr, probe))
            .collect();
        let cpu_list: Vec<u32> = self.cpus.iter().map(CpuEvents::cpu).collect();
        let mut armed = Armed::default();
        // Everything is opened and wired first, then enabled in one tight loop: the window
        // starts at one moment for every thread (its `at`).
        let mut opened_all = Vec::new();
        for &tid in tids {
            let mut opened = Vec::with_capacity(attrs.len() * cpu_list.len());
            for attr in &attrs {
                match open_on_cpus(attr, tid, &cpu_list) {
                    Ok(Some(events)) => opened.extend(events),
                    Ok(None) => break,
                    Err(errno) => {
                        let _ = self.disarm();
                        return Err(self.open_error(errno));
                    }
                }
            }
            if opened.len() < attrs.len() * cpu_list.len() {
                continue; // The thread exited meanwhile.
            }
            // `opened` holds each probe's events, one per CPU in the rings' order.
            for (index, event) in opened.into_iter().enumerate() {
                let cpu = &self.cpus[index % cpu_list.len()];
                let id = cpu
                    .connect(&event)
                    .and_then(|()| event.id())
                    .map_err(|e| SamplerError::io("ioctl(PERF_EVENT_IOC_SET_OUTPUT/ID)", e))?;
                armed.ids.insert(id, index / cpu_list.len());
                opened_all.push((index / cpu_list.len(), event));
            }
            armed.tids.push(tid);
        }
        opened_all.sort_by_key(|&(probe, _)| probe);
        let opened_all: Vec<PerfEvent> = opened_all.into_iter().map(|(_, event)| event).collect();
        let before = host::monotonic_ns();
        for event in &opened_all {
            event
                .enable()
                .map_err(|e| SamplerError::io("ioctl(PERF_EVENT_IOC_ENABLE)", e))?;
        }
        armed.at = midpoint(before, host::monotonic_ns());
        self.armed = opened_all;
        Ok(armed)
    }

    /// Closes the probe window, if one is open: from the time this returns the target no
    /// longer traps on the probes (unless another window of another sampler is open).
    /// Returns when (CLOCK_MONOTONIC ns) the window stopped sampling.
    pub fn disarm(&mut self) -> u64 {
        let before = host::monotonic_ns();
        for event in self.armed.iter().rev() {
            // Stop writing before the close: the close is what takes the breakpoints out.
            let _ = event.disable();
        }
        let stopped = midpoint(before, host::monotonic_ns());
        self.armed.clear();
        stopped
    }

    /// Whether a probe window is open.
    pub fn is_armed(&self) -> bool {
        !self.armed.is_empty()
    }

    /// The target's threads alive now.
    pub fn tasks(&self) -> Vec<u32> {
        self.target.tasks()
    }

    /// The event that drives sampling.
    pub fn event_kind(&self) -> EventKind {
        self.kind
    }

    /// Waits (poll(2) on the rings, at most `timeout`) until a ring is half full or the target
    /// exits. `Ok(false)` on timeout; the rings may well hold records then.
    pub fn wait(&mut self, timeout: Duration) -> Result<bool, SamplerError> {
        Sampler::wait_any(&mut [self], timeout)
    }

    /// [`Sampler::wait`] on several samplers at once: until a ring of any of them is half full
    /// or the target exits. Samplers that are waited for one after the other would leave the
    /// rings of the others unwatched (and overflowing) for as long as each wait lasts.
    pub fn wait_any(
        samplers: &mut [&mut Sampler],
        timeout: Duration,
    ) -> Result<bool, SamplerError> {
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match poll_rings(samplers, remaining)? {
                Polled::Readable => return Ok(true),
                Polled::TimedOut => return Ok(false),
                // The hung-up events were replaced: poll the others for the time left.
                Polled::HungUp if !remaining.is_zero() => {}
                Polled::HungUp => return Ok(false),
            }
        }
    }

    /// Decodes every record published so far in every ring and hands each to `f`, in time
    /// order, then gives the space back to the kernel.
    pub fn drain(&mut self, f: &mut dyn FnMut(Record<'_>)) {
        self.drain_until(None, f);
    }

    /// [`Sampler::drain`], stopping at `deadline` if there is one (what is left stays in the
    /// rings): for an owner that must act on time whatever the rings hold.
    pub fn drain_until(&mut self, deadline: Option<Instant>, f: &mut dyn FnMut(Record<'_>)) {
        self.drain_while(
            &mut || deadline.is_none_or(|deadline| Instant::now() < deadline),
            f,
        );
    }

    /// [`Sampler::drain`], stopping as soon as `go_on` says so (asked after each record; what
    /// is left stays in the rings).
    pub fn drain_while(&mut self, go_on: &mut dyn FnMut() -> bool, f: &mut dyn FnMut(Record<'_>)) {
        let Sampler {
            target,
            thread_attr,
            format,
            cpus,
            coverage,
            scratch,
            stats,
            ..
        } = self;
        let mut rings: Vec<_> = cpus.iter_mut().map(|cpu| cpu.ring_mut().cursor()).collect();
        let mut cursors: Vec<&mut RecordCursor<'_>> =
            rings.iter_mut().map(|ring| ring.records()).collect();
        let mut dispatch = Dispatch {
            pid: target.pid(),
            format: *format,
            per_thread: thread_attr.is_some(),
            coverage,
            scratch,
            stats,
        };
        merge::in_time_order(&mut cursors, |bytes| {
            dispatch.record(bytes, f);
            go_on()
        });
        let resyncs = cursors
            .iter()
            .filter(|cursor| cursor.skipped_bytes() > 0)
            .count();
        dispatch.stats.malformed += resyncs as u64;
    }

    /// Attaches the threads of the target that are not sampled yet: neither attached nor
    /// created by a sampled thread since (those inherit its events). Returns how many were
    /// attached (none when per-CPU events sample every thread). A target that has exited is
    /// not an error: see [`Sampler::target_alive`].
    pub fn refresh_threads(&mut self) -> Result<usize, SamplerError> {
        if self.thread_attr.is_none() {
            return Ok(0);
        }
        let tasks = self.target.tasks();
        self.coverage
            .keep_only(&tasks.iter().copied().collect::<HashSet<u32>>());
        self.close_exited_events();
        let mut attached = 0;
        for tid in tasks {
            if self.coverage.needs_attach(tid) && self.attach_thread(tid)? {
                attached += 1;
            }
        }
        Ok(attached)
    }

    /// Whether the target process still exists (and is not a zombie).
    pub fn target_alive(&self) -> bool {
        self.target.is_alive()
    }

    /// Counters since `open`.
    /// Samples every `period`-th event from now on, on every thread's events (those attached
    /// later too): for fixed-period triggers whose owner adapts the rate (context switches,
    /// tracepoints).
    pub fn set_period(&mut self, period: u64) {
        let period = period.max(1);
        if let Some(attr) = &mut self.thread_attr {
            attr.sample_period = period;
        }
        for cpu in &self.cpus {
            cpu.set_period(period);
        }
    }

    pub fn stats(&self) -> SamplerStats {
        SamplerStats {
            threads_attached: self.coverage.attached_total(),
            threads_inherited: self.coverage.inherited_total(),
            cpus: self.cpus.len(),
            ring_bytes: self.cpus.iter().map(|cpu| cpu.ring().data_size()).sum(),
            ..self.stats
        }
    }

    /// Opens `tid`'s events on every CPU, wires them to the rings and enables them. `Ok(false)`
    /// if the thread exited first, or if threads have no events of their own.
    fn attach_thread(&mut self, tid: u32) -> Result<bool, SamplerError> {
        let Some(attr) = &self.thread_attr else {
            return Ok(false);
        };
        let cpu_list: Vec<u32> = self.cpus.iter().map(CpuEvents::cpu).collect();
        let mut events = match open_on_cpus(attr, tid, &cpu_list) {
            Ok(Some(events)) => events,
            Ok(None) => return Ok(false),
            Err(errno) => return Err(self.open_error(errno)),
        };
        observe(self.on_sample, &events);
        // Its probes after its own events: a thread it creates in between inherits the own
        // events without the probes, shows no FORK record (the events are not enabled yet),
        // and is attached in turn; probes inherited twice are told apart like the events.
        match self.open_probes(tid)? {
            Some(probes) => events.extend(probes),
            None => return Ok(false),
        }
        self.connect(&events)?;
        start(&mut self.coverage, tid, &events.iter().collect::<Vec<_>>())?;
        self.keep(tid, events);
        Ok(true)
    }

    /// Opens `tid`'s probes ([`SamplerConfig::probes`]), one event per probe and CPU in the
    /// rings' order, disabled. `Ok(None)` if the thread exited.
    fn open_probes(&self, tid: u32) -> Result<Option<Vec<PerfEvent>>, SamplerError> {
        let cpu_list: Vec<u32> = self.cpus.iter().map(CpuEvents::cpu).collect();
        let mut events = Vec::with_capacity(self.probe_attrs.len() * cpu_list.len());
        for attr in &self.probe_attrs {
            match open_on_cpus(attr, tid, &cpu_list) {
                Ok(Some(opened)) => events.extend(opened),
                Ok(None) => return Ok(None),
                Err(errno) => return Err(self.open_error(errno)),
            }
        }
        Ok(Some(events))
    }

    /// Redirects `events` (groups of one event per CPU, in the rings' order) into the rings.
    fn connect(&self, events: &[PerfEvent]) -> Result<(), SamplerError> {
        for (cpu, event) in self.cpus.iter().cycle().zip(events) {
            cpu.connect(event)
                .map_err(|e| SamplerError::io("ioctl(PERF_EVENT_IOC_SET_OUTPUT)", e))?;
        }
        Ok(())
    }

    /// Keeps `tid`'s connected `events` (groups of one per CPU) with their rings.
    fn keep(&mut self, tid: u32, events: Vec<PerfEvent>) {
        let cpus = self.cpus.len();
        for (index, event) in events.into_iter().enumerate() {
            self.cpus[index % cpus].keep(tid, event);
        }
    }

    /// Closes the events of attached threads that exited and left no inherited copies: they
    /// can never report again, and would otherwise hold their descriptors until the end.
    fn close_exited_events(&mut self) {
        let exited = self.coverage.take_exited_attached();
        if exited.is_empty() {
            return;
        }
        let mut still_open = HashSet::new();
        for cpu in &mut self.cpus {
            let (closed, open) = cpu.close_hung_up(&exited);
            self.coverage.closed(&closed);
            still_open.extend(open);
        }
        self.coverage.still_open(still_open);
    }

    fn open_error(&self, errno: Errno) -> SamplerError {
        open_error(
            errno,
            self.target.pid(),
            self.coverage.attached_total() + 1,
            self.cpus.len(),
        )
    }

    fn report_small_rings(&self, plan: RingPlan) {
        let smallest = self
            .cpus
            .iter()
            .map(|cpu| cpu.ring().data_size())
            .min()
            .unwrap_or(0);
        if smallest < plan.wanted_bytes {
            tracing::warn!(
                "perf ring buffers are small ({} KiB per CPU instead of {} KiB) under the \
                 locked-memory limit: samples may be lost (the profile counts them as [lost \
                 samples]); raise `ulimit -l` or grant CAP_IPC_LOCK",
                smallest / 1024,
                plan.wanted_bytes / 1024
            );
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        let _ = self.disarm();
        // Stop the kernel writing before the rings are unmapped and the events closed.
        for cpu in &self.cpus {
            cpu.disable();
        }
    }
}

/// One poll(2) on each ring's current poll event of every sampler, and on the target's pidfd
/// (the first sampler's): its exit ends the wait (the caller finds out), as Ctrl-C does.
fn poll_rings(samplers: &mut [&mut Sampler], timeout: Duration) -> Result<Polled, SamplerError> {
    let mut fds = Vec::new();
    let mut owners = Vec::new();
    for (which, sampler) in samplers.iter().enumerate() {
        for (index, cpu) in sampler.cpus.iter().enumerate() {
            if let Some(fd) = cpu.poll_fd() {
                fds.push(fd);
                owners.push((which, index));
            }
        }
    }
    let rings = fds.len();
    let pidfd = samplers
        .first()
        .filter(|sampler| !sampler.exit_seen)
        .and_then(|sampler| sampler.target.pidfd());
    fds.extend(pidfd);
    let pidfds = fds.len();
    fds.extend(wake::fd());
    if fds.is_empty() {
        // Every thread has exited: nothing will wake us, just honour the timeout.
        std::thread::sleep(timeout);
        return Ok(Polled::TimedOut);
    }
    let readiness = poll::poll(&fds, timeout).map_err(|e| SamplerError::io("poll", e))?;
    drop(fds);
    let Some(readiness) = readiness else {
        return Ok(Polled::TimedOut);
    };
    // The agent is stopping: the caller drains and sees its own stop flag.
    if readiness[pidfds..].iter().any(|ready| ready.readable) {
        return Ok(Polled::Readable);
    }
    if readiness[rings..pidfds]
        .iter()
        .any(|ready| ready.readable || ready.hung_up)
    {
        // The pidfd stays readable: from now on the timeout paces the waits.
        for sampler in samplers.iter_mut() {
            sampler.exit_seen = true;
        }
        return Ok(Polled::Readable);
    }
    let mut readable = false;
    for ((which, index), ready) in owners.into_iter().zip(readiness) {
        readable |= ready.readable;
        if ready.hung_up {
            samplers[which].cpus[index].retire_poll_fd();
        }
    }
    Ok(if readable {
        Polled::Readable
    } else {
        Polled::HungUp
    })
}

/// What one poll of the rings found.
enum Polled {
    Readable,
    TimedOut,
    /// Only hang-ups: events whose thread exited, now replaced by other events of their ring.
    HungUp,
}

/// Decides each record's fate: dropped as a duplicate or foreign, counted, or handed out.
struct Dispatch<'s> {
    pid: u32,
    format: SampleFormat,
    /// Threads have events of their own, whose coverage FORK and EXIT records update.
    per_thread: bool,
    coverage: &'s mut Coverage,
    scratch: &'s mut DecodeScratch,
    stats: &'s mut SamplerStats,
}

impl Dispatch<'_> {
    fn record(&mut self, bytes: &[u8], f: &mut dyn FnMut(Record<'_>)) {
        let (record, emitter) = match record::decode(bytes, self.format, self.scratch) {
            Ok(Decoded::Record(record, emitter)) => (record, emitter),
            Ok(Decoded::Throttle) => {
                self.stats.throttled += 1;
                return;
            }
            Ok(Decoded::Other) => return,
            Err(malformed) => {
                tracing::debug!(reason = malformed.0, "skipped a malformed perf record");
                self.stats.malformed += 1;
                return;
            }
        };
        if emitter.is_some_and(|emitter| self.coverage.is_duplicate(emitter)) {
            self.stats.duplicates_dropped += 1;
            return;
        }
        if record_pid(&record).is_some_and(|pid| pid != self.pid) {
            self.stats.foreign_dropped += 1;
            return;
        }
        match record {
            Record::Sample(_) => self.stats.samples += 1,
            Record::Lost { count } => self.stats.lost += count,
            Record::Fork { tid, .. } if self.per_thread => self.coverage.forked(tid),
            Record::Exit { tid, .. } if self.per_thread => self.coverage.exited(tid),
            Record::Fork { .. }
            | Record::Exit { .. }
            | Record::Mmap { .. }
            | Record::Comm { .. }
            | Record::Switch { .. } => {}
        }
        f(record);
    }
}

fn midpoint(a: u64, b: u64) -> u64 {
    a + b.saturating_sub(a) / 2
}

/// The process a record is about (`None`: about the sampler itself).
fn record_pid(record: &Record<'_>) -> Option<u32> {
    match *record {
        Record::Sample(sample) => Some(sample.pid),
        Record::Mmap { pid, .. }
        | Record::Comm { pid, .. }
        | Record::Fork { pid, .. }
        | Record::Exit { pid, .. }
        | Record::Switch { pid, .. } => Some(pid),
        Record::Lost { .. } => None,
    }
}

/// One ring per CPU, owned by the first probe event of that CPU, the other probes of the CPU
/// redirected into it. `per_cpu[i]` holds the events of `cpus[i]`.
fn probe_rings(
    cpus: &[u32],
    per_cpu: Vec<Vec<PerfEvent>>,
    plan: RingPlan,
    page_size: usize,
) -> Result<Vec<CpuEvents>, SamplerError> {
    cpus.iter()
        .zip(per_cpu)
        .map(|(&cpu, events)| {
            let mut events = events.into_iter();
            let owner = events
                .next()
                .ok_or_else(|| SamplerError::InvalidConfig("no uprobe to sample".into()))?;
            let ring = Ring::map_within(owner, plan, page_size)?;
            CpuEvents::per_cpu(cpu, ring, events.collect())
                .map_err(|e| SamplerError::io("ioctl(PERF_EVENT_IOC_SET_OUTPUT)", e))
        })
        .collect()
}

/// One event per CPU scoped to `cgroup`, with the first event spec the kernel accepts.
fn open_cgroup_events(
    config: &SamplerConfig,
    cgroup: &OwnCgroup,
    cpus: &[u32],
) -> Result<(EventSpec, Vec<PerfEvent>), Errno> {
    open_per_cpu_events(config, cpus, |attr, cpu| {
        PerfEvent::open_cgroup(attr, cgroup.dir.as_fd(), cpu)
    })
}

/// One event per CPU, each opened by `open`, with the first event spec the kernel accepts;
/// the last refusal if none is.
fn open_per_cpu_events(
    config: &SamplerConfig,
    cpus: &[u32],
    open: impl Fn(&perf_event_attr, u32) -> Result<PerfEvent, Errno>,
) -> Result<(EventSpec, Vec<PerfEvent>), Errno> {
    let mut last = Errno::ENOENT;
    // Inheritance means nothing to a per-CPU event: one spec per event type.
    for &spec in attr::specs(&config.trigger)
        .iter()
        .filter(|s| s.inherit_thread)
    {
        let attr = attr::per_cpu(config, spec);
        let opened: Result<Vec<PerfEvent>, Errno> =
            cpus.iter().map(|&cpu| open(&attr, cpu)).collect();
        match opened {
            Ok(events) => return Ok((spec, events)),
            Err(errno) => last = errno,
        }
    }
    Err(last)
}

/// The thread whose events create the rings, the event spec they opened with, and the threads
/// left to attach. Tries the event specs in order on the first thread still alive.
type FirstThread<'t> = (EventSpec, u32, Vec<PerfEvent>, &'t [u32]);

fn first_thread<'t>(
    target: &ProcessHandle,
    config: &SamplerConfig,
    tids: &'t [u32],
    cpus: &[u32],
) -> Result<FirstThread<'t>, SamplerError> {
    for (index, &tid) in tids.iter().enumerate() {
        if let Some((spec, events)) = probe(target, config, tid, cpus)? {
            return Ok((spec, tid, events, &tids[index + 1..]));
        }
    }
    Err(SamplerError::NoSuchProcess(target.pid()))
}

/// Opens `tid`'s events with the first spec the kernel accepts. `Ok(None)` if the thread exited.
fn probe(
    target: &ProcessHandle,
    config: &SamplerConfig,
    tid: u32,
    cpus: &[u32],
) -> Result<Option<(EventSpec, Vec<PerfEvent>)>, SamplerError> {
    let mut last = Errno::ENOENT;
    let specs = attr::specs(&config.trigger);
    for (index, &spec) in specs.iter().enumerate() {
        let attr = attr::build(config, spec);
        match open_on_cpus(&attr, tid, cpus) {
            Ok(Some(events)) => return Ok(Some((spec, events))),
            Ok(None) => return Ok(None),
            // No such event here, or an attr feature this kernel lacks: try the next spec.
            Err(errno)
                if unsupported(errno) || (errno == Errno::EINVAL && index + 1 < specs.len()) =>
            {
                tracing::debug!(?spec, %errno, "perf event not available");
                last = errno;
            }
            Err(errno) => return Err(thread_open_error(config, errno, target.pid(), cpus.len())),
        }
    }
    Err(thread_open_error(config, last, target.pid(), cpus.len()))
}

/// Why a thread's events did not open: a refused context-switch event says what it needs.
fn thread_open_error(config: &SamplerConfig, errno: Errno, pid: u32, cpus: usize) -> SamplerError {
    match (&config.trigger, errno) {
        (trigger, Errno::EACCES | Errno::EPERM) if trigger.counts_in_kernel() => {
            SamplerError::kernel_event_permission_denied(pid)
        }
        _ => open_error(errno, pid, 1, cpus),
    }
}

/// Opens one event per CPU for `tid`. `Ok(None)` if the thread exited meanwhile.
fn open_on_cpus(
    attr: &perf_event_attr,
    tid: u32,
    cpus: &[u32],
) -> Result<Option<Vec<PerfEvent>>, Errno> {
    let mut events = Vec::with_capacity(cpus.len());
    for &cpu in cpus {
        match PerfEvent::open(attr, tid, cpu) {
            Ok(event) => events.push(event),
            Err(Errno::ESRCH) => return Ok(None),
            Err(errno) => return Err(errno),
        }
    }
    Ok(Some(events))
}

/// Attaches `program` ([`SamplerConfig::on_sample`]) to sampling `events`. A refusal costs
/// only what the program would have added to the samples: noted, not fatal.
fn observe<'e>(program: Option<i32>, events: impl IntoIterator<Item = &'e PerfEvent>) {
    let Some(program) = program else {
        return;
    };
    for event in events {
        if let Err(errno) = event.set_bpf(program) {
            tracing::debug!(%errno, "the per-sample BPF program was refused");
            return;
        }
    }
}

/// Records the event ids of `tid`, then enables its events (one per CPU, already wired to the
/// rings, so nothing they write is dropped).
fn start(coverage: &mut Coverage, tid: u32, events: &[&PerfEvent]) -> Result<(), SamplerError> {
    let ids = events
        .iter()
        .map(|event| event.id())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SamplerError::io("ioctl(PERF_EVENT_IOC_ID)", e))?;
    let enabled_at = host::monotonic_ns();
    for event in events {
        event
            .enable()
            .map_err(|e| SamplerError::io("ioctl(PERF_EVENT_IOC_ENABLE)", e))?;
    }
    coverage.attached(tid, &ids, enabled_at);
    Ok(())
}

/// The errors that mean "this kind of event does not exist here".
fn unsupported(errno: Errno) -> bool {
    matches!(errno, Errno::ENOENT | Errno::EOPNOTSUPP | Errno::ENODEV)
}

fn open_error(errno: Errno, pid: u32, threads: usize, cpus: usize) -> SamplerError {
    match errno {
        Errno::EACCES | Errno::EPERM => SamplerError::permission_denied(pid),
        Errno::EMFILE | Errno::ENFILE => SamplerError::too_many_files(threads, cpus),
        errno if unsupported(errno) => SamplerError::EventNotSupported { errno },
        errno => SamplerError::io("perf_event_open", errno),
    }
}

/// The kernel refuses frequencies above perf_event_max_sample_rate with a bare EINVAL.
fn check_frequency(frequency: u64) -> Result<(), SamplerError> {
    match host::kernel_sysctl("perf_event_max_sample_rate").and_then(|max| u64::try_from(max).ok())
    {
        Some(max) if frequency > max => Err(SamplerError::FrequencyTooHigh {
            requested: frequency,
            max,
        }),
        _ => Ok(()),
    }
}

fn page_size() -> usize {
    usize::try_from(procfs::page_size()).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_threads::Spinner;
    use std::sync::mpsc;

    /// CPU time of a thread of this process, from its schedstat.
    fn cpu_time(tid: u32) -> Duration {
        let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).unwrap();
        Duration::from_nanos(text.split_whitespace().next().unwrap().parse().unwrap())
    }

    #[test]
    fn a_thread_attached_twice_is_sampled_once() {
        const FREQUENCY: u64 = 200;
        let config = SamplerConfig {
            frequency: FREQUENCY,
            ..SamplerConfig::new(std::process::id())
        };
        let mut sampler = Sampler::open(&config).unwrap();
        // Created by a sampled thread, the spinner inherits that thread's events...
        let spinner = Spinner::start();
        let tid = spinner.tid;
        // ...and attaching it as well, as a refresh racing with its FORK record would, gives it
        // a second set of events.
        let cpu_before = cpu_time(tid);
        assert!(sampler.attach_thread(tid).unwrap());
        let mut samples = 0u64;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(2) {
            sampler.wait(Duration::from_millis(100)).unwrap();
            sampler.drain(&mut |record| {
                if matches!(record, Record::Sample(sample) if sample.tid == tid) {
                    samples += 1;
                }
            });
        }
        let cpu = cpu_time(tid) - cpu_before;
        drop(spinner);
        let expected = FREQUENCY as f64 * cpu.as_secs_f64();
        let ratio = samples as f64 / expected;
        assert!(
            (0.5..=1.3).contains(&ratio),
            "{samples} samples, {expected:.0} expected for {cpu:?} of CPU"
        );
        assert!(sampler.stats().duplicates_dropped > 0);
    }

    #[test]
    fn events_of_attached_threads_are_closed_once_they_exit() {
        let config = SamplerConfig {
            frequency: 100,
            ..SamplerConfig::new(std::process::id())
        };
        let mut sampler = Sampler::open(&config).unwrap();
        let open = |sampler: &Sampler| {
            sampler
                .cpus
                .iter()
                .map(CpuEvents::thread_events)
                .sum::<usize>()
        };
        let before = open(&sampler);
        // Threads attached although they inherited events already, as a rescan that saw them
        // before their FORK record does: each gets one event per CPU of its own.
        const THREADS: usize = 8;
        for _ in 0..THREADS {
            let (send_tid, receive_tid) = mpsc::channel();
            let (send_go, receive_go) = mpsc::channel::<()>();
            let thread = std::thread::spawn(move || {
                send_tid
                    .send(nix::unistd::gettid().as_raw() as u32)
                    .unwrap();
                receive_go.recv().unwrap();
            });
            let tid = receive_tid.recv().unwrap();
            assert!(sampler.attach_thread(tid).unwrap());
            send_go.send(()).unwrap();
            thread.join().unwrap();
        }
        assert!(open(&sampler) >= before + THREADS * sampler.cpus.len());
        // Their EXIT records read, a rescan closes their events: nothing can write through
        // them any more.
        let started = Instant::now();
        while open(&sampler) > before {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{} thread events still open, {before} before the threads",
                open(&sampler)
            );
            sampler.wait(Duration::from_millis(20)).unwrap();
            sampler.drain(&mut |_| {});
            sampler.refresh_threads().unwrap();
        }
    }

    #[test]
    fn sampler_can_move_to_another_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<Sampler>();
    }

    #[test]
    fn open_errors_map_to_actionable_errors() {
        assert!(matches!(
            open_error(Errno::EACCES, 1, 1, 2),
            SamplerError::PermissionDenied { pid: 1, .. }
        ));
        assert!(matches!(
            open_error(Errno::EMFILE, 1, 3, 2),
            SamplerError::TooManyFiles {
                threads: 3,
                cpus: 2,
                ..
            }
        ));
        assert!(matches!(
            open_error(Errno::ENODEV, 1, 1, 2),
            SamplerError::EventNotSupported {
                errno: Errno::ENODEV
            }
        ));
        assert!(matches!(
            open_error(Errno::EINVAL, 1, 1, 2),
            SamplerError::Io {
                syscall: "perf_event_open",
                ..
            }
        ));
    }

    #[test]
    fn frequencies_above_the_kernel_limit_are_refused() {
        let Some(max) = host::kernel_sysctl("perf_event_max_sample_rate") else {
            return;
        };
        let max = u64::try_from(max).unwrap();
        assert!(check_frequency(max).is_ok());
        assert!(matches!(
            check_frequency(max + 1),
            Err(SamplerError::FrequencyTooHigh { .. })
        ));
    }
}
