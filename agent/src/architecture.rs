//! The one architecture the agent can profile: 64-bit x86-64, for the agent and its target.
//!
//! Unwinding reads x86-64 registers from perf samples and ptrace and runs framehop's x86-64
//! unwinder: a 32-bit (i386, x32) or foreign-architecture target would be unwound with the
//! wrong rules into wrong stacks, so it is refused before anything is attached.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use object::elf;

#[cfg(not(target_arch = "x86_64"))]
compile_error!(
    "rprof-agent unwinds x86-64 stacks only (x86-64 registers from perf and ptrace, framehop's \
     x86-64 unwinder): build it for an x86_64 Linux target"
);

/// Offsets in `e_ident` (the ELF specification's names; `object` has the struct, not these).
const EI_CLASS: usize = 4;
const EI_DATA: usize = 5;

/// What the agent profiles, for error messages.
const SUPPORTED: &str = "rprof-agent profiles 64-bit x86-64 programs only";

/// Fails unless process `pid` runs a 64-bit x86-64 program. A program that cannot be read
/// (permissions, a process gone) is let through: the checks that need it say why.
pub fn check_process(pid: u32) -> Result<()> {
    let exe = PathBuf::from(format!("/proc/{pid}/exe"));
    match unsupported(&exe) {
        Some(what) => bail!("PID {pid} runs {what}: {SUPPORTED}"),
        None => Ok(()),
    }
}

/// Fails unless `program` (a command to launch, found in PATH as `execvp` finds it) is a
/// 64-bit x86-64 program. Scripts and programs that cannot be found are let through: their
/// interpreter is checked by nobody, their absence by the exec.
pub fn check_command(program: &str) -> Result<()> {
    let Some(path) = find_in_path(program) else {
        return Ok(());
    };
    match unsupported(&path) {
        Some(what) => bail!("{program} is {what}: {SUPPORTED}"),
        None => Ok(()),
    }
}

/// The file `execvp` would run for `program`.
fn find_in_path(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// What the ELF file at `path` is, when it is one the agent cannot unwind ("a 32-bit x86
/// (i386) program"); None for x86-64 programs and for anything that is not a readable ELF file.
fn unsupported(path: &Path) -> Option<String> {
    // e_ident (16 bytes), e_type (2), e_machine (2): the same offsets in both ELF classes.
    let mut header = [0u8; 20];
    std::fs::File::open(path)
        .and_then(|mut file| file.read_exact(&mut header))
        .ok()?;
    describe(&header)
}

/// The description of an ELF header's class and machine, None when it is x86-64 or no ELF.
fn describe(header: &[u8; 20]) -> Option<String> {
    if header[..4] != elf::ELFMAG {
        return None;
    }
    let machine_bytes = [header[18], header[19]];
    let machine = match header[EI_DATA] {
        elf::ELFDATA2MSB => u16::from_be_bytes(machine_bytes),
        _ => u16::from_le_bytes(machine_bytes),
    };
    let bits = match header[EI_CLASS] {
        elf::ELFCLASS32 => 32,
        elf::ELFCLASS64 => 64,
        _ => return Some("an ELF file of unknown class".to_string()),
    };
    let name = match machine {
        elf::EM_X86_64 if bits == 64 => return None,
        elf::EM_X86_64 => "x86-64 x32-ABI",
        elf::EM_386 => "x86 (i386)",
        elf::EM_AARCH64 => "aarch64",
        elf::EM_ARM => "ARM",
        elf::EM_RISCV => "RISC-V",
        elf::EM_PPC64 => "POWER",
        elf::EM_S390 => "s390x",
        _ => return Some(format!("a {bits}-bit program for ELF machine {machine}")),
    };
    Some(format!("a {bits}-bit {name} program"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(class: u8, data: u8, machine: u16) -> [u8; 20] {
        let mut header = [0u8; 20];
        header[..4].copy_from_slice(&elf::ELFMAG);
        header[EI_CLASS] = class;
        header[EI_DATA] = data;
        header[18..20].copy_from_slice(&machine.to_le_bytes());
        header
    }

    #[test]
    fn only_64_bit_x86_64_passes() {
        let le = elf::ELFDATA2LSB;
        assert_eq!(describe(&header(elf::ELFCLASS64, le, elf::EM_X86_64)), None);
        assert_eq!(
            describe(&header(elf::ELFCLASS32, le, elf::EM_386)).as_deref(),
            Some("a 32-bit x86 (i386) program")
        );
        assert_eq!(
            describe(&header(elf::ELFCLASS32, le, elf::EM_X86_64)).as_deref(),
            Some("a 32-bit x86-64 x32-ABI program")
        );
        assert_eq!(
            describe(&header(elf::ELFCLASS64, le, elf::EM_AARCH64)).as_deref(),
            Some("a 64-bit aarch64 program")
        );
        assert_eq!(describe(&[0u8; 20]), None);
    }

    #[test]
    fn this_process_passes() {
        check_process(std::process::id()).expect("the agent's own tests run on x86-64");
    }
}
