//! The set of ELF modules mapped in the target, kept in step with its mappings, and turned into
//! framehop modules.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use framehop::{ExplicitModuleSectionInfo, Module};
use rprof_symbolizer::{Bytes, MappedModule, PerfMap, Symbolizer};

/// Mappings are re-read at most this often when samples hit unknown code: a process that jumps
/// into anonymous memory (JIT, corrupted ip) must not make us re-read /proc/PID/maps per sample.
const REFRESH_INTERVAL: Duration = Duration::from_millis(250);

/// The modules a target has mapped now, plus every module it ever mapped while we watched: code
/// that was unloaded (dlclose, exec) still has samples that need names.
pub struct ModuleSet {
    pid: u32,
    symbolizer: Arc<Symbolizer>,
    current: Vec<Arc<MappedModule>>,
    history: Vec<Arc<MappedModule>>,
    last_refresh: Instant,
    /// The target's perf map, read on the first address no module maps: by then (names are
    /// looked up when a profile is written) the JIT has written the code it ran.
    jit: OnceLock<Option<PerfMap>>,
}

/// What a refresh changed, in framehop's terms.
pub struct ModuleChange {
    pub added: Vec<Module<Bytes>>,
    /// Start addresses of modules that are no longer mapped.
    pub removed: Vec<u64>,
}

impl ModuleSet {
    /// Reads the target's modules now.
    pub fn load(pid: u32, symbolizer: Arc<Symbolizer>) -> Result<Self, rprof_symbolizer::Error> {
        let history: Vec<_> = symbolizer.modules(pid)?.into_iter().map(Arc::new).collect();
        Ok(ModuleSet {
            pid,
            symbolizer,
            current: sorted(history.clone()),
            history,
            last_refresh: Instant::now(),
            jit: OnceLock::new(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn symbolizer(&self) -> &Arc<Symbolizer> {
        &self.symbolizer
    }

    /// Every module seen, the main binary first (pprof wants it as mapping 1).
    pub fn all(&self) -> &[Arc<MappedModule>] {
        &self.history
    }

    /// Whether `addr` lies in executable code of a currently mapped module.
    pub fn contains(&self, addr: u64) -> bool {
        self.current_module(addr).is_some()
    }

    /// The module that maps `addr` now, else the last module that mapped it earlier.
    pub fn find(&self, addr: u64) -> Option<&Arc<MappedModule>> {
        self.current_module(addr)
            .or_else(|| self.history.iter().rev().find(|m| maps_code(m, addr)))
    }

    /// The JIT-compiled function at `addr`, from the target's perf map (see [`PerfMap`]).
    pub fn jit_name(&self, addr: u64) -> Option<&str> {
        self.jit
            .get_or_init(|| match PerfMap::for_process(self.pid) {
                Ok(map) => map,
                Err(error) => {
                    tracing::debug!(pid = self.pid, %error, "perf map not read");
                    None
                }
            })
            .as_ref()?
            .lookup(addr)
    }

    fn current_module(&self, addr: u64) -> Option<&Arc<MappedModule>> {
        let idx = self.current.partition_point(|m| m.avma.start <= addr);
        let module = self.current.get(idx.checked_sub(1)?)?;
        maps_code(module, addr).then_some(module)
    }

    /// True when enough time has passed since the last refresh to allow another.
    pub fn may_refresh(&self) -> bool {
        self.last_refresh.elapsed() >= REFRESH_INTERVAL
    }

    /// framehop modules for everything currently mapped.
    pub fn framehop_modules(&self) -> Vec<Module<Bytes>> {
        self.current.iter().map(|m| framehop_module(m)).collect()
    }

    /// Re-reads the mappings. None when they can't be read (the target exited).
    pub fn refresh(&mut self) -> Option<ModuleChange> {
        self.last_refresh = Instant::now();
        let fresh = self.symbolizer.modules(self.pid).ok()?;
        let fresh = sorted(fresh.into_iter().map(Arc::new).collect());
        let removed = self
            .current
            .iter()
            .filter(|old| !fresh.iter().any(|new| same_module(old, new)))
            .map(|old| old.avma.start)
            .collect();
        let added_modules: Vec<_> = fresh
            .iter()
            .filter(|new| !self.current.iter().any(|old| same_module(old, new)))
            .cloned()
            .collect();
        let added = added_modules.iter().map(|m| framehop_module(m)).collect();
        self.history.extend(added_modules);
        self.current = fresh;
        Some(ModuleChange { added, removed })
    }
}

/// Sorted by start address for binary search; the symbolizer's main-binary-first order is kept
/// separately in `history`.
fn sorted(mut modules: Vec<Arc<MappedModule>>) -> Vec<Arc<MappedModule>> {
    modules.sort_by_key(|m| m.avma.start);
    modules
}

fn maps_code(module: &MappedModule, addr: u64) -> bool {
    module.avma.contains(&addr)
}

fn same_module(a: &MappedModule, b: &MappedModule) -> bool {
    a.avma == b.avma && a.path == b.path && a.object.build_id() == b.object.build_id()
}

/// A framehop module: ELF SVMAs are the file's own vaddrs (base_svma 0), so the module's base
/// AVMA is the load bias.
fn framehop_module(module: &MappedModule) -> Module<Bytes> {
    let s = module.object.unwind_sections();
    let info = ExplicitModuleSectionInfo {
        base_svma: s.base_svma,
        text_svma: s.text_svma,
        text: s.text,
        got_svma: s.got_svma,
        eh_frame_svma: s.eh_frame_svma,
        eh_frame: s.eh_frame,
        eh_frame_hdr_svma: s.eh_frame_hdr_svma,
        eh_frame_hdr: s.eh_frame_hdr,
        debug_frame: s.debug_frame,
        // Mach-O only.
        stubs_svma: None,
        stub_helper_svma: None,
        unwind_info: None,
        text_segment_svma: None,
        text_segment: None,
    };
    let base_avma = module.bias.wrapping_add(s.base_svma);
    Module::new(module.path.clone(), module.avma.clone(), base_avma, info)
}
