//! [`Symbolizer`]: from a PID to its mapped modules, with parsed objects cached across calls
//! and processes.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::bytes::Bytes;
use crate::debug_files::attach_debug_files;
use crate::error::Error;
use crate::maps::{self, MapEntry};
use crate::module::{group_mappings, MappedModule, MappingGroup};
use crate::object_cache::{CacheKey, FileIdentity, ObjectCache};
use crate::object_info::ObjectInfo;
use crate::target_fs::{self, TargetRoot};

/// Finds and parses the ELF objects mapped by processes. Holds the per-file cache; share one
/// instance (it is `Send + Sync`) for the life of the agent.
#[derive(Default)]
pub struct Symbolizer {
    cache: Mutex<ObjectCache>,
}

impl std::fmt::Debug for Symbolizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Symbolizer").finish_non_exhaustive()
    }
}

impl Symbolizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// All ELF modules mapped in `pid` with at least one executable mapping: the main binary
    /// first, then in address order. Files that cannot be opened or parsed are skipped (logged
    /// at debug level); only failing to read the maps is an error.
    pub fn modules(&self, pid: u32) -> Result<Vec<MappedModule>, Error> {
        let maps_path = crate::proc_dir::process_dir(pid).join("maps");
        let entries =
            maps::read_maps(pid).map_err(|err| Error::from_proc_io(pid, maps_path, err))?;
        Ok(self.modules_from_maps(pid, &entries))
    }

    /// Like [`Symbolizer::modules`], for maps lines the caller already has (a fresh read of
    /// `/proc/PID/maps`, say after a perf `MMAP2` record said the layout changed).
    pub fn modules_from_maps(&self, pid: u32, entries: &[MapEntry]) -> Vec<MappedModule> {
        let main = MainExecutable::of(pid);
        let root = TargetRoot::of_process(pid);
        let mut modules = Vec::new();
        let mut found_main = false;
        for group in group_mappings(entries) {
            match self.load_module(pid, &root, &group, false) {
                Ok(mut module) => {
                    module.is_main = !found_main && !module.is_vdso && main.matches(&group);
                    found_main |= module.is_main;
                    modules.push(module);
                }
                Err(err) => {
                    let path = group.first().map_or("", |e| e.path.as_str());
                    tracing::debug!(pid, path, %err, "skipping mapped file");
                }
            }
        }
        // Stable: the rest stays in address order.
        modules.sort_by_key(|module| !module.is_main);
        modules
    }

    /// The module of one executable mapping the caller learnt about from elsewhere than the
    /// maps, typically a perf `MMAP2` record: the mapping may be gone by now (a library
    /// dlclose()d right after it ran), or its addresses reused by another file. So the file is
    /// taken from `/proc/PID/map_files` only while that is still the very inode the record
    /// names (`entry.inode`, when not 0), else from its path inside the target's root, under
    /// the same condition. The module covers just this mapping.
    pub fn module_for_mapping(&self, pid: u32, entry: &MapEntry) -> Result<MappedModule, Error> {
        let root = TargetRoot::of_process(pid);
        let group = MappingGroup {
            entries: vec![entry.clone()],
        };
        let mut module = self.load_module(pid, &root, &group, true)?;
        module.is_main = !module.is_vdso && MainExecutable::of(pid).matches(&group);
        Ok(module)
    }

    /// Drops the file pages of every cached object from resident memory, once a profile is
    /// built: they are read back on demand (see [`ObjectInfo::release_pages`]).
    pub fn release_pages(&self) {
        self.cache().for_each(|object| object.release_pages());
    }

    /// Loads an ELF file from our own filesystem (tools, tests), with its separate debug
    /// information; cached like mapped files.
    pub fn load_file(&self, path: impl AsRef<Path>) -> Result<Arc<ObjectInfo>, Error> {
        let io_err = |source| Error::Io {
            path: path.as_ref().to_owned(),
            source,
        };
        // Debug files are looked up relative to the binary's absolute, symlink-free path, as
        // for mapped files (whose maps paths are canonical).
        let path = fs::canonicalize(path.as_ref()).map_err(io_err)?;
        let file = fs::File::open(&path).map_err(io_err)?;
        self.load_opened(&TargetRoot::host(), &path.to_string_lossy(), &file)
    }

    fn load_module(
        &self,
        pid: u32,
        root: &TargetRoot,
        group: &MappingGroup,
        strict: bool,
    ) -> Result<MappedModule, Error> {
        let (Some(first), Some(exec)) = (group.first(), group.first_exec()) else {
            return Err(Error::parse("mapping", "no executable mapping"));
        };
        let is_vdso = group.is_vdso();
        let object = if is_vdso {
            self.load_vdso(pid, exec)?
        } else {
            let file = target_fs::open_mapped_file(pid, root, exec, strict)
                .map_err(|err| Error::from_file_io(pid, PathBuf::from(&exec.path), err))?;
            self.load_opened(root, &exec.path, &file)?
        };
        let bias = object
            .load_bias(exec.offset, exec.start, exec.exec)
            .ok_or_else(|| {
                Error::parse(
                    &exec.path,
                    format!("no PT_LOAD covers offset {:#x}", exec.offset),
                )
            })?;
        Ok(MappedModule {
            path: first.path.clone(),
            avma: group.avma(),
            exec_avma: group.exec_avma(),
            file_offset: first.offset,
            bias,
            object,
            is_vdso,
            is_main: false,
        })
    }

    /// The vdso image, read from the target's memory; cached by build id.
    fn load_vdso(&self, pid: u32, entry: &MapEntry) -> Result<Arc<ObjectInfo>, Error> {
        let image = target_fs::read_vdso(pid, entry).map_err(|err| {
            Error::from_proc_io(pid, PathBuf::from(format!("/proc/{pid}/mem")), err)
        })?;
        let object = ObjectInfo::from_bytes(crate::module::VDSO_PATH, Bytes::from_vec(image))?;
        let Some(build_id) = object.build_id().map(<[u8]>::to_vec) else {
            return Ok(Arc::new(object));
        };
        let key = CacheKey::BuildId(build_id);
        if let Some(cached) = self.cache().get(&key) {
            return Ok(cached);
        }
        let object = Arc::new(object);
        self.cache().insert(key, Arc::clone(&object));
        Ok(object)
    }

    /// The object for an opened file known to the target as `path`: from the cache by file
    /// identity or build id, else parsed and given its separate debug files.
    fn load_opened(
        &self,
        root: &TargetRoot,
        path: &str,
        file: &fs::File,
    ) -> Result<Arc<ObjectInfo>, Error> {
        let io_err = |source| Error::Io {
            path: PathBuf::from(path),
            source,
        };
        let identity = CacheKey::File(FileIdentity::of(&file.metadata().map_err(io_err)?));
        if let Some(cached) = self.cache().get(&identity) {
            return Ok(cached);
        }
        let object = ObjectInfo::from_bytes(path, Bytes::map_file(file).map_err(io_err)?)?;
        let build_id = object.build_id().map(|id| CacheKey::BuildId(id.to_vec()));
        if let Some(cached) = build_id.as_ref().and_then(|key| self.cache().get(key)) {
            self.cache().insert(identity, Arc::clone(&cached));
            return Ok(cached);
        }
        // Parsing happened outside the lock; so does the (I/O-bound) debug file lookup.
        let object = Arc::new(attach_debug_files(root, path, object));
        let mut cache = self.cache();
        cache.insert(identity, Arc::clone(&object));
        if let Some(key) = build_id {
            cache.insert(key, Arc::clone(&object));
        }
        Ok(object)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, ObjectCache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What `/proc/PID/exe` points at, to recognize the main binary among the mappings.
struct MainExecutable {
    path: Option<String>,
    inode: Option<(u32, u32, u64)>,
}

impl MainExecutable {
    fn of(pid: u32) -> MainExecutable {
        let exe = crate::proc_dir::process_dir(pid).join("exe");
        let path = fs::read_link(&exe).ok().map(|target| {
            let target = target.to_string_lossy().into_owned();
            match target.strip_suffix(" (deleted)") {
                Some(stripped) => stripped.to_owned(),
                None => target,
            }
        });
        let inode = fs::metadata(&exe)
            .ok()
            .map(|m| (libc::major(m.dev()), libc::minor(m.dev()), m.ino()));
        MainExecutable { path, inode }
    }

    fn matches(&self, group: &MappingGroup) -> bool {
        let Some(entry) = group.first() else {
            return false;
        };
        let same_inode = self.inode == Some((entry.dev_major, entry.dev_minor, entry.inode));
        same_inode || self.path.as_deref() == Some(entry.path.as_str())
    }
}

const _: () = {
    const fn check<T: Send + Sync>() {}
    check::<Symbolizer>();
    check::<MappedModule>();
};
