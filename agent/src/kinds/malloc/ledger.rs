//! The allocation ledger: the unwinder stage's aggregate for allocs and heap. It pairs each
//! allocation's entry (its stack and size) with its return (the address), follows addresses
//! to their free, and turns all of it into Go's four heap values per allocation stack.
//!
//! # The estimator (sampled mode)
//!
//! Windows catch every call made while they are open, and open at random moments for a share
//! `c` of the recording (the duty, measured from when the probes were enabled to when they
//! were disabled). A thread that keeps its pace inside windows has a share `p = c` of its calls
//! seen; one that the traps slowed, doing a share `own` of its usual work per second inside
//! windows (`pace.rs`), has `p = c·own / (1 − c + c·own)` seen (`own` is taken no lower than
//! [`MIN_OWN_SHARE`]; below it the figures are lower bounds). Each allocation seen from a
//! thread stands for `1/p` of its kind: alloc_objects and alloc_space are the sums scaled so
//! (Horvitz-Thompson).
//!
//! inuse counts the allocations made during the recording still live at its end. An
//! allocation seen in a window and not freed in it may be freed later, when no window is
//! open: its free is then seen with probability `q`, the freeing thread's `p`. Counting it as
//! live, less `1/q` for a free seen in a later window, is unbiased: `1 − X/q` has expectation 0
//! for a freed allocation and is 1 for a live one. Per stack, a negative estimate (possible
//! when few of a stack's frees were seen) is reported as 0. With `--exact` every call is seen:
//! `p = 1` and the figures are counts.

use std::collections::HashMap;
use std::ops::Range;

use rprof_proto::Profile;

use super::functions::Call;
use super::pace::MIN_OWN_SHARE;
use crate::profile::{Meta, PseudoFrame, Shape, StackAggregate, StackSample};
use crate::recording::{Aggregate, Unwound};
use crate::unwind::{ModuleSet, UnwindEnd};

/// Live allocations followed at most (about 64 MiB of ledger): past it, new ones are counted
/// in alloc_* but not followed to their free.
const MAX_LIVE: usize = 1 << 20;
/// (site, allocating thread, freeing thread) triples followed apart at most.
const MAX_FREED_LATER: usize = 1 << 16;
/// Calls in flight per thread at most (an allocator calling itself, signal handlers).
const MAX_PENDING: usize = 16;

/// What the drain attaches to each event.
pub enum Hit {
    /// An allocation function was entered (a sample, with the stack): its arguments.
    Enter {
        function: usize,
        args: [u64; 3],
        window: u32,
    },
    /// An allocation function returned `value`. For posix_memalign, the returning thread's
    /// stack top (`sp` and bytes), where the pointer it stored usually is.
    Return {
        tid: u32,
        function: usize,
        value: u64,
        stack: Option<(u64, Vec<u8>)>,
        window: u32,
    },
    /// Memory at `ptr` was freed.
    Free { ptr: u64, window: u32, tid: u32 },
    /// Window `window` closed and all its records were read; the kernel dropped some (rings
    /// full): each record read stands for `scale` records.
    WindowEnd { window: u32, scale: f64 },
}

/// One probed function, as the ledger needs it.
#[derive(Debug, Clone)]
pub struct Function {
    pub call: Call,
    /// Its code in the target: hits whose caller lies in another probed function are nested.
    pub code: Option<Range<u64>>,
}

/// Allocation stacks and what they allocated.
pub struct Ledger {
    functions: Vec<Function>,
    exact: bool,
    sites: HashMap<Site, usize>,
    figures: Vec<HashMap<u32, Raw>>,
    /// Allocations of the open window by (site, thread): folded into `figures`, scaled, when
    /// it ends.
    current: HashMap<(usize, u32), (u64, u64)>,
    /// Windows whose records were lost in part, and the scale of each.
    scales: HashMap<u32, f64>,
    /// Per (site, allocating thread, freeing thread): blocks seen allocated whose free was
    /// seen in a later window, objects and bytes (scaled for records lost).
    freed_later: HashMap<(usize, u32, u32), (f64, f64)>,
    /// Allocations seen per thread.
    seen: HashMap<u32, u64>,
    pending: HashMap<u32, Vec<Pending>>,
    live: HashMap<u64, Live>,
    stacks: StackAggregate,
    pub counts: Counts,
}

/// What the summary and comments say.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub allocations: u64,
    pub frees: u64,
    pub nested: u64,
    pub unpaired: u64,
    pub lost: u64,
    pub not_followed: u64,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Site {
    user: Box<[u64]>,
    truncated: bool,
}

/// What one thread allocated at one site, as seen (scaled for records lost).
#[derive(Debug, Default, Clone, Copy)]
struct Raw {
    objects: f64,
    bytes: f64,
}

struct Pending {
    function: usize,
    /// None for a nested call (counted by the call it is nested in).
    site: Option<usize>,
    tid: u32,
    size: u64,
    memptr: u64,
    window: u32,
}

struct Live {
    site: usize,
    tid: u32,
    size: u64,
    window: u32,
}

impl Ledger {
    pub fn new(functions: Vec<Function>, exact: bool) -> Ledger {
        Ledger {
            functions,
            exact,
            sites: HashMap::new(),
            figures: Vec::new(),
            current: HashMap::new(),
            scales: HashMap::new(),
            freed_later: HashMap::new(),
            seen: HashMap::new(),
            pending: HashMap::new(),
            live: HashMap::new(),
            stacks: StackAggregate::new(false),
            counts: Counts::default(),
        }
    }

    fn enter(&mut self, sample: &Unwound<'_>, function: usize, args: [u64; 3], window: u32) {
        let Some(call) = self.functions.get(function).map(|f| f.call) else {
            return;
        };
        let nested = sample.user.get(1).is_some_and(|&caller| {
            self.functions
                .iter()
                .any(|f| f.code.as_ref().is_some_and(|code| code.contains(&caller)))
        });
        let site = if nested {
            self.counts.nested += 1;
            None
        } else {
            Some(self.site(sample))
        };
        let size = call.size(args);
        if let Some(site) = site {
            // Counted when entered: a return lost with a full ring loses only the address.
            self.counts.allocations += 1;
            *self.seen.entry(sample.tid).or_default() += 1;
            let counted = self.current.entry((site, sample.tid)).or_default();
            counted.0 += 1;
            counted.1 = counted.1.saturating_add(size);
        }
        let pending = self.pending.entry(sample.tid).or_default();
        if pending.len() >= MAX_PENDING {
            pending.remove(0);
        }
        pending.push(Pending {
            function,
            site,
            tid: sample.tid,
            size,
            memptr: args[0],
            window,
        });
    }

    fn site(&mut self, sample: &Unwound<'_>) -> usize {
        let key = Site {
            user: sample.user.into(),
            truncated: sample.end == UnwindEnd::Truncated,
        };
        let next = self.sites.len();
        let index = *self.sites.entry(key).or_insert(next);
        if index == self.figures.len() {
            self.figures.push(HashMap::new());
        }
        index
    }

    fn returned(&mut self, hit: Hit) {
        let Hit::Return {
            tid,
            function,
            value,
            stack,
            window,
        } = hit
        else {
            return;
        };
        let Some(pending) = self.pending.get_mut(&tid) else {
            self.counts.unpaired += 1;
            return;
        };
        // The innermost call of this function; calls above it never returned (longjmp).
        let Some(at) = pending.iter().rposition(|p| p.function == function) else {
            self.counts.unpaired += 1;
            return;
        };
        let call = pending.swap_remove(at);
        pending.truncate(at);
        if pending.is_empty() {
            self.pending.remove(&tid);
        }
        let Some(site) = call.site else {
            return;
        };
        if call.window != window {
            // Entered in one window, returned in another: the entry's window closed mid-call.
            self.counts.unpaired += 1;
            return;
        }
        let kind = self.functions[function].call;
        let address = match kind {
            Call::PosixMemalign if value == 0 => stored_pointer(call.memptr, stack.as_ref()),
            Call::PosixMemalign => None,
            _ => Some(value).filter(|&v| v != 0),
        };
        if kind == Call::Realloc {
            // The old block is gone (or moved): a free, then an allocation of the new size.
            // realloc's first argument, kept in `memptr` like every call's.
            let old = Some(call.memptr).filter(|&old| old != 0 && address.is_some());
            if let Some(old) = old {
                self.freed(old, window, call.tid);
            }
        }
        let Some(address) = address else {
            return; // Failed allocation: nothing live.
        };
        if self.live.len() >= MAX_LIVE && !self.live.contains_key(&address) {
            self.counts.not_followed += 1;
            return;
        }
        // An address handed out again was freed unseen: its old entry is known dead.
        self.live.insert(
            address,
            Live {
                site,
                tid: call.tid,
                size: call.size,
                window,
            },
        );
    }

    fn freed(&mut self, ptr: u64, window: u32, tid: u32) {
        if ptr == 0 {
            return;
        }
        self.counts.frees += 1;
        let Some(live) = self.live.remove(&ptr) else {
            return;
        };
        if live.window != window {
            let scale = self.scale(live.window);
            // Bounded: past it, frees count as if by a thread that kept its pace (tid 0).
            let mut key = (live.site, live.tid, tid);
            if self.freed_later.len() >= MAX_FREED_LATER && !self.freed_later.contains_key(&key) {
                key.2 = 0;
            }
            let freed = self.freed_later.entry(key).or_default();
            freed.0 += scale;
            freed.1 += live.size as f64 * scale;
        }
    }

    /// What a record read in `window` stands for.
    fn scale(&self, window: u32) -> f64 {
        self.scales.get(&window).copied().unwrap_or(1.0)
    }

    /// The open window's allocations join the totals, scaled.
    fn window_ended(&mut self, window: u32, scale: f64) {
        let scale = if scale.is_finite() {
            scale.max(1.0)
        } else {
            1.0
        };
        if scale > 1.0 {
            self.scales.insert(window, scale);
        }
        for ((site, tid), (objects, bytes)) in std::mem::take(&mut self.current) {
            let raw = self.figures[site].entry(tid).or_default();
            raw.objects += objects as f64 * scale;
            raw.bytes += bytes as f64 * scale;
        }
    }

    /// The share of the target's calls the windows saw.
    pub fn coverage(&self, duty: f64) -> f64 {
        if self.exact {
            1.0
        } else {
            duty.clamp(1e-6, 1.0)
        }
    }

    /// The four estimates (alloc_objects, alloc_space, inuse_objects, inuse_space) of each
    /// allocation stack, in the order the stacks were first seen.
    /// `own` holds the own share of each thread the probes slowed (1 for the others).
    fn estimates(&self, duty: f64, own: &HashMap<u32, f64>) -> Vec<(&Site, [f64; 4])> {
        let coverage = self.coverage(duty);
        let mut live_by_site: HashMap<(usize, u32), (f64, f64)> = HashMap::new();
        for live in self.live.values() {
            let scale = self.scale(live.window);
            let entry = live_by_site.entry((live.site, live.tid)).or_default();
            entry.0 += scale;
            entry.1 += live.size as f64 * scale;
        }
        // Allocations of a window whose end was not reported (the last one) count as read.
        let mut figures = self.figures.clone();
        for (&(site, tid), &(objects, bytes)) in &self.current {
            let raw = figures[site].entry(tid).or_default();
            raw.objects += objects as f64;
            raw.bytes += bytes as f64;
        }
        // What one allocation, or free, seen from `tid` stands for: 1/p, p the share of the
        // thread's calls the windows saw.
        let weight = |tid: u32| {
            let own = own
                .get(&tid)
                .copied()
                .unwrap_or(1.0)
                .clamp(MIN_OWN_SHARE, 1.0);
            1.0 / seen_share(coverage, own)
        };
        let mut inuse_by_site = live_by_site;
        // A block seen allocated, and its free seen in a later window: counted live, less the
        // frees the one seen stands for.
        for (&(site, tid, freer), &(objects, bytes)) in &self.freed_later {
            let later = 1.0 - weight(freer);
            let entry = inuse_by_site.entry((site, tid)).or_default();
            entry.0 += objects * later;
            entry.1 += bytes * later;
        }
        let mut sites: Vec<(&Site, usize)> = self.sites.iter().map(|(s, &i)| (s, i)).collect();
        sites.sort_by_key(|&(_, index)| index);
        sites
            .into_iter()
            .map(|(site, index)| {
                let mut values = [0f64; 4];
                for (&tid, raw) in &figures[index] {
                    let weight = weight(tid);
                    let (inuse_objects, inuse_bytes) = inuse_by_site
                        .get(&(index, tid))
                        .copied()
                        .unwrap_or_default();
                    values[0] += raw.objects * weight;
                    values[1] += raw.bytes * weight;
                    values[2] += weight * inuse_objects;
                    values[3] += weight * inuse_bytes;
                }
                (site, values.map(|v| v.max(0.0)))
            })
            .collect()
    }

    /// The profile: Go's heap sample types, `default` first shown.
    pub fn build(
        &mut self,
        modules: &ModuleSet,
        meta: &Meta,
        (duty, own): (f64, &HashMap<u32, f64>),
        default: &str,
    ) -> Profile {
        let estimates: Vec<(Box<[u64]>, bool, [i64; 4])> = self
            .estimates(duty, own)
            .into_iter()
            .map(|(site, values)| {
                (
                    site.user.clone(),
                    site.truncated,
                    values.map(|v| v.round() as i64),
                )
            })
            .collect();
        for (user, truncated, values) in &estimates {
            let sample = StackSample {
                tid: 0,
                kernel: &[],
                user,
                root: truncated.then_some(PseudoFrame::Truncated),
                labels: &[],
            };
            self.stacks.add(&sample, values);
        }
        let shape = Shape {
            sample_types: &[
                ("alloc_objects", "count"),
                ("alloc_space", "bytes"),
                ("inuse_objects", "count"),
                ("inuse_space", "bytes"),
            ],
            period_type: ("space", "bytes"),
            period: 1,
            default_sample_type: Some(default),
        };
        self.stacks.build(modules, None, &shape, meta)
    }

    /// Allocations seen from threads `tids`.
    pub fn allocations_of<'a>(&self, tids: impl IntoIterator<Item = &'a u32>) -> u64 {
        tids.into_iter().filter_map(|tid| self.seen.get(tid)).sum()
    }

    pub fn sites(&self) -> usize {
        self.sites.len()
    }
}

/// The share of a thread's calls that windows open a share `coverage` of the time saw, the
/// thread doing `own` of its usual work per second inside them.
fn seen_share(coverage: f64, own: f64) -> f64 {
    let inside = coverage * own;
    (inside / (1.0 - coverage + inside)).clamp(1e-6, 1.0)
}

/// The pointer posix_memalign stored at `memptr`, if that lies in the stack copy taken when
/// it returned (the caller's variable, usually).
fn stored_pointer(memptr: u64, stack: Option<&(u64, Vec<u8>)>) -> Option<u64> {
    let (sp, bytes) = stack?;
    let at = usize::try_from(memptr.checked_sub(*sp)?).ok()?;
    let value = bytes.get(at..at.checked_add(8)?)?;
    Some(u64::from_ne_bytes(value.try_into().ok()?)).filter(|&v| v != 0)
}

impl Aggregate for Ledger {
    type Extra = Hit;

    fn add(&mut self, sample: Unwound<'_>, hit: Hit) {
        if let Hit::Enter {
            function,
            args,
            window,
        } = hit
        {
            self.enter(&sample, function, args, window);
        }
    }

    fn add_lost(&mut self, count: u64) {
        self.counts.lost = self.counts.lost.saturating_add(count);
    }

    fn note(&mut self, hit: Hit) {
        match hit {
            Hit::Return { .. } => self.returned(hit),
            Hit::Free { ptr, window, tid } => self.freed(ptr, window, tid),
            Hit::WindowEnd { window, scale } => self.window_ended(window, scale),
            Hit::Enter { .. } => {}
        }
    }

    fn stacks(&mut self) -> &mut StackAggregate {
        &mut self.stacks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITE_A: &[u64] = &[0x1000, 0x2000];
    const SITE_B: &[u64] = &[0x1000, 0x3000];

    fn ledger(exact: bool) -> Ledger {
        let functions = vec![
            Function {
                call: Call::Malloc,
                code: Some(0x1000..0x1100),
            },
            Function {
                call: Call::Realloc,
                code: Some(0x1200..0x1300),
            },
        ];
        Ledger::new(functions, exact)
    }

    /// An allocation of `size` bytes at `user` by thread 1 in `window`, returning `address`.
    fn allocate(
        ledger: &mut Ledger,
        function: usize,
        user: &[u64],
        args: [u64; 3],
        address: u64,
        window: u32,
    ) {
        let modules = ModuleSet::load(std::process::id(), std::sync::Arc::default()).unwrap();
        let sample = Unwound {
            tid: 1,
            kernel: &[],
            user,
            end: UnwindEnd::Complete,
            modules: &modules,
        };
        ledger.add(
            sample,
            Hit::Enter {
                function,
                args,
                window,
            },
        );
        ledger.note(Hit::Return {
            tid: 1,
            function,
            value: address,
            stack: None,
            window,
        });
    }

    fn by_site(ledger: &Ledger, wall_duty: f64) -> HashMap<Vec<u64>, [f64; 4]> {
        by_site_slowed(ledger, wall_duty, &HashMap::new())
    }

    fn by_site_slowed(
        ledger: &Ledger,
        wall_duty: f64,
        own: &HashMap<u32, f64>,
    ) -> HashMap<Vec<u64>, [f64; 4]> {
        ledger
            .estimates(wall_duty, own)
            .into_iter()
            .map(|(site, values)| (site.user.to_vec(), values))
            .collect()
    }

    #[test]
    fn exact_figures_are_counts_and_inuse_what_was_not_freed() {
        let mut ledger = ledger(true);
        allocate(&mut ledger, 0, SITE_A, [300, 0, 0], 0xa0, 1);
        allocate(&mut ledger, 0, SITE_A, [300, 0, 0], 0xa1, 1);
        allocate(&mut ledger, 0, SITE_B, [100, 0, 0], 0xb0, 1);
        ledger.note(Hit::Free {
            ptr: 0xa1,
            window: 1,
            tid: 1,
        });
        // realloc(0xb0, 500) moves the block: B's 100 bytes are freed, A's realloc site holds 500.
        allocate(&mut ledger, 1, &[0x1200, 0x2000], [0xb0, 500, 0], 0xc0, 1);
        // malloc called by realloc (nested): counted once, by realloc.
        allocate(
            &mut ledger,
            0,
            &[0x1000, 0x1250, 0x2000],
            [64, 0, 0],
            0xd0,
            1,
        );
        let sites = by_site(&ledger, 1.0);
        assert_eq!(sites[SITE_A], [2.0, 600.0, 1.0, 300.0]);
        assert_eq!(sites[SITE_B], [1.0, 100.0, 0.0, 0.0]);
        assert_eq!(sites[&vec![0x1200, 0x2000]], [1.0, 500.0, 1.0, 500.0]);
        assert_eq!(sites.len(), 3, "the nested malloc is no site");
        assert_eq!((ledger.counts.nested, ledger.counts.allocations), (1, 4));
    }

    #[test]
    fn sampled_figures_are_scaled_by_the_share_of_time_windows_were_open() {
        let mut ledger = ledger(false);
        assert_eq!(ledger.coverage(0.1), 0.1);
        allocate(&mut ledger, 0, SITE_A, [1000, 0, 0], 0xa0, 1);
        allocate(&mut ledger, 0, SITE_A, [1000, 0, 0], 0xa1, 1);
        // Freed in its own window: not live, nothing to scale.
        ledger.note(Hit::Free {
            ptr: 0xa1,
            window: 1,
            tid: 1,
        });
        // Freed in a later window: stands for 1/p frees.
        allocate(&mut ledger, 0, SITE_B, [10, 0, 0], 0xb0, 1);
        allocate(&mut ledger, 0, SITE_B, [10, 0, 0], 0xb1, 1);
        ledger.note(Hit::Free {
            ptr: 0xb0,
            window: 2,
            tid: 1,
        });
        let sites = by_site(&ledger, 0.1);
        let a = sites[SITE_A];
        assert!(
            (a[0] - 20.0).abs() < 1e-6 && (a[1] - 20_000.0).abs() < 1e-6,
            "{a:?}"
        );
        assert!(
            (a[2] - 10.0).abs() < 1e-6 && (a[3] - 10_000.0).abs() < 1e-6,
            "{a:?}"
        );
        // B: 10 × (1 live + 1 freed later × (1 − 10)) < 0: reported as 0.
        assert_eq!(sites[SITE_B][2], 0.0);
        assert!((sites[SITE_B][1] - 200.0).abs() < 1e-6);
    }

    #[test]
    fn a_slowed_threads_figures_are_scaled_by_the_share_of_its_calls_windows_saw() {
        // Thread 1 (every allocation below) did 60 % of its usual work inside windows open
        // 10 % of the time: they saw 0.06 / (0.9 + 0.06) of its calls, each standing for 16.
        let mut ledger = ledger(false);
        for address in 0xa0..0xab {
            allocate(&mut ledger, 0, SITE_A, [100, 0, 0], address, 1);
        }
        // One block freed in a later window by thread 2, which kept its pace: that free
        // stands for 10, so 16 × (10 live + 1 × (1 − 10)).
        ledger.note(Hit::Free {
            ptr: 0xa0,
            window: 2,
            tid: 2,
        });
        let own = HashMap::from([(1, 0.6)]);
        let a = by_site_slowed(&ledger, 0.1, &own)[SITE_A];
        let expected = [176.0, 17_600.0, 16.0, 1600.0];
        for (value, expected) in a.iter().zip(expected) {
            assert!((value - expected).abs() < 1e-6, "{a:?}");
        }
        // Freed by thread 1 itself, the free stands for 16: 16 × (10 − 15) < 0, reported 0.
        ledger.note(Hit::Free {
            ptr: 0xa1,
            window: 2,
            tid: 1,
        });
        assert_eq!(by_site_slowed(&ledger, 0.1, &own)[SITE_A][2], 0.0);
        // An own share under MIN_OWN_SHARE is taken as MIN_OWN_SHARE (figures then lower
        // bounds): 0.05 / (0.9 + 0.05) seen.
        let flat_out = HashMap::from([(1, 0.1)]);
        let a = by_site_slowed(&ledger, 0.1, &flat_out)[SITE_A];
        assert!((a[0] - 11.0 * 19.0).abs() < 1e-6, "{a:?}");
    }

    #[test]
    fn records_lost_in_a_window_scale_what_it_saw() {
        let mut ledger = ledger(true);
        allocate(&mut ledger, 0, SITE_A, [100, 0, 0], 0xa0, 1);
        // Half of window 1's records were lost.
        ledger.note(Hit::WindowEnd {
            window: 1,
            scale: 2.0,
        });
        allocate(&mut ledger, 0, SITE_A, [100, 0, 0], 0xa1, 2);
        ledger.note(Hit::WindowEnd {
            window: 2,
            scale: 1.0,
        });
        // Window 1's block freed in window 2: it stood for two.
        ledger.note(Hit::Free {
            ptr: 0xa0,
            window: 2,
            tid: 1,
        });
        let a = by_site(&ledger, 1.0)[SITE_A];
        assert_eq!(a, [3.0, 300.0, 1.0, 100.0]);
    }

    #[test]
    fn exact_figures_are_not_scaled() {
        assert_eq!(ledger(true).coverage(0.25), 1.0);
    }

    #[test]
    fn posix_memalign_pointers_are_read_from_the_stack_copy() {
        let mut bytes = vec![0u8; 64];
        bytes[16..24].copy_from_slice(&0x5000u64.to_ne_bytes());
        let stack = (0x7000u64, bytes);
        assert_eq!(stored_pointer(0x7010, Some(&stack)), Some(0x5000));
        assert_eq!(stored_pointer(0x6ff0, Some(&stack)), None, "below sp");
        assert_eq!(stored_pointer(0x703c, Some(&stack)), None, "past the copy");
        assert_eq!(stored_pointer(0x7010, None), None);
    }
}
