//! A bounded address -> frames cache, so that symbolizing a hot address again costs a hash
//! lookup.

use std::collections::HashMap;

use crate::frame::Frame;

/// Entries per generation; two generations are kept.
const GENERATION_CAPACITY: usize = 16 * 1024;

/// An approximate LRU with two generations: lookups hit the current generation or promote from
/// the previous one; when the current one fills up it becomes the previous one, and the oldest
/// is dropped wholesale. O(1), no per-entry bookkeeping, at most 2 × capacity entries.
#[derive(Default)]
pub(crate) struct FrameCache {
    current: HashMap<u64, Vec<Frame>>,
    previous: HashMap<u64, Vec<Frame>>,
}

impl FrameCache {
    pub fn get(&mut self, svma: u64) -> Option<Vec<Frame>> {
        if let Some(frames) = self.current.get(&svma) {
            return Some(frames.clone());
        }
        let frames = self.previous.remove(&svma)?;
        self.insert(svma, frames.clone());
        Some(frames)
    }

    pub fn insert(&mut self, svma: u64, frames: Vec<Frame>) {
        if self.current.len() >= GENERATION_CAPACITY {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(svma, frames);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_recent_entries_and_stays_bounded() {
        let mut cache = FrameCache::default();
        let total = u64::try_from(GENERATION_CAPACITY * 3).unwrap();
        for svma in 0..total {
            cache.insert(svma, vec![Frame::default()]);
            // Address 0 is used constantly, so it survives every generation change.
            assert!(cache.get(0).is_some());
        }
        assert!(cache.current.len() + cache.previous.len() <= 2 * GENERATION_CAPACITY);
        assert!(cache.get(total - 1).is_some());
        assert!(cache.get(1).is_none());
    }
}
