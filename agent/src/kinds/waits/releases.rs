//! Who made a thread wait: each wakeup a thread of the target did (its stack, and the thread it
//! woke) paired with the wait it ended. Wakeups and waits come from two samplers, drained in
//! turn: either may be read first, so each side keeps what the other has not matched yet: a
//! few wakeups per thread, a drain's worth of ended waits.

use std::collections::{HashMap, VecDeque};

/// Wakeups kept unmatched per thread: a wakeup waits only for the end of the wait it ended,
/// which the next drain brings.
const KEPT_WAKEUPS_PER_THREAD: usize = 16;
/// Ended waits kept per thread: a wakeup read in the drain after its wait's end finds that
/// wait behind every wait the thread ended since — one drain's worth (the drains of `mutex`
/// are up to 20 ms apart; a thread waiting on a lock 5000 times a second ends 100 in that time,
/// and a drain can be late).
const KEPT_WAITS_PER_THREAD: usize = 256;
/// Threads tracked at most.
const MAX_THREADS: usize = 1 << 16;
/// Ended waits kept in all (40 bytes each): at it, no thread keeps more than it has.
const MAX_KEPT_WAITS: usize = 1 << 20;
/// Wakeups kept in all (each with its waker's stack): at it, no thread keeps more than it has.
const MAX_KEPT_WAKEUPS: usize = 1 << 14;
/// What is kept unmatched longer than this (the woken thread was another process's, or its
/// wait was not sampled) is forgotten, so that threads come and go without filling the maps.
const KEPT_NS: u64 = 5_000_000_000;
/// Unmatched entries are swept after this many insertions.
const SWEEP_EVERY: u64 = 4096;

/// A wakeup not matched yet: who woke, with what stack, and when.
pub struct Wakeup<S> {
    pub time: u64,
    /// How many wakeups the sample stands for.
    pub weight: u64,
    /// The waker's stack, as the kind keeps it.
    pub stack: S,
}

/// A wait that ended: from `since` to `until`, and whether it was on a lock.
#[derive(Debug, Clone, Copy)]
pub struct EndedWait {
    pub since: u64,
    pub until: u64,
    pub weight: u64,
    pub on_lock: bool,
}

/// A waker's stack and the delay its release caused, once paired.
pub struct Release<S> {
    pub stack: S,
    /// Wakeups it stands for (the wakeup's and the wait's sampling weights).
    pub weight: u64,
    /// How long the woken thread had waited when it was woken.
    pub delay: u64,
}

/// Pairs wakeups with the waits they end.
pub struct Releases<S> {
    wakeups: HashMap<u32, VecDeque<Wakeup<S>>>,
    waits: HashMap<u32, VecDeque<EndedWait>>,
    /// Wakeups that ended a wait not on a lock (a condition variable, a pipe...).
    pub not_on_lock: u64,
    /// Ended waits and wakeups kept now, in all threads.
    kept_waits: usize,
    kept_wakeups: usize,
    /// The latest time seen, and insertions since the last sweep.
    latest: u64,
    inserted: u64,
}

impl<S> Default for Releases<S> {
    fn default() -> Self {
        Releases {
            wakeups: HashMap::new(),
            waits: HashMap::new(),
            not_on_lock: 0,
            kept_waits: 0,
            kept_wakeups: 0,
            latest: 0,
            inserted: 0,
        }
    }
}

impl<S> Releases<S> {
    /// Thread `wakee` was woken, by a thread whose stack is `wakeup.stack`.
    pub fn woke(&mut self, wakee: u32, wakeup: Wakeup<S>) -> Option<Release<S>> {
        let waits = self.waits.get(&wakee);
        let ended = waits.and_then(|waits| {
            waits
                .iter()
                .find(|wait| wait.since <= wakeup.time && wakeup.time <= wait.until)
                .copied()
        });
        match ended {
            Some(wait) => self.pair(wakeup, wait),
            None => {
                self.seen(wakeup.time);
                self.kept_wakeups = push_within(
                    &mut self.wakeups,
                    wakee,
                    wakeup,
                    KEPT_WAKEUPS_PER_THREAD,
                    (self.kept_wakeups, MAX_KEPT_WAKEUPS),
                );
                None
            }
        }
    }

    /// Thread `waiter`'s wait ended: the wakeups read before it that fall inside it are its
    /// releases (in the order read).
    pub fn wait_ended(&mut self, waiter: u32, wait: EndedWait) -> Vec<Release<S>> {
        let mut releases = Vec::new();
        if let Some(wakeups) = self.wakeups.get_mut(&waiter) {
            let before = wakeups.len();
            let mut kept = VecDeque::new();
            let mut matched = Vec::new();
            for wakeup in wakeups.drain(..) {
                if wait.since <= wakeup.time && wakeup.time <= wait.until {
                    matched.push(wakeup);
                } else if wakeup.time > wait.until {
                    kept.push_back(wakeup);
                }
            }
            let taken = before.saturating_sub(kept.len());
            self.kept_wakeups = self.kept_wakeups.saturating_sub(taken);
            *wakeups = kept;
            releases.extend(matched.into_iter().filter_map(|w| self.pair(w, wait)));
        }
        self.seen(wait.until);
        self.kept_waits = push_within(
            &mut self.waits,
            waiter,
            wait,
            KEPT_WAITS_PER_THREAD,
            (self.kept_waits, MAX_KEPT_WAITS),
        );
        releases
    }

    /// Notes the time of an insertion, and now and then forgets what is too old to match.
    fn seen(&mut self, time: u64) {
        self.latest = self.latest.max(time);
        self.inserted += 1;
        if !self.inserted.is_multiple_of(SWEEP_EVERY) {
            return;
        }
        let oldest = self.latest.saturating_sub(KEPT_NS);
        self.wakeups.retain(|_, kept| {
            kept.retain(|wakeup| wakeup.time >= oldest);
            !kept.is_empty()
        });
        self.waits.retain(|_, kept| {
            kept.retain(|wait| wait.until >= oldest);
            !kept.is_empty()
        });
        self.kept_waits = self.waits.values().map(VecDeque::len).sum();
        self.kept_wakeups = self.wakeups.values().map(VecDeque::len).sum();
    }

    fn pair(&mut self, wakeup: Wakeup<S>, wait: EndedWait) -> Option<Release<S>> {
        if !wait.on_lock {
            self.not_on_lock += 1;
            return None;
        }
        Some(Release {
            stack: wakeup.stack,
            weight: wakeup.weight.saturating_mul(wait.weight),
            delay: wakeup.time.saturating_sub(wait.since),
        })
    }
}

/// Keeps `item` for thread `tid`, at most `per_thread` per thread and, at the overall limit
/// (`kept.1`, with `kept.0` kept now), only in place of the thread's oldest. Returns how many
/// are kept now in all.
fn push_within<T>(
    map: &mut HashMap<u32, VecDeque<T>>,
    tid: u32,
    item: T,
    per_thread: usize,
    kept: (usize, usize),
) -> usize {
    let (total, limit) = kept;
    let len = map.get(&tid).map_or(0, VecDeque::len);
    let cap = if total >= limit { len } else { per_thread };
    if cap == 0 || (map.len() >= MAX_THREADS && len == 0) {
        return total;
    }
    push_capped(map, tid, item, cap);
    let after = map.get(&tid).map_or(0, VecDeque::len);
    total + after - len
}

fn push_capped<T>(map: &mut HashMap<u32, VecDeque<T>>, tid: u32, item: T, per_thread: usize) {
    if map.len() >= MAX_THREADS && !map.contains_key(&tid) {
        return;
    }
    let kept = map.entry(tid).or_default();
    if kept.len() >= per_thread {
        kept.pop_front();
    }
    kept.push_back(item);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wakeup(time: u64, stack: &'static str) -> Wakeup<&'static str> {
        Wakeup {
            time,
            weight: 1,
            stack,
        }
    }

    fn wait(since: u64, until: u64, on_lock: bool) -> EndedWait {
        EndedWait {
            since,
            until,
            weight: 1,
            on_lock,
        }
    }

    #[test]
    fn a_wakeup_pairs_with_the_wait_it_ended_whichever_is_read_first() {
        let mut releases = Releases::default();
        // Wakeup first.
        assert!(releases.woke(7, wakeup(3_000, "unlock_a")).is_none());
        let paired = releases.wait_ended(7, wait(1_000, 3_100, true));
        assert_eq!(paired.len(), 1);
        assert_eq!((paired[0].stack, paired[0].delay), ("unlock_a", 2_000));
        // Wait first.
        assert!(releases.wait_ended(7, wait(4_000, 4_600, true)).is_empty());
        let paired = releases.woke(7, wakeup(4_500, "unlock_b")).expect("paired");
        assert_eq!((paired.stack, paired.delay), ("unlock_b", 500));
    }

    #[test]
    fn what_stays_unmatched_is_forgotten_after_a_while() {
        let mut releases = Releases::default();
        for wakee in 0..SWEEP_EVERY as u32 - 1 {
            assert!(releases.woke(wakee, wakeup(1_000, "x")).is_none());
        }
        assert_eq!(releases.wakeups.len(), SWEEP_EVERY as usize - 1);
        // The insertion that triggers the sweep is 10 s later: the old ones go.
        assert!(releases.woke(99_999, wakeup(10_000_000_000, "x")).is_none());
        assert_eq!(releases.wakeups.len(), 1);
    }

    #[test]
    fn wakeups_ending_other_waits_are_not_releases() {
        let mut releases = Releases::default();
        assert!(releases.wait_ended(8, wait(0, 900, false)).is_empty());
        assert!(releases.woke(8, wakeup(800, "signal")).is_none());
        assert_eq!(releases.not_on_lock, 1);
        // A wakeup of nobody we know stays pending, and is forgotten past the cap.
        for i in 0..(KEPT_WAKEUPS_PER_THREAD as u64 + 4) {
            assert!(releases.woke(9, wakeup(i, "x")).is_none());
        }
        assert_eq!(releases.wakeups[&9].len(), KEPT_WAKEUPS_PER_THREAD);
    }

    #[test]
    fn at_the_overall_limit_a_thread_keeps_no_more_than_it_has() {
        let mut releases = Releases {
            kept_waits: MAX_KEPT_WAITS,
            ..Releases::default()
        };
        assert!(releases.wait_ended(3, wait(0, 10, true)).is_empty());
        assert!(
            !releases.waits.contains_key(&3),
            "a new thread past the limit"
        );
        releases.kept_waits = MAX_KEPT_WAITS - 1;
        assert!(releases.wait_ended(3, wait(0, 10, true)).is_empty());
        releases.kept_waits = MAX_KEPT_WAITS;
        assert!(releases.wait_ended(3, wait(20, 30, true)).is_empty());
        assert_eq!(releases.waits[&3].len(), 1, "replaced, not added");
        assert_eq!(releases.waits[&3][0].since, 20);
        // Wakeups matched by a wait are no longer counted as kept.
        assert!(releases.woke(4, wakeup(5, "x")).is_none());
        assert_eq!(releases.kept_wakeups, 1);
        assert_eq!(releases.wait_ended(4, wait(0, 10, true)).len(), 1);
        assert_eq!(releases.kept_wakeups, 0);
    }

    #[test]
    fn a_wakeup_read_a_drain_late_still_finds_its_wait_among_many() {
        let mut releases = Releases::default();
        // The woken thread ended 200 waits (a 50 ms drain of a busy lock) before the wakeup
        // that ended the first of them is read.
        for i in 0..200u64 {
            assert!(releases
                .wait_ended(5, wait(i * 1_000, i * 1_000 + 900, true))
                .is_empty());
        }
        let paired = releases.woke(5, wakeup(850, "unlock")).expect("paired");
        assert_eq!(paired.delay, 850);
        assert_eq!(releases.kept_waits, 200);
    }
}
