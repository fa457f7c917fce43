//! What a test program's binary contains: lets a test check its own premise (a binary
//! without DWARF, one without .eh_frame) before it checks the agent.

use std::fmt::Write;
use std::path::Path;

use object::{Object, ObjectSection, ObjectSymbol};

fn with_elf<T>(path: &Path, read: impl FnOnce(&object::File<'_>) -> T) -> T {
    let data = std::fs::read(path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    let file = object::File::parse(data.as_slice())
        .unwrap_or_else(|err| panic!("parse {} as an object file: {err}", path.display()));
    read(&file)
}

/// The names of the binary's sections.
pub fn section_names(path: &Path) -> Vec<String> {
    with_elf(path, |file| {
        file.sections()
            .filter_map(|section| section.name().ok().map(str::to_owned))
            .collect()
    })
}

/// The binary's GNU build id in lowercase hex, if it has one.
pub fn build_id(path: &Path) -> Option<String> {
    with_elf(path, |file| {
        let id = file
            .build_id()
            .unwrap_or_else(|err| panic!("read the build id of {}: {err}", path.display()))?;
        let mut hex = String::with_capacity(2 * id.len());
        for byte in id {
            write!(hex, "{byte:02x}").expect("writing to a String cannot fail");
        }
        Some(hex)
    })
}

/// The address (SVMA) of the function symbol `name` in the binary's symbol tables.
pub fn symbol_address(path: &Path, name: &str) -> Option<u64> {
    with_elf(path, |file| {
        file.symbols()
            .chain(file.dynamic_symbols())
            .find(|symbol| symbol.name() == Ok(name))
            .map(|symbol| symbol.address())
    })
}
