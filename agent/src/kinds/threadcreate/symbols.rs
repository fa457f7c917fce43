//! Finding functions in an ELF file by name: their addresses, sizes and file offsets.

use object::{Object, ObjectSegment, ObjectSymbol, SymbolKind};

/// A function an ELF file defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionSymbol {
    /// Its address in the file's own address space (svma).
    pub address: u64,
    pub size: u64,
    /// Where its first instruction lies in the file.
    pub file_offset: u64,
}

/// Every definition of the functions `names` in the ELF image `data`, one per distinct address,
/// with the name it was found under: `.dynsym` (what a shared library exports, under each
/// symbol version) and `.symtab` (the functions of a static or Go binary). Empty if it defines
/// none of them, or if `data` is not ELF.
pub fn find_functions<'n>(data: &[u8], names: &[&'n str]) -> Vec<(&'n str, FunctionSymbol)> {
    let Ok(file) = object::File::parse(data) else {
        return Vec::new();
    };
    let mut found: Vec<(&str, FunctionSymbol)> = Vec::new();
    for symbol in file.dynamic_symbols().chain(file.symbols()) {
        let Some(name) = defined_function_name(&symbol, names) else {
            continue;
        };
        if found.iter().any(|(_, f)| f.address == symbol.address()) {
            continue;
        }
        if let Some(file_offset) = file_offset(&file, symbol.address()) {
            let function = FunctionSymbol {
                address: symbol.address(),
                size: symbol.size(),
                file_offset,
            };
            found.push((name, function));
        }
    }
    found
}

/// The one of `names` that `symbol` defines as a function, if any.
fn defined_function_name<'data, 'n>(
    symbol: &impl ObjectSymbol<'data>,
    names: &[&'n str],
) -> Option<&'n str> {
    if symbol.kind() != SymbolKind::Text || !symbol.is_definition() {
        return None;
    }
    let bytes = symbol.name_bytes().ok()?;
    names.iter().copied().find(|name| name.as_bytes() == bytes)
}

/// `address - p_vaddr + p_offset` for the loadable segment whose file bytes hold `address`.
fn file_offset(file: &object::File<'_>, address: u64) -> Option<u64> {
    file.segments().find_map(|segment| {
        let (offset, size) = segment.file_range();
        let delta = address.checked_sub(segment.address())?;
        if delta < size {
            offset.checked_add(delta)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test binary, which links libc dynamically: it imports pthread_create (no
    /// definition) and defines its own functions.
    fn own_image() -> Vec<u8> {
        std::fs::read("/proc/self/exe").unwrap()
    }

    #[test]
    fn an_imported_function_is_not_a_definition() {
        assert!(find_functions(&own_image(), &["pthread_create"]).is_empty());
    }

    #[test]
    fn a_defined_function_maps_to_its_file_offset() {
        let image = own_image();
        let found = find_functions(&image, &["no_such_function", "main"]);
        assert_eq!(found.len(), 1, "{found:?}");
        let (name, main) = found[0];
        assert_eq!(name, "main");
        // The bytes at the file offset are the code the symbol's address names: compare them
        // with what this very process runs at main's run-time address.
        let runtime = main_runtime_address();
        let bias = runtime - main.address;
        let code = read_own_memory(bias + main.address, 16);
        let offset = usize::try_from(main.file_offset).unwrap();
        assert_eq!(&image[offset..offset + 16], code.as_slice());
    }

    #[test]
    fn garbage_is_not_an_elf_file() {
        assert!(find_functions(b"\x7fELF garbage", &["main"]).is_empty());
        assert!(find_functions(&[], &["main"]).is_empty());
    }

    extern "C" {
        fn main(argc: i32, argv: *const *const u8) -> i32;
    }

    fn main_runtime_address() -> u64 {
        main as *const () as u64
    }

    /// Reads our own memory through /proc/self/mem: no unsafe needed.
    fn read_own_memory(address: u64, len: usize) -> Vec<u8> {
        use std::os::unix::fs::FileExt;
        let mem = std::fs::File::open("/proc/self/mem").unwrap();
        let mut bytes = vec![0; len];
        mem.read_exact_at(&mut bytes, address).unwrap();
        bytes
    }
}
