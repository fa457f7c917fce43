//! `Symbolizer::modules` on real running processes: module order and identity, load bias
//! against `/proc/PID/maps`, libc and the vdso, deleted binaries, and the shared cache.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::{
    compile, marker_line, readelf_build_id, run, spawn_and_read_line, ChildGuard, Scratch,
};
use rprof_symbolizer::maps::{read_maps, MapEntry};
use rprof_symbolizer::{Frame, MappedModule, ObjectInfo, Symbolizer};

fn source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/addresses.c")
}

/// The addresses `addresses.c` prints: its main, libc's nanosleep, its wait_for_stdin.
struct Printed {
    main: u64,
    nanosleep: u64,
    wait: u64,
}

fn start(binary: &Path) -> (ChildGuard, Printed) {
    let (child, line) = spawn_and_read_line(&mut Command::new(binary));
    let values: Vec<u64> = line
        .split_whitespace()
        .map(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).unwrap())
        .collect();
    let [main, nanosleep, wait] = values[..] else {
        panic!("unexpected output {line:?}");
    };
    (
        child,
        Printed {
            main,
            nanosleep,
            wait,
        },
    )
}

fn build(scratch: &Scratch, name: &str, flags: &[&str]) -> PathBuf {
    let binary = scratch.path(name);
    let mut all = vec!["-O2", "-g"];
    all.extend_from_slice(flags);
    compile("gcc", &source(), &binary, &all);
    binary
}

fn module_at(modules: &[MappedModule], avma: u64) -> &MappedModule {
    modules
        .iter()
        .find(|m| m.contains_code(avma))
        .unwrap_or_else(|| panic!("no module contains {avma:#x}"))
}

fn function_at(modules: &[MappedModule], avma: u64) -> Option<String> {
    let module = module_at(modules, avma);
    module
        .object
        .symbolize(module.svma(avma))
        .last()
        .and_then(|f| f.function.clone())
}

/// The first `PT_LOAD`'s virtual address, per `readelf -l`.
fn first_load_vaddr(binary: &Path) -> u64 {
    let out = run(Command::new("readelf").arg("-lW").arg(binary));
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("LOAD"))
        .expect("no LOAD segment");
    let vaddr = line.split_whitespace().nth(2).unwrap();
    u64::from_str_radix(vaddr.trim_start_matches("0x"), 16).unwrap()
}

/// The bias `/proc/PID/maps` implies: where the offset-0 mapping starts minus where the file
/// wants its first segment.
fn expected_bias(maps: &[MapEntry], module: &MappedModule) -> u64 {
    let first = maps
        .iter()
        .find(|e| e.path == module.path && e.offset == 0)
        .expect("offset-0 mapping");
    first.start - first_load_vaddr(Path::new(&module.path))
}

#[test]
fn modules_of_a_running_pie_program() {
    let scratch = Scratch::new();
    let binary = build(&scratch, "addresses", &[]);
    let (child, printed) = start(&binary);
    let modules = Symbolizer::new().modules(child.pid()).unwrap();
    let maps = read_maps(child.pid()).unwrap();

    let main = &modules[0];
    assert!(main.is_main);
    assert_eq!(main.path, binary.to_str().unwrap());
    assert_eq!(modules.iter().filter(|m| m.is_main).count(), 1);
    assert_eq!(
        main.object.build_id_hex().unwrap(),
        readelf_build_id(&binary)
    );
    assert_eq!(main.bias, expected_bias(&maps, main));
    assert_eq!(main.file_offset, 0);
    assert_eq!(
        main.exec_avma,
        maps.iter()
            .filter(|e| e.path == main.path && e.exec)
            .map(|e| e.start..e.end)
            .collect::<Vec<_>>()
    );

    let src = source().to_str().unwrap().to_owned();
    let frame = |name: &str, marker: &str| Frame {
        function: Some(name.to_owned()),
        system_name: Some(name.to_owned()),
        file: Some(src.clone()),
        line: Some(marker_line(&source(), marker)),
        inlined: false,
    };
    assert_eq!(
        main.object.symbolize(main.svma(printed.main)),
        vec![frame("main", "MARK_MAIN")]
    );
    assert_eq!(
        main.object.symbolize(main.svma(printed.wait)),
        vec![frame("wait_for_stdin", "MARK_WAIT")]
    );

    let libc = modules
        .iter()
        .find(|m| m.path.ends_with("/libc.so.6"))
        .expect("libc mapped");
    assert!(!libc.is_main && !libc.is_vdso);
    assert_eq!(
        libc.object.build_id_hex().unwrap(),
        readelf_build_id(Path::new(&libc.path))
    );
    assert_eq!(libc.bias, expected_bias(&maps, libc));
    assert!(libc.contains_code(printed.nanosleep));
    // With libc's debug file installed DWARF names it as binutils does (glibc's internal
    // alias `__GI___nanosleep`); from `.dynsym` alone it is the exported name.
    let svma = libc.svma(printed.nanosleep);
    let binutils = common::binutils_addr2line(Path::new(&libc.path), svma);
    assert_eq!(
        function_at(&modules, printed.nanosleep),
        Some(binutils.last().unwrap().0.clone())
    );
    let bare = ObjectInfo::from_bytes("libc", libc.object.data().clone()).unwrap();
    assert!(!bare.has_dwarf() || libc.object.debug_file().is_none());
    assert_eq!(
        bare.symbolize(svma).last().unwrap().function.as_deref(),
        Some("nanosleep")
    );

    assert!(modules
        .iter()
        .any(|m| m.path.ends_with("/ld-linux-x86-64.so.2")));
    let vdso = modules.iter().find(|m| m.is_vdso).expect("vdso listed");
    assert_eq!(vdso.path, "[vdso]");

    // After the main binary, address order.
    let starts: Vec<u64> = modules[1..].iter().map(|m| m.avma.start).collect();
    let mut sorted = starts.clone();
    sorted.sort_unstable();
    assert_eq!(starts, sorted);
}

#[test]
fn non_pie_program_has_zero_bias() {
    let scratch = Scratch::new();
    let binary = build(&scratch, "addresses.nopie", &["-no-pie"]);
    let (child, printed) = start(&binary);
    let modules = Symbolizer::new().modules(child.pid()).unwrap();
    assert!(modules[0].is_main);
    assert_eq!(modules[0].bias, 0);
    assert_eq!(function_at(&modules, printed.main).as_deref(), Some("main"));
}

/// Spawns `sleep 30` and waits until the dynamic loader has mapped libc (before exec its maps
/// are ours; during exec they are briefly empty).
fn spawn_sleep() -> ChildGuard {
    let child = ChildGuard(Command::new("sleep").arg("30").spawn().unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let loaded = || {
        let exe = std::fs::read_link(format!("/proc/{}/exe", child.pid())).ok();
        let maps = read_maps(child.pid()).unwrap_or_default();
        exe == Some(PathBuf::from("/usr/bin/sleep"))
            && maps.iter().any(|e| e.path.ends_with("/libc.so.6"))
    };
    while !loaded() {
        assert!(std::time::Instant::now() < deadline, "sleep did not start");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child
}

#[test]
fn vdso_is_read_from_the_target() {
    let child = spawn_sleep();
    let modules = Symbolizer::new().modules(child.pid()).unwrap();
    assert!(modules[0].is_main);
    assert_eq!(modules[0].path, "/usr/bin/sleep");
    let vdso = modules.iter().find(|m| m.is_vdso).expect("vdso");
    let maps = read_maps(child.pid()).unwrap();
    let mapping = maps.iter().find(|e| e.path == "[vdso]").unwrap();
    assert_eq!(vdso.avma, mapping.start..mapping.end);
    assert!(vdso.object.build_id().is_some());
    assert!(vdso.object.has_symbols());
    assert!(vdso.object.unwind_sections().eh_frame_hdr.is_some());

    // The same kernel maps the same image into us: compare byte for byte.
    let own = read_maps(std::process::id())
        .unwrap()
        .into_iter()
        .find(|e| e.path == "[vdso]")
        .unwrap();
    let mut own_image = vec![0u8; usize::try_from(own.end - own.start).unwrap()];
    std::os::unix::fs::FileExt::read_exact_at(
        &std::fs::File::open("/proc/self/mem").unwrap(),
        &mut own_image,
        own.start,
    )
    .unwrap();
    assert_eq!(&vdso.object.data()[..], &own_image[..]);

    // Its dynamic symbols, per nm, symbolize to themselves (or an alias at the same address).
    let scratch = Scratch::new();
    let image = scratch.path("vdso.so");
    std::fs::write(&image, &own_image).unwrap();
    let out = run(Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&image));
    let symbols: Vec<(u64, String)> = out
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // "0000000000000af0 T __vdso_clock_gettime@@LINUX_2.6"
            let name = f.get(2)?.split('@').next()?;
            Some((u64::from_str_radix(f.first()?, 16).ok()?, name.to_owned()))
        })
        .collect();
    let (svma, _) = symbols
        .iter()
        .find(|(_, name)| name == "__vdso_clock_gettime")
        .expect("__vdso_clock_gettime in the vdso");
    let name = vdso.object.symbolize(*svma)[0].function.clone().unwrap();
    let aliases: Vec<&str> = symbols
        .iter()
        .filter(|(a, _)| a == svma)
        .map(|(_, n)| n.as_str())
        .collect();
    assert!(
        aliases.contains(&name.as_str()),
        "{name} not in {aliases:?}"
    );
    assert_eq!(vdso.svma(vdso.avma_of(*svma)), *svma);
    assert_eq!(vdso.bias, mapping.start - first_load_vaddr(&image));
}

#[test]
fn deleted_binary_is_read_through_map_files() {
    let scratch = Scratch::new();
    let binary = build(&scratch, "doomed", &[]);
    let (child, printed) = start(&binary);
    std::fs::remove_file(&binary).unwrap();
    let maps = read_maps(child.pid()).unwrap();
    assert!(maps
        .iter()
        .any(|e| e.deleted && e.path == binary.to_str().unwrap()));

    let modules = Symbolizer::new().modules(child.pid()).unwrap();
    assert!(modules[0].is_main);
    assert_eq!(modules[0].path, binary.to_str().unwrap());
    assert_eq!(function_at(&modules, printed.main).as_deref(), Some("main"));
}

#[test]
fn parsed_objects_are_shared_between_calls_and_processes() {
    let scratch = Scratch::new();
    let binary = build(&scratch, "addresses", &[]);
    let symbolizer = Symbolizer::new();
    let (first, printed_first) = start(&binary);
    let (second, printed_second) = start(&binary);
    let libc = |modules: &[MappedModule]| {
        Arc::clone(
            &modules
                .iter()
                .find(|m| m.path.ends_with("/libc.so.6"))
                .unwrap()
                .object,
        )
    };
    let a = symbolizer.modules(first.pid()).unwrap();

    let b = symbolizer.modules(first.pid()).unwrap();
    let c = symbolizer.modules(second.pid()).unwrap();
    assert!(Arc::ptr_eq(&libc(&a), &libc(&b)));
    assert!(Arc::ptr_eq(&libc(&a), &libc(&c)));
    assert!(Arc::ptr_eq(&a[0].object, &c[0].object));
    // Symbolization state is shared too: a name computed through one is there for the other.
    assert_eq!(
        function_at(&a, printed_first.nanosleep),
        function_at(&c, printed_second.nanosleep)
    );
}

#[test]
fn missing_process_is_an_error() {
    // PIDs above pid_max cannot exist.
    let err = Symbolizer::new().modules(u32::MAX - 1).unwrap_err();
    assert!(
        matches!(err, rprof_symbolizer::Error::NoSuchProcess(pid) if pid == u32::MAX - 1),
        "{err:?}"
    );
}
