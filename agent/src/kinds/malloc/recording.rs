//! Recording allocations: the sampler's own events tick through the target's user time and
//! carry its side-band records; probe windows open the allocator's probes on every thread
//! now and then (all along with `--exact`); hits go to the [`Ledger`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::allocators::{find_allocators, AllocFunction};
use super::functions::Call;
use super::ledger::{Function, Hit, Ledger};
use super::pace::Pace;
use super::pace::{Slowing, MIN_OWN_SHARE};
use super::schedule::{Schedule, COST_BUDGET, COST_PER_HIT};
use crate::probes::keeper::Keeper;
use crate::probes::tracefs::{Defined, ProbeGroup};
use crate::profile::Meta;
use crate::recording::{
    percent, provenance, Event, Finished, Pipeline, Pump, Recording, Request, Window,
};
use crate::sampler::{Record, Sample, Sampler, SamplerConfig, Trigger, WindowEvent};
use crate::unwind::{ModuleSet, StackUnwinder};

/// User stack copied with each allocation: deep enough for most allocation stacks, small
/// enough that a window's hits fit the rings.
const ENTRY_STACK_BYTES: u32 = 16 << 10;
/// Stack copied when posix_memalign returns: where the caller's pointer variable usually is.
const MEMALIGN_RETURN_STACK_BYTES: u32 = 1 << 10;
/// User time between two ticks of the sampler's own events (which are there for their
/// side-band records).
const SIDE_BAND_TICK_NS: u64 = 1_000_000_000;
/// The smallest copy the kernel accepts, for events whose stack is not needed.
const NO_STACK: u32 = 8;

/// Which profile the recording is for: the same data, another default sample type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Allocs,
    Heap,
}

/// What one event of a window is.
#[derive(Debug, Clone)]
enum Role {
    Enter { function: usize, probe: Defined },
    Return { function: usize, probe: Defined },
    Free { probe: Defined },
}

pub struct MallocRecording {
    pid: u32,
    view: View,
    exact: bool,
    functions: Vec<AllocFunction>,
    roles: Vec<Role>,
    events: Vec<WindowEvent>,
    /// Event id → (window number, index in `roles`).
    ids: HashMap<u64, (u32, usize)>,
    /// `None` once stopped.
    pump: Option<Pump>,
    pipeline: Pipeline<Ledger>,
    schedule: Schedule,
    state: WindowState,
    /// Declared after the pump: the probes' events close first, then the keeper's, then the
    /// definitions go.
    keeper: Option<Keeper>,
    _group: ProbeGroup,
    armed_time: Duration,
    windows: u32,
    /// Allocation entries and lost records read since the window opened.
    hits: Tally,
    pace: Pace,
}

/// Threads whose entries a window counts one by one, at most.
const MAX_TALLIED_THREADS: usize = 4096;

/// What the drain counted, for the schedule.
#[derive(Debug, Default)]
struct Tally {
    entries: u64,
    /// Calls (allocations and frees) per thread.
    by_tid: HashMap<u32, u64>,
    /// Every record of the window's probes.
    records: u64,
    lost: u64,
}

impl Tally {
    /// A call (allocation or free) seen from `tid`.
    fn count_call(&mut self, tid: u32) {
        if self.by_tid.len() < MAX_TALLIED_THREADS || self.by_tid.contains_key(&tid) {
            *self.by_tid.entry(tid).or_default() += 1;
        }
    }

    /// What each record read stands for, some having been lost.
    fn scale(&self) -> f64 {
        if self.records == 0 {
            1.0
        } else {
            (self.records + self.lost) as f64 / self.records as f64
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum WindowState {
    /// Open since (CLOCK_MONOTONIC ns, when sampling started), until.
    Open {
        since: u64,
        until: Instant,
    },
    Closed {
        until: Instant,
    },
}

pub fn open(request: &Request<'_>, view: View) -> Result<MallocRecording> {
    let pid = request.pid;
    if request.program.is_some() {
        bail!("allocation profiles attach to a running process: use --pid");
    }
    let functions =
        find_allocators(pid).with_context(|| format!("cannot read the mappings of PID {pid}"))?;
    if !functions.iter().any(|f| f.name == "malloc") {
        bail!(
            "PID {pid} maps no allocator that defines malloc (Go programs allocate with their \
             own runtime: try --profile growth)"
        );
    }
    let mut group = ProbeGroup::new()?;
    let mut roles = Vec::new();
    let mut events = Vec::new();
    for (index, function) in functions.iter().enumerate() {
        let path = function.probe_path();
        let entry = group.define(&path, function.offset, false)?;
        let (role, stack) = match function.call {
            Call::Free => (Role::Free { probe: entry }, NO_STACK),
            _ => (
                Role::Enter {
                    function: index,
                    probe: entry,
                },
                ENTRY_STACK_BYTES,
            ),
        };
        events.push(tracepoint(&role, stack));
        roles.push(role);
        if function.call.allocates() {
            let probe = group.define(&path, function.offset, true)?;
            let stack = if function.call == Call::PosixMemalign {
                MEMALIGN_RETURN_STACK_BYTES
            } else {
                NO_STACK
            };
            let role = Role::Return {
                function: index,
                probe,
            };
            events.push(tracepoint(&role, stack));
            roles.push(role);
        }
    }
    // Frees start first and stop last, returns next: an allocation seen has its return and
    // its free seen too, while the window is open (else blocks freed as the window closes
    // would look live).
    let mut order: Vec<usize> = (0..roles.len()).collect();
    order.sort_by_key(|&i| match roles[i] {
        Role::Free { .. } => 0,
        Role::Return { .. } => 1,
        Role::Enter { .. } => 2,
    });
    let roles: Vec<Role> = order.iter().map(|&i| roles[i].clone()).collect();
    let events: Vec<WindowEvent> = order.iter().map(|&i| events[i]).collect();
    let ids: Vec<u64> = roles.iter().map(probe_id).collect();
    let keeper = Keeper::start(&ids)?;
    // The sampler's own events carry the side-band records (mappings, thread names) and own
    // the rings the windows write into; their ticks are not needed, so they are rare.
    let config = SamplerConfig {
        trigger: Trigger::UserTime {
            period_ns: SIDE_BAND_TICK_NS,
        },
        stack_bytes: NO_STACK,
        ..SamplerConfig::new(pid)
    };
    let sampler = Sampler::open(&config)?;
    let modules = ModuleSet::load(pid, Arc::clone(request.symbolizer))
        .with_context(|| format!("cannot read the mappings of PID {pid}"))?;
    let ledger_functions = functions
        .iter()
        .map(|f| Function {
            call: f.call,
            code: f.code.clone(),
        })
        .collect();
    // Windows must close on time: the drain never waits for the unwinder.
    let pipeline = Pipeline::start(
        pid,
        StackUnwinder::new(modules),
        Ledger::new(ledger_functions, request.exact),
    )
    .context("cannot start the unwinder thread")?
    .patient();
    let now = Instant::now();
    let mut recording = MallocRecording {
        pid,
        view,
        exact: request.exact,
        functions,
        roles,
        events,
        ids: HashMap::new(),
        pump: Some(Pump::new(sampler)),
        pipeline,
        schedule: Schedule::new(request.max_overhead.unwrap_or(COST_BUDGET)),
        state: WindowState::Closed { until: now },
        keeper: Some(keeper),
        _group: group,
        armed_time: Duration::ZERO,
        windows: 0,
        hits: Tally::default(),
        pace: Pace::default(),
    };
    if request.exact {
        recording.open_window(Duration::from_secs(u64::from(u32::MAX)))?;
    }
    Ok(recording)
}

fn tracepoint(role: &Role, stack_bytes: u32) -> WindowEvent {
    WindowEvent::Tracepoint {
        id: probe_id(role),
        stack_bytes,
    }
}

fn probe_id(role: &Role) -> u64 {
    match role {
        Role::Enter { probe, .. } | Role::Return { probe, .. } | Role::Free { probe } => probe.id,
    }
}

impl MallocRecording {
    /// Opens the probes on every thread for `length` from when they are all open (opening
    /// them takes a few milliseconds).
    fn open_window(&mut self, length: Duration) -> Result<()> {
        let Some(pump) = &mut self.pump else {
            return Ok(());
        };
        let sampler = pump.sampler_mut();
        let tids = sampler.tasks();
        let armed = sampler.arm(&self.events, &tids)?;
        self.windows += 1;
        for (&id, &index) in &armed.ids {
            self.ids.insert(id, (self.windows, index));
        }
        // What the drain counts from here on is this window's (the last one's was read when
        // it closed).
        self.hits = Tally::default();
        self.pace.opened(self.pid, &armed.tids, armed.at);
        self.state = WindowState::Open {
            since: armed.at,
            until: Instant::now() + length,
        };
        Ok(())
    }

    fn close_window(&mut self) {
        let (Some(pump), WindowState::Open { since, .. }) = (&mut self.pump, self.state) else {
            return;
        };
        let stopped = pump.sampler_mut().disarm();
        self.pace.closed(self.pid, stopped);
        // Every record of the window is in the rings now: read them, so that the next
        // window is planned from all of this one's.
        let (ids, roles, pipeline, hits) = (&self.ids, &self.roles, &self.pipeline, &mut self.hits);
        pump.drain(&mut |record| forward(record, ids, roles, pipeline, hits));
        pipeline.flush();
        let open = Duration::from_nanos(stopped.saturating_sub(since));
        self.armed_time += open;
        let tally = std::mem::take(&mut self.hits);
        pipeline.send(Event::Note(Hit::WindowEnd {
            window: self.windows,
            scale: tally.scale(),
        }));
        pipeline.flush();
        self.pace.count_calls(&tally.by_tid, tally.scale());
        if let Some(per_call) = self.pace.cost_per_call(None) {
            self.schedule.calibrated(per_call * 2);
        }
        self.schedule.observed(tally.entries, tally.lost, open);
        let next = self.schedule.window();
        tracing::debug!(
            ?open,
            entries = tally.entries,
            lost = tally.lost,
            ?next,
            duty = self.schedule.duty(),
            cost_per_call = ?self.pace.cost_per_call(None),
            "probe window closed"
        );
        self.state = WindowState::Closed {
            until: Instant::now() + self.schedule.gap(next),
        };
    }

    /// Opens or closes the window if it is time; the time until the next change.
    fn step_windows(&mut self) -> Duration {
        let now = Instant::now();
        match self.state {
            WindowState::Open { until, .. } if now >= until => self.close_window(),
            WindowState::Closed { until } if now >= until => {
                let window = self.schedule.window();
                if let Err(error) = self.open_window(window) {
                    tracing::warn!("cannot open the allocation probes: {error:#}");
                    self.state = WindowState::Closed {
                        until: now + Duration::from_secs(1),
                    };
                }
            }
            _ => {}
        }
        match self.state {
            WindowState::Open { until, .. } | WindowState::Closed { until } => {
                until.saturating_duration_since(Instant::now())
            }
        }
    }

    /// The share of the window the probes were open.
    fn wall_duty(&self, window: Duration) -> f64 {
        let elapsed = window.as_secs_f64();
        if elapsed <= 0.0 {
            1.0
        } else {
            (self.armed_time.as_secs_f64() / elapsed).min(1.0)
        }
    }
}

impl Recording for MallocRecording {
    fn label(&self) -> String {
        let mode = if self.exact { "every call" } else { "sampled" };
        format!("uprobes on malloc ({mode})")
    }

    fn pump(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let next_change = if self.exact {
                timeout
            } else {
                self.step_windows()
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            let Some(pump) = &mut self.pump else {
                return;
            };
            // An open window closes on time, whatever the rings still hold: the drain stops at
            // its end, and never waits for the unwinder (the rings absorb the rest, and the
            // kernel counts what they cannot).
            let closing = match self.state {
                WindowState::Open { until, .. } if !self.exact => Some(until),
                _ => None,
            };
            let (ids, roles, pipeline, hits) =
                (&self.ids, &self.roles, &self.pipeline, &mut self.hits);
            let wait = remaining.min(next_change);
            if closing.is_some() && !pipeline.has_room() {
                std::thread::sleep(wait.min(Duration::from_millis(1)));
            } else {
                let mut go_on =
                    || closing.is_none_or(|until| Instant::now() < until && pipeline.has_room());
                pump.pump_while(wait, &mut go_on, &mut |record| {
                    forward(record, ids, roles, pipeline, hits);
                });
            }
            pipeline.flush_if_room();
            // Stopping: waits no longer wait, and the caller has a flag to see.
            if Instant::now() >= deadline || crate::sampler::is_stopping() {
                return;
            }
        }
    }

    fn figures(&self) -> String {
        let counters = self.pipeline.counters();
        format!(
            "{} allocation samples, {} windows, {} lost",
            counters.samples.load(std::sync::atomic::Ordering::Relaxed),
            self.windows,
            counters.lost.load(std::sync::atomic::Ordering::Relaxed)
        )
    }

    fn stop(&mut self) {
        if let Some(mut pump) = self.pump.take() {
            let stopped = pump.sampler_mut().disarm();
            if let WindowState::Open { since, .. } = self.state {
                self.armed_time += Duration::from_nanos(stopped.saturating_sub(since));
                self.pace.closed(self.pid, stopped);
            }
            let (ids, roles, pipeline, hits) =
                (&self.ids, &self.roles, &self.pipeline, &mut self.hits);
            pump.drain(&mut |record| {
                forward(record, ids, roles, pipeline, hits);
            });
            pipeline.send(Event::Note(Hit::WindowEnd {
                window: self.windows,
                scale: hits.scale(),
            }));
            self.pace.count_calls(&hits.by_tid, hits.scale());
        }
        // The probes are out of the target: the keeper's hold can go.
        self.keeper = None;
    }

    fn finish(self: Box<Self>, window: &Window) -> Result<Finished> {
        let wall_duty = if self.exact {
            1.0
        } else {
            self.wall_duty(window.duration)
        };
        let (mut ledger, unwinder) = self.pipeline.finish()?;
        let coverage = ledger.coverage(wall_duty);
        let counts = ledger.counts;
        // Threads the probes slowed: scaled up for it (the ledger takes a share no lower than
        // MIN_OWN_SHARE), and called lower bounds where they ran flat out.
        let slowing = if self.exact {
            HashMap::new()
        } else {
            self.pace.slowing(COST_PER_HIT / 2)
        };
        let own: HashMap<u32, f64> = slowing.iter().map(|(&tid, s)| (tid, s.own)).collect();
        let flat_out: Vec<u32> = slowing
            .iter()
            .filter(|(_, s)| s.own < MIN_OWN_SHARE)
            .map(|(&tid, _)| tid)
            .collect();
        let paced = ledger.allocations_of(&flat_out);
        let paced_note = (paced > 0).then(|| {
            format!(
                "{:.0}% of the allocations seen came from threads that ran flat out inside the \
                 windows (the probes set their pace): their figures are lower bounds — use \
                 --exact, or the growth profile, for them",
                percent(paced, counts.allocations)
            )
        });
        let measured = self.pace.cost_per_call(None).map(|per_call| per_call * 2);
        let slowed_note = slowed_note(&slowing, measured);
        // Threads whose traps took a good share of their window time, not flat out, and not
        // shown to keep their pace: their own code may have slowed more than their CPU time
        // shows (traps also slow the code around them), which no correction here can see.
        let trapped: Vec<(u32, f64)> = slowing
            .iter()
            .filter(|(_, s)| {
                s.traps >= NOTABLE_TRAP_SHARE
                    && s.own >= MIN_OWN_SHARE
                    && (s.own < KEPT_PACE || !s.measured || s.saturated)
            })
            .map(|(&tid, s)| (tid, s.traps))
            .collect();
        let trapped_note = trapped_note(&trapped, |tids| {
            percent(ledger.allocations_of(tids), counts.allocations)
        });
        let mut allocators: Vec<&str> = self.functions.iter().map(|f| f.allocator).collect();
        allocators.dedup();
        let probed: Vec<String> = self
            .functions
            .iter()
            .map(|f| {
                let how = if f.emulated { "" } else { " (single-stepped)" };
                format!("{f}{how}")
            })
            .collect();
        let mode = if self.exact {
            format!(
                "mode: exact, every call traced{}",
                if counts.lost > 0 {
                    " — but records were lost (rings full): the figures are scaled up for \
                     them, an estimate"
                } else {
                    ""
                }
            )
        } else {
            format!(
                "mode: sampled, {} probe windows at random moments, open {:.3}% of the time; \
                 figures scaled by its inverse (an estimate: see rprof-agent's \
                 docs/BENCHMARKS.md for its measured error); an allocation cost the target \
                 {} inside windows",
                self.windows,
                coverage * 100.0,
                match measured {
                    Some(cost) => format!(
                        "at least {:.1} µs (measured on its threads with idle time)",
                        cost.as_secs_f64() * 1e6
                    ),
                    None => format!(
                        "~{} µs (not measured: the model's)",
                        COST_PER_HIT.as_micros()
                    ),
                }
            )
        };
        let comments = vec![
            provenance(window),
            format!("allocator: {}", allocators.join(", ")),
            format!("probed: {}", probed.join(", ")),
            mode,
            format!(
                "allocations seen: {}, frees seen: {}, nested calls: {}, unpaired: {}, lost \
                 records: {}, not followed to their free: {}",
                counts.allocations,
                counts.frees,
                counts.nested,
                counts.unpaired,
                counts.lost,
                counts.not_followed
            ),
            "inuse: allocations made during the recording and live at its end".to_owned(),
        ];
        let comments = comments
            .into_iter()
            .chain(slowed_note)
            .chain(trapped_note.clone())
            .chain(paced_note.clone())
            .collect();
        let meta = Meta {
            start: window.start,
            duration: window.duration,
            comments,
        };
        let default = match self.view {
            View::Allocs => "alloc_space",
            View::Heap => "inuse_space",
        };
        let profile = ledger.build(unwinder.modules(), &meta, (wall_duty, &own), default);
        let mut summary = format!(
            "{} allocations seen ({}) over {:.1}s{}, coverage {:.2}%, {} lost records, {} \
             allocation stacks",
            counts.allocations,
            if self.exact { "every call" } else { "sampled" },
            window.duration.as_secs_f64(),
            window.outcome.note(),
            coverage * 100.0,
            counts.lost,
            ledger.sites(),
        );
        if let Some(note) = trapped_note {
            summary.push_str("; warning: ");
            summary.push_str(&note);
        }
        if let Some(note) = paced_note {
            summary.push_str("; warning: ");
            summary.push_str(&note);
        }
        let name = match self.view {
            View::Allocs => "allocs",
            View::Heap => "heap",
        };
        Ok(Finished {
            profile,
            summary,
            title: format!("rprof-agent: PID {}, {name}", window.pid),
            has_samples: counts.allocations > 0,
        })
    }
}

/// The profile's comment on the threads whose figures were scaled up for their traps.
/// The share of a thread's window time its traps may take before its figures are called
/// possibly low, and the own share above which a thread kept its pace.
const NOTABLE_TRAP_SHARE: f64 = 0.1;
const KEPT_PACE: f64 = 0.995;

/// The warning for threads whose traps took [`NOTABLE_TRAP_SHARE`] or more of their window
/// time; `share_of_seen` gives the percentage of the allocations seen that came from them.
fn trapped_note(trapped: &[(u32, f64)], share_of_seen: impl Fn(&[u32]) -> f64) -> Option<String> {
    let least = trapped.iter().map(|&(_, s)| s).reduce(f64::min)? * 100.0;
    let most = trapped.iter().map(|&(_, s)| s).reduce(f64::max)? * 100.0;
    let tids: Vec<u32> = trapped.iter().map(|&(tid, _)| tid).collect();
    let took = if most - least < 1.0 {
        format!("{most:.0}%")
    } else {
        format!("{least:.0}–{most:.0}%")
    };
    Some(format!(
        "{:.0}% of the allocations seen came from threads whose traps took {took} of their time \
         inside windows: their work there may have slowed more than their CPU time shows \
         (traps also slow the code around them; not so if requests set their pace), so their \
         figures may be low — compare with --exact, or the growth profile",
        share_of_seen(&tids)
    ))
}

/// The profile's comment on the threads whose figures were scaled up for their traps;
/// `measured` is what an allocation was measured to cost, if it was.
fn slowed_note(slowing: &HashMap<u32, Slowing>, measured: Option<Duration>) -> Option<String> {
    // Those that kept their pace were not scaled; flat-out ones have their note.
    let slowed: Vec<f64> = slowing
        .values()
        .filter(|s| s.measured && (MIN_OWN_SHARE..KEPT_PACE).contains(&s.own))
        .map(|s| s.own)
        .collect();
    let least = slowed.iter().copied().reduce(f64::min)? * 100.0;
    let most = slowed.iter().copied().reduce(f64::max)? * 100.0;
    let (threads, did) = match slowed.len() {
        1 => ("1 thread".to_owned(), format!("did {least:.0}% of its")),
        n => (
            format!("{n} threads"),
            format!("did {least:.0}–{most:.0}% of their"),
        ),
    };
    let cost = match measured {
        Some(cost) => format!(
            "at least {:.1} µs per allocation with its free, measured on the threads with idle \
             time",
            cost.as_secs_f64() * 1e6
        ),
        None => format!(
            "{} µs per allocation with its free, the model's: no thread of the target had the \
             idle time to measure it on",
            COST_PER_HIT.as_micros()
        ),
    };
    Some(format!(
        "{threads} slowed by the probes {did} usual work per second inside windows (CPU time \
         less its traps': {cost}): figures scaled up for it",
    ))
}

/// Hands a record to the ledger, counting entries and losses in `tally`.
fn forward(
    record: Record<'_>,
    ids: &HashMap<u64, (u32, usize)>,
    roles: &[Role],
    pipeline: &Pipeline<Ledger>,
    tally: &mut Tally,
) {
    let Record::Sample(sample) = record else {
        if let Record::Lost { count } = record {
            tally.lost = tally.lost.saturating_add(count);
        }
        Event::side_band(&record, |event| pipeline.send(event));
        return;
    };
    let Some(&(window, index)) = ids.get(&sample.id) else {
        return; // A tick of the sampler's own events.
    };
    tally.records += 1;
    match roles.get(index) {
        Some(Role::Enter { function, probe }) => {
            let args = [0, 1, 2].map(|i| probe.value(sample.raw, i).unwrap_or(0));
            let hit = Hit::Enter {
                function: *function,
                args,
                window,
            };
            pipeline.send(Event::sample(&sample, hit));
            tally.entries += 1;
            tally.count_call(sample.tid);
        }
        Some(Role::Return { function, probe }) => {
            pipeline.send(Event::Note(returned(&sample, *function, probe, window)));
        }
        Some(Role::Free { probe }) => {
            let ptr = probe.value(sample.raw, 0).unwrap_or(0);
            let tid = sample.tid;
            pipeline.send(Event::Note(Hit::Free { ptr, window, tid }));
            tally.count_call(tid);
        }
        None => {}
    }
}

fn returned(sample: &Sample<'_>, function: usize, probe: &Defined, window: u32) -> Hit {
    let stack =
        (sample.stack.len() > NO_STACK as usize).then(|| (sample.sp, sample.stack.to_vec()));
    Hit::Return {
        tid: sample.tid,
        function,
        value: probe.value(sample.raw, 0).unwrap_or(0),
        stack,
        window,
    }
}
