//! The set of ELF modules mapped in the target, kept in step with its mappings, and turned into
//! framehop modules.

use std::ops::Range;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use framehop::{ExplicitModuleSectionInfo, Module};
use rprof_symbolizer::maps::MapEntry;
use rprof_symbolizer::{Bytes, MappedModule, PerfMap, PerfMapSource, Symbolizer, UnwindSections};

use crate::process_identity::ProcessHandle;

/// Mappings are re-read at most this often when samples hit unknown code: a process that jumps
/// into anonymous memory (JIT, corrupted ip) must not make us re-read /proc/PID/maps per sample.
const REFRESH_INTERVAL: Duration = Duration::from_millis(250);

/// Where relocated modules are named: above any user address, even with 5-level paging
/// (2^56), so that a relocated address can never be taken for a real one.
const ALIAS_BASE: u64 = 1 << 57;
/// Relocated modules start on this alignment, one such unit apart.
const ALIAS_ALIGN: u64 = 1 << 21;
/// Distinct modules named at most. A target mapping ever new code (a library dlopen()ed at a
/// new address each time, generated .so files) must not grow the set, and the linear lookups
/// over it, without end: modules past this are unwound but left unnamed.
const MAX_MODULES_NAMED: usize = 4096;

/// The modules a target has mapped now, plus every module it ever mapped while we watched: code
/// that was unloaded (dlclose, exec) still has samples that need names.
///
/// Unwinding needs what was mapped *when a sample was taken*, and the stage that unwinds sees
/// the target's records in time order: a perf `MMAP2` record adds its module at once
/// ([`ModuleSet::mapped`]), evicting whatever it was mapped over, and an exec clears everything
/// ([`ModuleSet::exec`]). Reading `/proc/PID/maps` instead would tell what is mapped when the
/// unwinder gets round to it, by which time a library that ran for a millisecond may be gone,
/// or replaced by another at the same addresses.
///
/// Naming happens after the recording, from addresses alone (a profile's stacks are
/// addresses). When a module is mapped where a different one was before (dlclose then dlopen
/// of another library; an exec), the two would claim the same addresses, and every sample of
/// one would be named from the other. The later module is therefore *relocated* for naming:
/// after unwinding, addresses in it are moved by a fixed delta into an alias range above any
/// user address ([`ModuleSet::translate`]), where its named copy, ranges and bias moved alike,
/// finds them ([`ModuleSet::find`]). Offsets within the module, and so symbols, file offsets
/// and `pprof -disasm`, are unchanged; only the raw address differs from the real one. The
/// same code mapped at the same place again (the same library re-dlopen()ed) is recognized and
/// named once.
pub struct ModuleSet {
    pid: u32,
    symbolizer: Arc<Symbolizer>,
    /// What is mapped now, by real address, sorted by start.
    current: Vec<Live>,
    /// Every module seen, as mapped: parallel to `named`.
    seen: Vec<Live>,
    /// Every module seen, as named in profiles (relocated where it had to be), the main binary
    /// first.
    named: Vec<Arc<MappedModule>>,
    /// Where the next relocated module goes.
    next_alias: u64,
    last_refresh: Instant,
    /// Where the target's perf map (JIT code names) is, taken while it runs.
    perf_map_source: Option<PerfMapSource>,
    /// The perf map, read on first use.
    perf_map: OnceLock<Option<PerfMap>>,
    /// The target process itself (a pidfd, opened before the first read): whatever is read
    /// from `/proc/PID` while it lives is about it, and nothing read after it exited is used,
    /// since the PID may name another program by then. `None` where it cannot be opened.
    target: Option<ProcessHandle>,
}

/// A module as mapped, and what its addresses are moved by to be named.
#[derive(Clone)]
struct Live {
    module: Arc<MappedModule>,
    delta: u64,
}

/// A function of Go's runtime that moves a thread from a goroutine's stack to its system stack
/// (g0), where an unwind cannot step from the callee to the caller by reading memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StackSwitch {
    /// `systemstack`, `morestack`, `asmcgocall`: the goroutine waits for the call to return
    /// (or, for morestack, for its new stack); without its saved state the stack is cut short.
    System,
    /// `mcall`: the goroutine gave the thread up (parked, yielded, exited) and the thread may
    /// run another one already; Go's own traceback ends here, as a root.
    Mcall,
    /// `systemstack_switch`: no call, the address systemstack saves for the goroutine it
    /// left, which resumes in the frame above.
    Placeholder,
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
        let target = ProcessHandle::open(pid);
        let modules = symbolizer.modules(pid)?;
        let mut set = ModuleSet::empty(pid, symbolizer);
        set.perf_map_source = PerfMapSource::of_process(pid)
            .map_err(|err| tracing::debug!(pid, %err, "no perf map source"))
            .ok();
        set.target = target;
        let live = modules
            .into_iter()
            .map(|module| set.admit(Arc::new(module)))
            .collect();
        set.current = sorted(live);
        Ok(set)
    }

    /// No modules: for a target whose mappings may not be read (nothing will be unwound).
    pub fn empty(pid: u32, symbolizer: Arc<Symbolizer>) -> Self {
        ModuleSet {
            pid,
            symbolizer,
            current: Vec::new(),
            seen: Vec::new(),
            named: Vec::new(),
            next_alias: ALIAS_BASE,
            last_refresh: Instant::now(),
            perf_map_source: None,
            perf_map: OnceLock::new(),
            target: None,
        }
    }

    /// Whether the target still runs, so that what was just read from `/proc/PID` is its own.
    pub fn target_alive(&self) -> bool {
        self.target.as_ref().is_none_or(ProcessHandle::is_alive)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn symbolizer(&self) -> &Arc<Symbolizer> {
        &self.symbolizer
    }

    /// Every module seen, as named (see [`ModuleSet::translate`]), the main binary first
    /// (pprof wants it as mapping 1).
    pub fn all(&self) -> &[Arc<MappedModule>] {
        &self.named
    }

    /// Whether `addr` lies in a currently mapped module.
    pub fn contains(&self, addr: u64) -> bool {
        self.live(addr).is_some()
    }

    /// The module that names `addr`, an address as unwinding returned it (translated): the
    /// last one seen there. Modules with different code never share a named address.
    pub fn find(&self, addr: u64) -> Option<&Arc<MappedModule>> {
        self.named.iter().rev().find(|m| maps_code(m, addr))
    }

    /// The name a JIT runtime gave the code at `addr` in its perf map (`/tmp/perf-PID.map`), for
    /// addresses in no module. The map is read once, on first use: after the recording, when
    /// it names everything compiled during it. Its place was taken when the set was loaded, so
    /// the map of a target that has exited since is still found (and never another's).
    pub fn jit_name(&self, addr: u64) -> Option<&str> {
        self.perf_map
            .get_or_init(|| {
                self.perf_map_source.as_ref()?.read().unwrap_or_else(|err| {
                    tracing::debug!(pid = self.pid, %err, "cannot read the perf map");
                    None
                })
            })
            .as_ref()?
            .lookup(addr)
    }

    /// `addr` is in a function where a thread's or goroutine's stack begins (Go's goexit,
    /// mstart, rt0_go): the unwinder must stop there rather than read what lies beyond.
    pub fn is_thread_root(&self, addr: u64) -> bool {
        self.live(addr).is_some_and(|live| {
            let svma = live.module.svma(addr);
            live.module
                .object
                .thread_roots()
                .iter()
                .any(|root| root.contains(&svma))
        })
    }

    /// The Go stack switch whose frame `addr` is in, if any: what called it ran on another
    /// stack (see [`super::SwitchedStack`]).
    pub fn stack_switch(&self, addr: u64) -> Option<StackSwitch> {
        let live = self.live(addr)?;
        let svma = live.module.svma(addr);
        let (_, name) = live
            .module
            .object
            .go_stack_switches()
            .iter()
            .find(|(range, _)| range.contains(&svma))?;
        Some(match *name {
            "runtime.mcall" => StackSwitch::Mcall,
            "runtime.systemstack_switch" => StackSwitch::Placeholder,
            _ => StackSwitch::System,
        })
    }

    /// Whether the code mapped at `addr` is `expected` (read from the module's file).
    pub fn code_is(&self, addr: u64, expected: &[u8]) -> bool {
        self.mapped_at(addr).is_some_and(|module| {
            module
                .object
                .has_bytes_at(addr.wrapping_sub(module.bias), expected)
        })
    }

    /// The module mapped now at the real address `addr` (as sampled, before any
    /// [`ModuleSet::translate`]).
    pub fn mapped_at(&self, addr: u64) -> Option<&Arc<MappedModule>> {
        self.live(addr).map(|live| &live.module)
    }

    fn live(&self, addr: u64) -> Option<&Live> {
        let idx = self
            .current
            .partition_point(|l| l.module.avma.start <= addr);
        let live = self.current.get(idx.checked_sub(1)?)?;
        maps_code(&live.module, addr).then_some(live)
    }

    /// Moves the addresses of an unwound stack (real, as sampled now) to where the modules
    /// they are in are named. Addresses in no known module stay as they are.
    pub fn translate(&self, addresses: &mut [u64]) {
        if self.current.iter().all(|l| l.delta == 0) {
            return;
        }
        for address in addresses {
            if let Some(live) = self.live(*address) {
                *address = address.wrapping_add(live.delta);
            }
        }
    }

    /// True when enough time has passed since the last refresh to allow another.
    pub fn may_refresh(&self) -> bool {
        self.last_refresh.elapsed() >= REFRESH_INTERVAL
    }

    /// framehop modules for everything currently mapped.
    pub fn framehop_modules(&self) -> Vec<Module<Bytes>> {
        self.current
            .iter()
            .flat_map(|l| framehop_modules(&l.module))
            .collect()
    }

    /// Re-reads the mappings. None when they can't be read (the target exited).
    pub fn refresh(&mut self) -> Option<ModuleChange> {
        self.last_refresh = Instant::now();
        let fresh = self.symbolizer.modules(self.pid).ok()?;
        if !self.target_alive() {
            return None;
        }
        let mut live = Vec::with_capacity(fresh.len());
        let mut added = Vec::new();
        for module in fresh {
            let kept = self
                .current
                .iter()
                .find(|old| same_mapping(&old.module, &module))
                .cloned();
            live.push(kept.unwrap_or_else(|| {
                let module = Arc::new(module);
                added.extend(framehop_modules(&module));
                self.admit(module)
            }));
        }
        let removed = self
            .current
            .iter()
            .filter(|old| {
                !live
                    .iter()
                    .any(|new| same_mapping(&new.module, &old.module))
            })
            .flat_map(|old| framehop_starts(&old.module))
            .collect();
        self.current = sorted(live);
        Some(ModuleChange { added, removed })
    }

    /// The target mapped executable code, as a perf record describes it: the module replaces
    /// whatever the current set had at those addresses (the kernel just mapped it there, so
    /// that is gone). None when the file cannot be found or parsed.
    pub fn mapped(&mut self, entry: &MapEntry) -> Option<ModuleChange> {
        let module = match self.symbolizer.module_for_mapping(self.pid, entry) {
            Ok(_) if !self.target_alive() => return None,
            Ok(module) => Arc::new(module),
            Err(err) => {
                tracing::debug!(pid = self.pid, path = %entry.path, %err, "mapped code not loaded");
                return None;
            }
        };
        let mut change = ModuleChange {
            added: Vec::new(),
            removed: Vec::new(),
        };
        // Known already, from the maps or an earlier record (a second executable segment).
        let known = self.current.iter().any(|l| {
            same_code(&l.module, &module)
                && l.module.avma.start <= module.avma.start
                && module.avma.end <= l.module.avma.end
        });
        if known {
            return Some(change);
        }
        self.current.retain(|l| {
            let overlaps = overlap(&l.module.avma, &module.avma);
            if overlaps {
                change.removed.extend(framehop_starts(&l.module));
            }
            !overlaps
        });
        change.added.extend(framehop_modules(&module));
        let live = self.admit(module);
        self.current.push(live);
        self.current.sort_by_key(|l| l.module.avma.start);
        Some(change)
    }

    /// The target exec()ed: its whole address space is gone; the records of the new program's
    /// mappings follow.
    pub fn exec(&mut self) -> ModuleChange {
        let removed = self
            .current
            .drain(..)
            .flat_map(|l| framehop_starts(&l.module))
            .collect();
        ModuleChange {
            added: Vec::new(),
            removed,
        }
    }

    /// Adds a module that is mapped now to those seen: the same code at the same place as
    /// before is named as before; a module mapped where another one is named is relocated.
    fn admit(&mut self, module: Arc<MappedModule>) -> Live {
        if let Some(seen) = self.seen.iter().find(|s| same_code(&s.module, &module)) {
            return Live {
                module,
                delta: seen.delta,
            };
        }
        if self.named.len() >= MAX_MODULES_NAMED {
            // Moved where no named module is, so that its samples are not given another's
            // names: they stay unnamed.
            let delta = self.alias_for(&module);
            return Live { module, delta };
        }
        let clash = self.named.iter().any(|n| overlap(&n.avma, &module.avma));
        let (delta, named) = if clash {
            let delta = self.alias_for(&module);
            (delta, Arc::new(relocated(&module, delta)))
        } else {
            (0, Arc::clone(&module))
        };
        let live = Live { module, delta };
        self.seen.push(live.clone());
        self.named.push(named);
        live
    }

    /// A fresh place in the alias range for `module`: the delta that moves it there.
    fn alias_for(&mut self, module: &MappedModule) -> u64 {
        let start = self.next_alias;
        let len = module.avma.end.saturating_sub(module.avma.start);
        self.next_alias = start
            .saturating_add(len)
            .div_ceil(ALIAS_ALIGN)
            .saturating_add(1)
            .saturating_mul(ALIAS_ALIGN);
        start.wrapping_sub(module.avma.start)
    }
}

/// `module` moved by `delta`: ranges and bias alike, so that it names the moved addresses as
/// the original names the real ones.
fn relocated(module: &MappedModule, delta: u64) -> MappedModule {
    let shift = |range: &Range<u64>| range.start.wrapping_add(delta)..range.end.wrapping_add(delta);
    MappedModule {
        avma: shift(&module.avma),
        exec_avma: module.exec_avma.iter().map(shift).collect(),
        bias: module.bias.wrapping_add(delta),
        ..module.clone()
    }
}

fn overlap(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

/// The same file's code at the same addresses (the same object with the same load bias).
fn same_code(a: &MappedModule, b: &MappedModule) -> bool {
    let same_object = Arc::ptr_eq(&a.object, &b.object)
        || a.object
            .build_id()
            .is_some_and(|id| Some(id) == b.object.build_id());
    a.path == b.path && a.bias == b.bias && a.is_vdso == b.is_vdso && same_object
}

/// The same module over the same range: nothing for framehop to change.
fn same_mapping(a: &MappedModule, b: &MappedModule) -> bool {
    a.avma == b.avma && same_code(a, b)
}

/// Sorted by start address for binary search; the symbolizer's main-binary-first order is kept
/// separately in `named`.
fn sorted(mut modules: Vec<Live>) -> Vec<Live> {
    modules.sort_by_key(|l| l.module.avma.start);
    modules
}

fn maps_code(module: &MappedModule, addr: u64) -> bool {
    module.avma.contains(&addr)
}

/// Which of a file's unwind tables framehop reads for a piece of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tables {
    /// Both as found (framehop prefers `.eh_frame`).
    Both,
    EhFrame,
    DebugFrame,
}

/// The address ranges framehop gets as modules for `module`: the whole of it, or, where code
/// is only described by `.debug_frame` while the rest is by `.eh_frame` (Go's code in a cgo
/// program), that code apart from the rest, since framehop reads one table per module.
fn framehop_pieces(module: &MappedModule, s: &UnwindSections) -> Vec<(Range<u64>, Tables)> {
    let avma = &module.avma;
    let only = s.debug_frame_only.as_ref().and_then(|svma| {
        let start = svma
            .start
            .checked_add(module.bias)?
            .clamp(avma.start, avma.end);
        let end = svma
            .end
            .checked_add(module.bias)?
            .clamp(avma.start, avma.end);
        (start < end).then_some(start..end)
    });
    let Some(only) = only else {
        return vec![(avma.clone(), Tables::Both)];
    };
    [
        (avma.start..only.start, Tables::EhFrame),
        (only.clone(), Tables::DebugFrame),
        (only.end..avma.end, Tables::EhFrame),
    ]
    .into_iter()
    .filter(|(range, _)| !range.is_empty())
    .collect()
}

/// Where each of `module`'s framehop modules starts: how framehop removes them.
fn framehop_starts(module: &MappedModule) -> Vec<u64> {
    framehop_pieces(module, &module.object.unwind_sections())
        .into_iter()
        .map(|(range, _)| range.start)
        .collect()
}

/// `module` as framehop modules: ELF SVMAs are the file's own vaddrs (base_svma 0), so each
/// one's base AVMA is the load bias.
fn framehop_modules(module: &MappedModule) -> Vec<Module<Bytes>> {
    let s = module.object.unwind_sections();
    let base_avma = module.bias.wrapping_add(s.base_svma);
    framehop_pieces(module, &s)
        .into_iter()
        .map(|(range, tables)| {
            let s = s.clone();
            let eh = tables != Tables::DebugFrame;
            let info = ExplicitModuleSectionInfo {
                base_svma: s.base_svma,
                text_svma: s.text_svma,
                text: s.text,
                got_svma: s.got_svma,
                eh_frame_svma: s.eh_frame_svma.filter(|_| eh),
                eh_frame: s.eh_frame.filter(|_| eh),
                eh_frame_hdr_svma: s.eh_frame_hdr_svma.filter(|_| eh),
                eh_frame_hdr: s.eh_frame_hdr.filter(|_| eh),
                debug_frame: s.debug_frame.filter(|_| tables != Tables::EhFrame),
                // Mach-O only.
                stubs_svma: None,
                stub_helper_svma: None,
                unwind_info: None,
                text_segment_svma: None,
                text_segment: None,
            };
            Module::new(module.path.clone(), range, base_avma, info)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `object` mapped at `start..start + 0x4000`, its code in the second page.
    fn mapped_at(
        path: &str,
        object: &Arc<rprof_symbolizer::ObjectInfo>,
        start: u64,
    ) -> Arc<MappedModule> {
        Arc::new(MappedModule {
            path: path.into(),
            avma: start..start + 0x4000,
            exec_avma: std::iter::once(start + 0x1000..start + 0x2000).collect(),
            file_offset: 0,
            bias: start,
            object: Arc::clone(object),
            is_vdso: false,
            is_main: false,
        })
    }

    /// Maps `module` as a record would: in place of whatever overlaps it.
    fn map(set: &mut ModuleSet, module: Arc<MappedModule>) {
        set.current
            .retain(|l| !overlap(&l.module.avma, &module.avma));
        let live = set.admit(module);
        set.current.push(live);
        set.current.sort_by_key(|l| l.module.avma.start);
    }

    fn translated(set: &ModuleSet, address: u64) -> u64 {
        let mut addresses = [address];
        set.translate(&mut addresses);
        addresses[0]
    }

    #[test]
    fn code_mapped_where_other_code_was_is_named_apart() {
        let symbolizer = Arc::new(Symbolizer::new());
        let exe = std::env::current_exe().unwrap();
        let a = symbolizer.load_file(&exe).unwrap();
        let b = symbolizer.load_file("/bin/sh").unwrap();
        assert_ne!(a.build_id(), b.build_id(), "two different files are needed");
        let mut set = ModuleSet::empty(1, symbolizer);
        const START: u64 = 0x40_0000;
        let pc = START + 0x1234;

        // The first module at these addresses keeps its real addresses.
        map(&mut set, mapped_at("/a", &a, START));
        assert_eq!(translated(&set, pc), pc);
        assert_eq!(set.find(pc).unwrap().path, "/a");

        // Another file at the same addresses (an exec, or a dlclose then dlopen of another
        // library): its samples go elsewhere, and the earlier ones keep their name.
        set.exec();
        map(&mut set, mapped_at("/b", &b, START));
        let moved = translated(&set, pc);
        assert!(moved >= ALIAS_BASE, "{moved:#x}");
        let named_b = set.find(moved).unwrap();
        assert_eq!(named_b.path, "/b");
        assert_eq!(
            named_b.svma(moved),
            pc - START,
            "the same offset in the file"
        );
        assert!(named_b.avma.contains(&moved) && named_b.contains_code(moved));
        assert_eq!(set.find(pc).unwrap().path, "/a");

        // The first one again, at the same place: named as before, no new mapping.
        map(&mut set, mapped_at("/a", &a, START));
        assert_eq!(translated(&set, pc), pc);
        map(&mut set, mapped_at("/b", &b, START));
        assert_eq!(translated(&set, pc), moved);
        assert_eq!(set.all().len(), 2);

        // Elsewhere, nothing clashes: real addresses.
        map(&mut set, mapped_at("/b", &b, 0x80_0000));
        assert_eq!(translated(&set, 0x80_1234), 0x80_1234);
        // Addresses in no module are left alone.
        assert_eq!(translated(&set, 0x10), 0x10);
        assert_eq!(set.all().len(), 3);
    }

    #[test]
    fn exec_forgets_every_current_module() {
        let symbolizer = Arc::new(Symbolizer::new());
        let a = symbolizer
            .load_file(std::env::current_exe().unwrap())
            .unwrap();
        let mut set = ModuleSet::empty(1, symbolizer);
        map(&mut set, mapped_at("/a", &a, 0x40_0000));
        map(&mut set, mapped_at("/a", &a, 0x80_0000));
        assert!(set.contains(0x40_1000));
        let change = set.exec();
        assert_eq!(change.removed, [0x40_0000, 0x80_0000]);
        assert!(!set.contains(0x40_1000) && !set.contains(0x80_1000));
        // Still named: samples taken before the exec need it.
        assert_eq!(set.find(0x40_1000).unwrap().path, "/a");
    }

    #[test]
    fn code_only_debug_frame_describes_is_a_framehop_module_apart() {
        let symbolizer = Arc::new(Symbolizer::new());
        let exe = symbolizer
            .load_file(std::env::current_exe().unwrap())
            .unwrap();
        // Mapped at 0x40_0000..0x40_4000 with bias 0x40_0000.
        let module = mapped_at("/a", &exe, 0x40_0000);
        let mut sections = exe.unwind_sections();
        assert_eq!(
            framehop_pieces(&module, &sections),
            [(0x40_0000..0x40_4000, Tables::Both)]
        );
        // Go's code (SVMAs 0x1000..0x2000) apart from the C code around it.
        sections.debug_frame_only = Some(0x1000..0x2000);
        assert_eq!(
            framehop_pieces(&module, &sections),
            [
                (0x40_0000..0x40_1000, Tables::EhFrame),
                (0x40_1000..0x40_2000, Tables::DebugFrame),
                (0x40_2000..0x40_4000, Tables::EhFrame),
            ]
        );
        // Clipped to the mapping; nothing empty.
        sections.debug_frame_only = Some(0..0x8000);
        assert_eq!(
            framehop_pieces(&module, &sections),
            [(0x40_0000..0x40_4000, Tables::DebugFrame)]
        );
        sections.debug_frame_only = Some(0x9000..0xa000);
        assert_eq!(
            framehop_pieces(&module, &sections),
            [(0x40_0000..0x40_4000, Tables::Both)]
        );
    }
}
