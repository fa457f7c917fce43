//! Interns unwound addresses as pprof mappings, locations and functions, symbolizing each address
//! once, in the agent: `go tool pprof` cannot symbolize native binaries itself (no ELF symtab, no
//! inline frames, no demangling), so every location leaves here with its lines.

use std::collections::HashMap;
use std::sync::Arc;

use rprof_proto::{FunctionSpec, LineSpec, MappingSpec, ProfileBuilder};
use rprof_symbolizer::{Frame, MappedModule};

use crate::unwind::ModuleSet;

/// Frames that stand for something other than code, shown the way Go shows its own
/// (`runtime._LostExternalCode` and friends): as a function of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PseudoFrame {
    /// Samples the kernel dropped because the ring buffer was full.
    LostSamples,
    /// The root of a stack whose unwinding stopped before the thread's first frame.
    Truncated,
    /// A kernel frame whose address could not be named.
    Kernel,
    /// A thread whose stack was not captured (running in nonblocking mode, did not stop).
    NoStack,
}

impl PseudoFrame {
    pub fn name(self) -> &'static str {
        match self {
            PseudoFrame::LostSamples => "[lost samples]",
            PseudoFrame::Truncated => "[truncated stack]",
            PseudoFrame::Kernel => "[kernel]",
            PseudoFrame::NoStack => "[stack not captured]",
        }
    }
}

/// Location ids for addresses of one process, interned into one profile.
pub struct LocationTable<'m> {
    modules: &'m ModuleSet,
    mapping_ids: HashMap<*const MappedModule, u64>,
    by_address: HashMap<u64, u64>,
    pseudo: HashMap<PseudoFrame, u64>,
    kernel: HashMap<u64, u64>,
}

impl<'m> LocationTable<'m> {
    /// Adds one mapping per module, the main binary first (mapping id 1 is what pprof shows as
    /// the profiled program): after an exec, the program that runs now.
    pub fn new(modules: &'m ModuleSet, builder: &mut ProfileBuilder) -> Self {
        let all = modules.all();
        let main = all.iter().rposition(|m| m.is_main).unwrap_or(0);
        let mapping_ids = all
            .get(main)
            .into_iter()
            .chain(
                all.iter()
                    .enumerate()
                    .filter(|&(i, _)| i != main)
                    .map(|(_, m)| m),
            )
            .map(|module| {
                (
                    Arc::as_ptr(module),
                    builder.add_mapping(mapping_spec(module).as_spec()),
                )
            })
            .collect();
        LocationTable {
            modules,
            mapping_ids,
            by_address: HashMap::new(),
            pseudo: HashMap::new(),
            kernel: HashMap::new(),
        }
    }

    /// Location ids for a user stack given as lookup addresses (leaf first).
    pub fn user_stack(&mut self, builder: &mut ProfileBuilder, addresses: &[u64]) -> Vec<u64> {
        addresses
            .iter()
            .map(|&a| self.user_location(builder, a))
            .collect()
    }

    pub fn user_location(&mut self, builder: &mut ProfileBuilder, address: u64) -> u64 {
        if let Some(&id) = self.by_address.get(&address) {
            return id;
        }
        let id = match self.modules.find(address) {
            Some(module) => {
                let mapping_id = self
                    .mapping_ids
                    .get(&Arc::as_ptr(module))
                    .copied()
                    .unwrap_or(0);
                let svma = address.wrapping_sub(module.bias);
                let mut frames = module.object.symbolize(svma);
                if frames.is_empty() {
                    frames.push(crate::frames::module_relative(&module.path, svma));
                }
                add_symbolized(builder, mapping_id, address, &frames)
            }
            None => match self.modules.jit_name(address) {
                Some(name) => add_named(builder, address, name),
                None => builder.add_location(0, address, &[]),
            },
        };
        self.by_address.insert(address, id);
        id
    }

    /// A kernel frame, named by `name` when the kernel's symbols are readable.
    pub fn kernel_location(
        &mut self,
        builder: &mut ProfileBuilder,
        address: u64,
        name: Option<&str>,
    ) -> u64 {
        if let Some(&id) = self.kernel.get(&address) {
            return id;
        }
        let id = add_named(builder, address, name.unwrap_or(PseudoFrame::Kernel.name()));
        self.kernel.insert(address, id);
        id
    }

    pub fn pseudo_location(&mut self, builder: &mut ProfileBuilder, frame: PseudoFrame) -> u64 {
        *self.pseudo.entry(frame).or_insert_with(|| {
            let function = FunctionSpec {
                name: frame.name(),
                ..Default::default()
            };
            builder.add_location(
                0,
                0,
                &[LineSpec {
                    function,
                    ..Default::default()
                }],
            )
        })
    }
}

/// A location in no mapping, known only by a function name (kernel and JIT code).
fn add_named(builder: &mut ProfileBuilder, address: u64, name: &str) -> u64 {
    let function = FunctionSpec {
        name,
        ..Default::default()
    };
    builder.add_location(
        0,
        address,
        &[LineSpec {
            function,
            ..Default::default()
        }],
    )
}

/// Inline frames come innermost first with the physical function last, exactly pprof's order for
/// `Location.line`.
fn add_symbolized(
    builder: &mut ProfileBuilder,
    mapping_id: u64,
    address: u64,
    frames: &[Frame],
) -> u64 {
    let lines: Vec<LineSpec<'_>> = frames
        .iter()
        .map(|frame| {
            let name = frame
                .function
                .as_deref()
                .or(frame.system_name.as_deref())
                .unwrap_or("");
            LineSpec {
                function: FunctionSpec {
                    name,
                    system_name: frame.system_name.as_deref().unwrap_or(name),
                    filename: frame.file.as_deref().unwrap_or(""),
                    start_line: 0,
                },
                line: frame.line.map_or(0, i64::from),
                column: 0,
            }
        })
        .filter(|line| !line.function.name.is_empty())
        .collect();
    builder.add_location(mapping_id, address, &lines)
}

/// Owned pieces of a mapping description (the spec borrows strings).
struct OwnedMapping {
    module: Arc<MappedModule>,
    build_id: String,
}

fn mapping_spec(module: &Arc<MappedModule>) -> OwnedMapping {
    let object = &module.object;
    let build_id = match (object.build_id(), object.go_build_id()) {
        (Some(id), _) => id.iter().map(|b| format!("{b:02x}")).collect(),
        (None, Some(go)) => go.to_string(),
        (None, None) => String::new(),
    };
    OwnedMapping {
        module: module.clone(),
        build_id,
    }
}

impl OwnedMapping {
    fn as_spec(&self) -> MappingSpec<'_> {
        let object = &self.module.object;
        let dwarf = object.has_dwarf();
        MappingSpec {
            memory_start: self.module.avma.start,
            memory_limit: self.module.avma.end,
            file_offset: self.module.file_offset,
            filename: &self.module.path,
            build_id: &self.build_id,
            has_functions: dwarf || object.has_symbols(),
            has_filenames: dwarf,
            has_line_numbers: dwarf,
            has_inline_frames: dwarf,
        }
    }
}
