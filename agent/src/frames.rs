//! Named frames for text and JSON output: each unwound address expanded into its inline frames.

use serde::Serialize;

use rprof_symbolizer::Frame;

use crate::unwind::ModuleSet;

/// One function activation on a stack, as a person reads it.
#[derive(Debug, Clone, Serialize)]
pub struct NamedFrame {
    /// Lookup address (return address minus one for callers).
    pub address: u64,
    /// Demangled function name; None when the address could not be named.
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
    /// True when this function was inlined into the next frame (same address).
    pub inlined: bool,
    /// Path of the mapped file that holds the address.
    pub module: Option<String>,
    /// The address relative to that file (an SVMA, what `addr2line -e FILE` takes).
    pub module_offset: Option<u64>,
}

/// Expands `addresses` (leaf first) into named frames (leaf first, inlined callees before their
/// physical caller).
pub fn name_stack(modules: &ModuleSet, addresses: &[u64]) -> Vec<NamedFrame> {
    addresses
        .iter()
        .flat_map(|&a| name_address(modules, a))
        .collect()
}

impl NamedFrame {
    /// An address nothing could name, outside every known module.
    fn unnamed(address: u64) -> Self {
        NamedFrame {
            address,
            function: None,
            file: None,
            line: None,
            inlined: false,
            module: None,
            module_offset: None,
        }
    }
}

fn name_address(modules: &ModuleSet, address: u64) -> Vec<NamedFrame> {
    let Some(module) = modules.find(address) else {
        let mut frame = NamedFrame::unnamed(address);
        frame.function = modules.jit_name(address).map(str::to_owned);
        return vec![frame];
    };
    let svma = address.wrapping_sub(module.bias);
    let mut frames = module.object.symbolize(svma);
    if frames.is_empty() {
        frames.push(module_relative(&module.path, svma));
    }
    frames
        .into_iter()
        .map(|f| NamedFrame {
            address,
            function: f.function.or(f.system_name),
            file: f.file,
            line: f.line,
            inlined: f.inlined,
            module: Some(module.path.clone()),
            module_offset: Some(svma),
        })
        .collect()
}

/// A frame for an address that neither symbols nor unwind tables cover: named after the
/// address itself, module-relative (`redis-server+0x4c3f6`), which survives ASLR and is what
/// `addr2line -e FILE` takes.
pub fn module_relative(path: &str, svma: u64) -> Frame {
    let file = path.rsplit('/').next().unwrap_or(path);
    Frame {
        function: Some(format!("{file}+{svma:#x}")),
        ..Frame::default()
    }
}
