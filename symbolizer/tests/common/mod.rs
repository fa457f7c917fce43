//! Shared helpers for the integration tests: build real programs with the system toolchain and
//! read facts about them with binutils (an oracle independent of this crate).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A scratch directory removed when dropped.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("create temp dir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `text` to `name` and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).expect("write source");
        path
    }
}

/// Runs a command, panicking with its output if it fails (a test that cannot build its
/// program must fail loudly).
pub fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// Compiles `source` with `compiler` (gcc, g++) and `flags` into `output`.
pub fn compile(compiler: &str, source: &Path, output: &Path, flags: &[&str]) {
    run(Command::new(compiler)
        .args(flags)
        .arg("-o")
        .arg(output)
        .arg(source));
}

/// A symbol's address and size, from `nm -S` (defined symbols only).
pub fn nm_symbol(binary: &Path, name: &str) -> (u64, u64) {
    let out = run(Command::new("nm")
        .arg("-S")
        .arg("--defined-only")
        .arg(binary));
    out.lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [addr, size, _, sym] if *sym == name => Some((
                    u64::from_str_radix(addr, 16).unwrap(),
                    u64::from_str_radix(size, 16).unwrap(),
                )),
                _ => None,
            }
        })
        .unwrap_or_else(|| panic!("{name} not in nm output of {}", binary.display()))
}

/// All (mangled name, address, size) of defined text symbols, from `nm -S`.
pub fn nm_text_symbols(binary: &Path) -> Vec<(String, u64, u64)> {
    let out = run(Command::new("nm")
        .arg("-S")
        .arg("--defined-only")
        .arg(binary));
    out.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [addr, size, kind, sym] if kind.eq_ignore_ascii_case("t") => Some((
                    sym.to_string(),
                    u64::from_str_radix(addr, 16).ok()?,
                    u64::from_str_radix(size, 16).ok()?,
                )),
                _ => None,
            }
        })
        .collect()
}

/// The PLT stubs objdump names (`0000000000001060 <strtol@plt>:`) in `.plt`, `.plt.sec` and
/// `.plt.got`, as (name with `@plt`, address). Stubs objdump cannot name (`*ABS*+0x...@plt`,
/// IRELATIVE) are left out.
pub fn objdump_plt_stubs(binary: &Path) -> Vec<(String, u64)> {
    let mut stubs = Vec::new();
    for section in [".plt", ".plt.sec", ".plt.got"] {
        let out = Command::new("objdump")
            .args(["-d", "--section", section])
            .arg(binary)
            .output()
            .expect("run objdump");
        // objdump fails for an absent section: no stubs there.
        let text = String::from_utf8_lossy(&out.stdout);
        stubs.extend(text.lines().filter_map(|line| {
            let (address, rest) = line.split_once(" <")?;
            let name = rest.strip_suffix(">:")?;
            if !name.ends_with("@plt") || name.starts_with('*') {
                return None;
            }
            Some((name.to_owned(), u64::from_str_radix(address, 16).ok()?))
        }));
    }
    stubs
}

/// The 1-based line of the only line of `source` containing `marker`.
pub fn marker_line(source: &Path, marker: &str) -> u32 {
    let text = std::fs::read_to_string(source).unwrap();
    let lines: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, line)| line.contains(marker))
        .map(|(index, _)| index + 1)
        .collect();
    assert_eq!(lines.len(), 1, "marker {marker} must appear exactly once");
    u32::try_from(lines[0]).unwrap()
}

/// The GNU build id, as hex, per `readelf -n`.
pub fn readelf_build_id(binary: &Path) -> String {
    let out = run(Command::new("readelf").arg("-n").arg(binary));
    out.lines()
        .find_map(|line| line.trim().strip_prefix("Build ID: ").map(str::to_owned))
        .unwrap_or_else(|| panic!("no build id in {}", binary.display()))
}

/// binutils' `addr2line -f -i -C` for one address: (function, file, line) innermost first.
pub fn binutils_addr2line(binary: &Path, address: u64) -> Vec<(String, String, u32)> {
    let out = run(Command::new("addr2line")
        .args(["-f", "-i", "-C", "-e"])
        .arg(binary)
        .arg(format!("{address:#x}")));
    let lines: Vec<&str> = out.lines().collect();
    lines
        .chunks(2)
        .map(|pair| {
            let (file, line) = pair[1].rsplit_once(':').unwrap();
            // "file:line (discriminator N)"
            let line = line.split_whitespace().next().unwrap();
            (
                pair[0].to_owned(),
                file.to_owned(),
                line.parse().unwrap_or(0),
            )
        })
        .collect()
}

/// The MiniDebugInfo recipe from gdb's manual (and Fedora's find-debuginfo): a fully stripped
/// copy of `binary` carrying, xz-compressed in `.gnu_debugdata`, a `.symtab` of `keep`.
pub fn with_minidebuginfo(scratch: &Scratch, binary: &Path, keep: &[&str]) -> PathBuf {
    let name = binary.file_name().unwrap().to_str().unwrap();
    let keep_file = scratch.path(&format!("{name}.keep"));
    std::fs::write(&keep_file, keep.join("\n")).unwrap();
    let full_debug = scratch.path(&format!("{name}.full.debug"));
    keep_debug_only(binary, &full_debug);
    let mini = scratch.path(&format!("{name}.mini"));
    run(Command::new("objcopy")
        .args(["-S", "--remove-section", ".comment"])
        .arg(format!("--keep-symbols={}", keep_file.display()))
        .arg(&full_debug)
        .arg(&mini));
    run(Command::new("xz").arg("-kf").arg(&mini));
    let stripped = scratch.path(&format!("{name}.minidebuginfo"));
    strip_all(binary, &stripped);
    run(Command::new("objcopy")
        .arg(format!(
            "--add-section=.gnu_debugdata={}.xz",
            mini.display()
        ))
        .arg(&stripped));
    stripped
}

/// A child process killed when dropped.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `program` with a piped stdout and returns it with the first line it prints (the
/// programs print their facts, then wait).
pub fn spawn_and_read_line(program: &mut Command) -> (ChildGuard, String) {
    use std::io::BufRead;
    let mut child = program
        .stdout(Stdio::piped())
        .stdin(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot spawn {program:?}: {err}"));
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read child's first line");
    (ChildGuard(child), line.trim().to_owned())
}

/// `objcopy --only-keep-debug` + `strip` + `--add-gnu-debuglink` on `binary` (in the scratch
/// directory): the stripped copy and its debug file, put at `debug_dir` (relative to the
/// scratch directory).
pub fn split_debug(scratch: &Scratch, binary: &Path, debug_dir: &str) -> (PathBuf, PathBuf) {
    let name = binary.file_name().unwrap().to_str().unwrap();
    let debug = scratch.path(&format!("{name}.debug"));
    keep_debug_only(binary, &debug);
    let stripped = scratch.path(&format!("{name}.stripped"));
    strip_all(binary, &stripped);
    // --add-gnu-debuglink reads the debug file (for its CRC) at the path given.
    run(Command::new("objcopy")
        .arg(format!("--add-gnu-debuglink={}", debug.display()))
        .arg(&stripped)
        .current_dir(scratch.path("")));
    let placed = scratch.path(debug_dir).join(format!("{name}.debug"));
    if placed != debug {
        std::fs::create_dir_all(placed.parent().unwrap()).unwrap();
        std::fs::rename(&debug, &placed).unwrap();
    }
    (stripped, placed)
}

/// `objcopy --only-keep-debug binary out`.
pub fn keep_debug_only(binary: &Path, out: &Path) {
    run(Command::new("objcopy")
        .arg("--only-keep-debug")
        .arg(binary)
        .arg(out));
}

/// `strip --strip-all -o out binary`.
pub fn strip_all(binary: &Path, out: &Path) {
    run(Command::new("strip")
        .arg("--strip-all")
        .arg("-o")
        .arg(out)
        .arg(binary));
}
