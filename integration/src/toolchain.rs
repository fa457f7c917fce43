//! Finding the compilers and building the test programs.
//!
//! Builds land in `<target>/rprof-integration/programs/<name>-<fingerprint>/<name>`, where the
//! fingerprint hashes the compiler's version, the flags and the sources. A build is therefore
//! reused across test runs and test processes as long as nothing it depends on changed, and the
//! binary keeps the program's own name (which becomes its `comm`, its thread name).

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use crate::process::{Finished, Running};
use crate::SETUP_HINT;

/// The workspace root: the parent of this crate's directory.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .expect("the integration crate lives inside the workspace")
        .to_path_buf()
}

/// The cargo target directory: `$CARGO_TARGET_DIR` if set, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        // A relative CARGO_TARGET_DIR is relative to where cargo runs: the workspace.
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// The sources of the test programs.
pub fn programs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("programs")
}

/// Where the built programs and the Go build cache live.
fn cache_dir() -> PathBuf {
    target_dir().join("rprof-integration")
}

/// Finds `name` on `PATH`, or panics naming what it is for and how to get it.
pub fn find_tool(name: &str, needed_for: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
        .unwrap_or_else(|| {
            panic!("`{name}` is not on PATH but is needed to {needed_for}: {SETUP_HINT}")
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Builds `programs/<name>.c` with gcc and `flags` (plus `-pthread`, which every program may
/// need and none is hurt by), and returns the binary's path.
pub fn build_c(name: &str, flags: &[&str]) -> PathBuf {
    build_with_gcc_driver("gcc", "c", name, flags)
}

/// Builds `programs/<name>.cpp` with g++ and `flags` (plus `-pthread`), and returns the
/// binary's path.
pub fn build_cpp(name: &str, flags: &[&str]) -> PathBuf {
    build_with_gcc_driver("g++", "cpp", name, flags)
}

/// gcc and g++ take the same command line: `FLAGS -pthread -o OUT SOURCE`.
fn build_with_gcc_driver(driver: &str, extension: &str, name: &str, flags: &[&str]) -> PathBuf {
    let source = programs_dir().join(format!("{name}.{extension}"));
    let compiler = find_tool(driver, &format!("build the .{extension} test programs"));
    compile(&compiler, name, flags, &source, |out| {
        let mut cmd = Command::new(&compiler);
        cmd.args(flags)
            .arg("-pthread")
            .arg("-o")
            .arg(out)
            .arg(&source);
        cmd
    })
}

/// Builds `programs/<name>.rs`, a single-file crate without dependencies, with rustc and
/// `flags`, and returns the binary's path. The crate is named after the file.
pub fn build_rust(name: &str, flags: &[&str]) -> PathBuf {
    let source = programs_dir().join(format!("{name}.rs"));
    let rustc = find_tool("rustc", "build the Rust test programs");
    compile(&rustc, name, flags, &source, |out| {
        let mut cmd = Command::new(&rustc);
        cmd.args(["--edition", "2021", "--crate-type", "bin"])
            .args(flags)
            .arg("-o")
            .arg(out)
            .arg(&source);
        cmd
    })
}

/// Builds the Go package in `programs/<name>/` (standard library only) with `go build` and
/// `flags`, and returns the binary's path.
pub fn build_go(name: &str, flags: &[&str]) -> PathBuf {
    let package = programs_dir().join(name);
    let go = find_tool("go", "build the Go test programs");
    compile(&go, name, flags, &package, |out| {
        let mut cmd = Command::new(&go);
        cmd.arg("build").args(flags).arg("-o").arg(out).arg(".");
        cmd.current_dir(&package);
        configure_go(&mut cmd);
        cmd
    })
}

/// Makes `go` hermetic: GOPATH mode (the programs use only the standard library, so no module
/// download can be wanted), its caches under the target directory rather than `$HOME`, and
/// none of the user's go.env or GOFLAGS.
fn configure_go(cmd: &mut Command) {
    let cache = cache_dir();
    cmd.env("GO111MODULE", "off")
        .env("GOENV", "off")
        .env("GOFLAGS", "")
        .env("GOCACHE", cache.join("go-build"))
        .env("GOPATH", cache.join("go-path"));
}

/// Returns a copy of `binary` with its debug sections removed by `strip --strip-debug`; the
/// symbol table stays.
pub fn strip_debug(binary: &Path) -> PathBuf {
    strip(binary, "--strip-debug")
}

/// A copy of `binary` without any symbol table but the dynamic one (`strip --strip-all`), as
/// distributions ship servers: what names remain come from `.dynsym`; `.eh_frame` stays.
pub fn strip_all(binary: &Path) -> PathBuf {
    strip(binary, "--strip-all")
}

fn strip(binary: &Path, how: &str) -> PathBuf {
    let strip = find_tool("strip", "strip a test program");
    let name = file_name(binary);
    let flags = [how];
    compile(&strip, &name, &flags, binary, |out| {
        let mut cmd = Command::new(&strip);
        cmd.args(flags).arg("-o").arg(out).arg(binary);
        cmd
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .and_then(OsStr::to_str)
        .unwrap_or_else(|| panic!("{} has no UTF-8 file name", path.display()))
        .to_owned()
}

/// `go tool pprof ARGS TARGET` (a file or a URL), which must succeed: what it printed.
pub fn pprof_output(args: &[&str], target: &OsStr) -> String {
    let mut all: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    all.push(target);
    let finished = go_tool_pprof(&all);
    assert!(
        finished.status.success(),
        "go tool pprof {args:?} {target:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        finished.status,
        finished.stdout,
        finished.stderr
    );
    finished.stdout
}

/// Runs `go tool pprof ARGS` the way a user would, with `$HOME` (where pprof saves copies and
/// reads its settings) pointing at a fresh directory, and returns what it printed.
pub fn go_tool_pprof(args: &[&OsStr]) -> Finished {
    let go = find_tool("go", "read profiles with `go tool pprof`");
    let home = tempfile::tempdir().expect("create a HOME for go tool pprof");
    let mut cmd = Command::new(go);
    cmd.args(["tool", "pprof"]).args(args);
    cmd.env("HOME", home.path())
        .env("PPROF_TMPDIR", home.path());
    configure_go(&mut cmd);
    Running::spawn(cmd, "go tool pprof").finish(Duration::from_secs(120))
}

/// Builds `name` with `command(out)` unless an identical build exists, and returns its path.
///
/// The per-process table makes concurrent tests asking for the same program wait for one build
/// instead of racing; the rename makes a build visible to other processes only once complete.
fn compile(
    tool: &Path,
    name: &str,
    flags: &[&str],
    input: &Path,
    command: impl FnOnce(&Path) -> Command,
) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let key = format!("{name}-{:016x}", fingerprint(tool, flags, input));
    let mut built = BUILT
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(path) = built.get(&key) {
        return path.clone();
    }
    let dir = cache_dir().join("programs").join(&key);
    let binary = dir.join(name);
    if !binary.exists() {
        build_into(&dir, name, command);
    }
    built.insert(key, binary.clone());
    binary
}

/// Runs the build in a private directory, then renames that directory to `dir`.
fn build_into(dir: &Path, name: &str, command: impl FnOnce(&Path) -> Command) {
    let parent = dir.parent().expect("a cache entry has a parent");
    fs::create_dir_all(parent).unwrap_or_else(|err| panic!("create {}: {err}", parent.display()));
    let scratch = tempfile::Builder::new()
        .prefix(".building-")
        .tempdir_in(parent)
        .unwrap_or_else(|err| panic!("create a build directory in {}: {err}", parent.display()));
    let mut cmd = command(&scratch.path().join(name));
    let output = cmd
        .output()
        .unwrap_or_else(|err| panic!("run {cmd:?}: {err}"));
    assert!(
        output.status.success(),
        "building {name} failed ({}): {cmd:?}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    // Another test process may have finished the same build first: then its copy is as good.
    if fs::rename(scratch.path(), dir).is_err() && !dir.join(name).exists() {
        panic!("cannot move the build of {name} into {}", dir.display());
    }
}

/// Hashes what a build's output depends on: the tool's version, the flags and the input file
/// (or, for a directory, every file in it).
fn fingerprint(tool: &Path, flags: &[&str], input: &Path) -> u64 {
    let mut hasher = DefaultHasher::new();
    tool_version(tool).hash(&mut hasher);
    flags.hash(&mut hasher);
    for file in input_files(input) {
        file.file_name().hash(&mut hasher);
        fs::read(&file)
            .unwrap_or_else(|err| panic!("read {}: {err}", file.display()))
            .hash(&mut hasher);
    }
    hasher.finish()
}

fn input_files(input: &Path) -> Vec<PathBuf> {
    if !input.is_dir() {
        return vec![input.to_path_buf()];
    }
    let entries =
        fs::read_dir(input).unwrap_or_else(|err| panic!("list {}: {err}", input.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("read a directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// The tool's self-reported version (`go version`, `<tool> --version` otherwise).
fn tool_version(tool: &Path) -> Vec<u8> {
    let arg = if tool.ends_with("go") {
        "version"
    } else {
        "--version"
    };
    let output = Command::new(tool)
        .arg(arg)
        .output()
        .unwrap_or_else(|err| panic!("run {} {arg}: {err}: {SETUP_HINT}", tool.display()));
    output.stdout
}
