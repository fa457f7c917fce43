//! The per-file cache: the same binary mapped by many processes (or seen again on the next
//! profile) is parsed, and its DWARF indexed, once.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use crate::object_info::ObjectInfo;

/// Distinct files kept. A busy host maps a few hundred distinct ELF files; past this, the least
/// recently used are dropped (modules already handed out keep theirs alive).
const MAX_ENTRIES: usize = 2048;

/// Identifies a file's contents without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FileIdentity {
    dev: u64,
    inode: u64,
    size: u64,
    mtime_sec: i64,
    mtime_nsec: i64,
}

impl FileIdentity {
    pub fn of(metadata: &Metadata) -> FileIdentity {
        FileIdentity {
            dev: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.size(),
            mtime_sec: metadata.mtime(),
            mtime_nsec: metadata.mtime_nsec(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum CacheKey {
    File(FileIdentity),
    /// Files with the same GNU build id have the same code and symbols, whichever path or
    /// container they come from. Also the only key the vdso has.
    BuildId(Vec<u8>),
}

struct Entry {
    object: Arc<ObjectInfo>,
    last_used: u64,
}

/// A bounded map from [`CacheKey`] to parsed objects, evicting least recently used entries.
#[derive(Default)]
pub(crate) struct ObjectCache {
    entries: HashMap<CacheKey, Entry>,
    clock: u64,
}

impl ObjectCache {
    pub fn get(&mut self, key: &CacheKey) -> Option<Arc<ObjectInfo>> {
        self.clock += 1;
        let entry = self.entries.get_mut(key)?;
        entry.last_used = self.clock;
        Some(Arc::clone(&entry.object))
    }

    pub fn insert(&mut self, key: CacheKey, object: Arc<ObjectInfo>) {
        if self.entries.len() >= MAX_ENTRIES && !self.entries.contains_key(&key) {
            self.evict();
        }
        self.clock += 1;
        let last_used = self.clock;
        self.entries.insert(key, Entry { object, last_used });
    }

    pub fn for_each(&self, f: impl FnMut(&ObjectInfo)) {
        self.entries.values().map(|e| &*e.object).for_each(f);
    }

    /// Drops the least recently used quarter, so eviction's O(n) scan is amortized.
    fn evict(&mut self) {
        let mut ages: Vec<u64> = self.entries.values().map(|e| e.last_used).collect();
        if ages.is_empty() {
            return;
        }
        let cut = ages.len() / 4;
        let (_, &mut threshold, _) = ages.select_nth_unstable(cut);
        self.entries.retain(|_, e| e.last_used > threshold);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used() {
        let exe = std::fs::read("/proc/self/exe").unwrap();
        let object = Arc::new(ObjectInfo::from_bytes("self", exe.into()).unwrap());
        let mut cache = ObjectCache::default();
        let key = |n: usize| CacheKey::BuildId(n.to_le_bytes().to_vec());
        for n in 0..MAX_ENTRIES * 2 {
            cache.insert(key(n), Arc::clone(&object));
            assert!(cache.get(&key(0)).is_some(), "hot entry evicted at {n}");
        }
        assert!(cache.len() <= MAX_ENTRIES);
        assert!(cache.get(&key(1)).is_none());
        assert!(cache.get(&key(MAX_ENTRIES * 2 - 1)).is_some());
    }
}
