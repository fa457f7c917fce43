//! Named frames for text and JSON output: each unwound address expanded into its inline frames.

use serde::Serialize;

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
    /// An address nothing could name, in `module` when it is known.
    fn unnamed(address: u64, module: Option<String>) -> Self {
        NamedFrame {
            address,
            function: None,
            file: None,
            line: None,
            inlined: false,
            module,
        }
    }
}

fn name_address(modules: &ModuleSet, address: u64) -> Vec<NamedFrame> {
    let Some(module) = modules.find(address) else {
        let mut frame = NamedFrame::unnamed(address, None);
        frame.function = modules.jit_name(address).map(str::to_owned);
        return vec![frame];
    };
    let frames = module.object.symbolize(address.wrapping_sub(module.bias));
    if frames.is_empty() {
        return vec![NamedFrame::unnamed(address, Some(module.path.clone()))];
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
        })
        .collect()
}
