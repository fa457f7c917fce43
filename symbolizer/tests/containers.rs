//! A target in its own mount namespace and root (what a container is to the kernel): its files,
//! and its separate debug files, are found through `/proc/PID/map_files` and `/proc/PID/root`,
//! under the paths the target sees.

mod common;

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{compile, marker_line, readelf_build_id, run, spawn_and_read_line, Scratch};
use rprof_symbolizer::{Frame, Symbolizer};

/// Inside the container.
const BINARY: &str = "/bin/waiter";

fn source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/waiter.c")
}

/// Starts `BINARY` with `root` as its root directory, in a new mount namespace where the old
/// root is unmounted (pivot_root), like a container runtime does. Returns the child and the
/// address it prints.
fn start_in_container(root: &Path) -> (common::ChildGuard, u64) {
    std::fs::create_dir_all(root.join("old")).unwrap();
    let root_c = CString::new(root.to_str().unwrap()).unwrap();
    let mut command = Command::new(BINARY);
    // SAFETY: between fork and exec only async-signal-safe system calls run, on strings
    // allocated before the fork.
    unsafe {
        command.pre_exec(move || {
            let check = |rc: libc::c_int| {
                if rc == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            };
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                root_c.as_ptr(),
                root_c.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            ))?;
            check(libc::chdir(root_c.as_ptr()))?;
            let pivoted = libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c"old".as_ptr());
            check(i32::from(pivoted != 0))?;
            check(libc::chdir(c"/".as_ptr()))?;
            check(libc::umount2(c"/old".as_ptr(), libc::MNT_DETACH))
        });
    }
    let (child, line) = spawn_and_read_line(&mut command);
    let address = u64::from_str_radix(line.trim_start_matches("0x"), 16)
        .unwrap_or_else(|_| panic!("unexpected output {line:?}"));
    (child, address)
}

/// Builds waiter.c static at -O2 -g, splits its debug information off, and installs the
/// stripped binary at `root/bin/waiter`. Returns (unstripped binary, debug file).
fn install(scratch: &Scratch, root: &Path, flags: &[&str]) -> (PathBuf, PathBuf) {
    let full = scratch.path("waiter.full");
    let mut all = vec!["-static", "-O2", "-g"];
    all.extend_from_slice(flags);
    compile("gcc", &source(), &full, &all);
    let debug = scratch.path("waiter.debug");
    run(Command::new("objcopy")
        .arg("--only-keep-debug")
        .arg(&full)
        .arg(&debug));
    let stripped = root.join("bin/waiter");
    std::fs::create_dir_all(stripped.parent().unwrap()).unwrap();
    run(Command::new("strip")
        .arg("--strip-all")
        .arg("-o")
        .arg(&stripped)
        .arg(&full));
    (full, debug)
}

fn expected_frame() -> Frame {
    Frame {
        function: Some("wait_for_stdin".to_owned()),
        system_name: Some("wait_for_stdin".to_owned()),
        file: Some(source().to_str().unwrap().to_owned()),
        line: Some(marker_line(&source(), "MARK_WAIT")),
        inlined: false,
    }
}

fn check_symbolized(pid: u32, address: u64) {
    let modules = Symbolizer::new().modules(pid).unwrap();
    let main = &modules[0];
    assert!(main.is_main);
    // The path as the target sees it; the host has no such file.
    assert_eq!(main.path, BINARY);
    assert!(
        !Path::new(BINARY).exists(),
        "test needs a host without {BINARY}"
    );
    assert!(
        main.object.debug_file().is_some(),
        "debug file not found in the target's root"
    );
    assert_eq!(
        main.object.symbolize(main.svma(address)),
        vec![expected_frame()]
    );
}

#[test]
fn build_id_debug_file_inside_the_target_root() {
    let scratch = Scratch::new();
    let root = scratch.path("root");
    let (full, debug) = install(&scratch, &root, &[]);
    let build_id = readelf_build_id(&full);
    let dir = root.join("usr/lib/debug/.build-id").join(&build_id[..2]);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::rename(&debug, dir.join(format!("{}.debug", &build_id[2..]))).unwrap();

    let (child, address) = start_in_container(&root);
    check_symbolized(child.pid(), address);
}

#[test]
fn debuglink_under_usr_lib_debug_inside_the_target_root() {
    let scratch = Scratch::new();
    let root = scratch.path("root");
    // No build id: only the debuglink can lead to the debug file.
    let (_, debug) = install(&scratch, &root, &["-Wl,--build-id=none"]);
    run(Command::new("objcopy")
        .arg(format!("--add-gnu-debuglink={}", debug.display()))
        .arg(root.join("bin/waiter")));
    let dir = root.join("usr/lib/debug/bin");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::rename(&debug, dir.join("waiter.debug")).unwrap();

    let (child, address) = start_in_container(&root);
    check_symbolized(child.pid(), address);
}
