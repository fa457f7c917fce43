//! Thread names as they were when each sample was taken. A thread renamed mid-window (prctl,
//! or an exec that renames every thread to the new program), and a thread id reused by a new
//! thread, must not relabel samples taken under the old name, so samples hold a name id, not
//! the thread id's latest name.

use std::collections::HashMap;

/// An interned thread name.
pub type NameId = u32;

/// Distinct names kept at most: a target renaming its threads without end must not grow the
/// table without end (later names are left unknown).
const MAX_NAMES: usize = 1 << 16;

#[derive(Debug, Default)]
pub struct ThreadNames {
    names: Vec<String>,
    ids: HashMap<String, NameId>,
    /// Each live thread's name now.
    current: HashMap<u32, NameId>,
}

impl ThreadNames {
    /// `tid` is called `name` from now on.
    pub fn set(&mut self, tid: u32, name: &str) {
        match self.intern(name) {
            Some(id) => self.current.insert(tid, id),
            None => self.current.remove(&tid),
        };
    }

    /// The name `tid` has now, if known.
    pub fn current(&self, tid: u32) -> Option<NameId> {
        self.current.get(&tid).copied()
    }

    /// The text of a name id; empty for an unknown name.
    pub fn text(&self, id: Option<NameId>) -> &str {
        id.and_then(|id| self.names.get(usize::try_from(id).ok()?))
            .map_or("", String::as_str)
    }

    /// `tid` was created by `creator`, whose name it starts with (the kernel copies it).
    /// Returns whether the creator's name was known.
    pub fn inherit(&mut self, tid: u32, creator: u32) -> bool {
        let Some(id) = self.current(creator) else {
            return false;
        };
        self.current.insert(tid, id);
        true
    }

    /// `tid` exited: its id may name another thread next.
    pub fn forget(&mut self, tid: u32) {
        self.current.remove(&tid);
    }

    fn intern(&mut self, name: &str) -> Option<NameId> {
        if let Some(&id) = self.ids.get(name) {
            return Some(id);
        }
        if self.names.len() >= MAX_NAMES {
            return None;
        }
        let id = NameId::try_from(self.names.len()).ok()?;
        self.names.push(name.to_owned());
        self.ids.insert(name.to_owned(), id);
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rename_does_not_change_earlier_ids() {
        let mut names = ThreadNames::default();
        names.set(7, "before");
        let before = names.current(7);
        names.set(7, "after");
        assert_eq!(names.text(before), "before");
        assert_eq!(names.text(names.current(7)), "after");
        names.set(8, "before");
        assert_eq!(names.current(8), before, "one id per distinct name");
    }

    #[test]
    fn children_inherit_and_exited_threads_are_forgotten() {
        let mut names = ThreadNames::default();
        assert!(!names.inherit(2, 1));
        names.set(1, "pool");
        assert!(names.inherit(2, 1));
        assert_eq!(names.text(names.current(2)), "pool");
        names.forget(2);
        assert_eq!(names.current(2), None);
        assert_eq!(names.text(None), "");
    }

    #[test]
    fn endless_renames_stop_at_the_cap() {
        let mut names = ThreadNames::default();
        for i in 0..MAX_NAMES + 10 {
            names.set(1, &format!("n{i}"));
        }
        assert_eq!(names.names.len(), MAX_NAMES);
        assert_eq!(names.current(1), None);
    }
}
