//! Thread ids across PID namespaces, for `mutex`'s wakeups.
//!
//! A tracepoint's raw fields number threads as the host's (initial) PID namespace does:
//! `sched_waking`'s `pid` (the woken thread) and every tracepoint's `common_pid` (the thread it
//! fired in). Perf's sample ids (PERF_SAMPLE_TID) number them as the agent's own namespace
//! does. In a container (a pod's shared namespace, `--pid=container:APP`) the two differ, and
//! the agent cannot read the host's numbers from its /proc. Each wakeup sample carries both
//! for its waker — `common_pid` and the sample's tid — so the pairs are learned from the
//! samples themselves: from the wakeups a thread does, and from the `sched_switch` events a
//! window opens while threads are missing (see `host_ids`): a thread that only waits wakes no
//! one.

use std::collections::{HashMap, HashSet};

/// Pairs kept at most: a target creating threads without end cannot grow the map without end
/// (full, it starts afresh).
const MAX_PAIRS: usize = 1 << 16;

/// Host thread ids to the agent's, as far as they are known.
#[derive(Debug, Default)]
pub struct PidMap {
    pairs: HashMap<u32, u32>,
    /// The agent's ids of the pairs (possibly of threads gone since: ids are recycled).
    known: HashSet<u32>,
    /// Some pair differed: the agent is in another PID namespace than the tracepoints' numbers,
    /// and an id not learned yet cannot be taken as it is.
    translating: bool,
}

impl PidMap {
    /// The thread the agent knows as `tid` is `host` in the tracepoints' fields.
    pub fn learn(&mut self, host: u32, tid: u32) {
        if host != tid {
            self.translating = true;
        }
        if self.pairs.len() >= MAX_PAIRS && !self.pairs.contains_key(&host) {
            // Full after a long churn of threads, most of them gone: start afresh rather than
            // stop learning. The threads alive are learned again (see `host_ids`).
            self.pairs.clear();
            self.known.clear();
        }
        self.pairs.insert(host, tid);
        self.known.insert(tid);
    }

    /// Whether the thread the agent knows as `tid` has been learned.
    pub fn knows(&self, tid: u32) -> bool {
        self.known.contains(&tid)
    }

    /// Pairs learned.
    pub fn learned(&self) -> usize {
        self.pairs.len()
    }

    /// Whether pairs were learned and every one was the same in both numberings: the agent is
    /// in the tracepoints' PID namespace, nothing needs learning.
    pub fn proven_same(&self) -> bool {
        !self.pairs.is_empty() && !self.translating
    }

    /// The agent's id for the thread tracepoints call `host`, if known: `host` itself while
    /// every pair seen was the same in both numberings (the agent is in the host's namespace).
    pub fn translate(&self, host: u32) -> Option<u32> {
        match self.pairs.get(&host) {
            Some(&tid) => Some(tid),
            None if !self.translating => Some(host),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_the_hosts_namespace_ids_pass_through() {
        let mut map = PidMap::default();
        assert_eq!(map.translate(4242), Some(4242));
        map.learn(100, 100);
        assert_eq!(map.translate(4242), Some(4242));
    }

    #[test]
    fn in_another_namespace_only_learned_ids_translate() {
        let mut map = PidMap::default();
        // Host thread 31007 is thread 7 of the pod.
        map.learn(31007, 7);
        assert_eq!(map.translate(31007), Some(7));
        // Never guessed: host id 8 may be anything in the pod.
        assert_eq!(map.translate(8), None);
        assert_eq!(map.translate(31008), None);
        // A recycled host id follows its new thread.
        map.learn(31007, 9);
        assert_eq!(map.translate(31007), Some(9));
    }

    #[test]
    fn the_map_says_when_nothing_needs_learning() {
        let mut map = PidMap::default();
        assert!(!map.proven_same(), "nothing learned yet");
        map.learn(100, 100);
        assert!(map.proven_same() && map.knows(100) && !map.knows(7));
        map.learn(31007, 7);
        assert!(!map.proven_same() && map.knows(7));
        assert_eq!(map.learned(), 2);
    }

    #[test]
    fn the_map_is_bounded() {
        let mut map = PidMap::default();
        for host in 0..(MAX_PAIRS as u32 + 10) {
            map.learn(host + 1_000_000, host);
        }
        // Full, it started afresh: the latest pairs are known, the oldest forgotten.
        assert_eq!(map.pairs.len(), 10);
        assert_eq!(
            map.translate(1_000_000 + MAX_PAIRS as u32 + 9),
            Some(MAX_PAIRS as u32 + 9)
        );
        assert_eq!(map.translate(1_000_000), None);
        assert!(map.known.len() <= MAX_PAIRS);
    }
}
