//! Compiles the BPF programs the agent loads into the kernel (`bpf/*.bpf.c`) with clang, into
//! `OUT_DIR`, where the agent embeds them (`include_bytes!`). clang and libbpf's headers come
//! from `scripts/setup` (Debian's `clang` and `libbpf-dev`).

use std::env;
use std::path::PathBuf;
use std::process::Command;

/// Objects built: name, source (`bpf/SOURCE.bpf.c`), and the macros defined for it.
const PROGRAMS: &[(&str, &str, &[&str])] = &[
    ("offcpu", "offcpu", &[]),
    ("gostack", "gostack", &[]),
    // For kernels without bpf_loop (Linux < 5.17): no search for signal frames.
    ("gostack_nosignal", "gostack", &["-DNO_SIGNAL_SEARCH"]),
];

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    // <linux/types.h> includes <asm/types.h>, which Debian keeps in the multiarch directory.
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".to_owned());
    let multiarch = format!("/usr/include/{arch}-linux-gnu");
    println!("cargo:rerun-if-env-changed=CLANG");
    // Included by the programs.
    println!("cargo:rerun-if-changed=bpf/user_regs.h");
    for (name, source, defines) in PROGRAMS {
        let source = format!("bpf/{source}.bpf.c");
        println!("cargo:rerun-if-changed={source}");
        let object = out.join(format!("{name}.bpf.o"));
        let status = Command::new(&clang)
            .args(["-O2", "-g", "-target", "bpfel", "-Wall", "-Werror"])
            .args(*defines)
            .arg(format!("-I{multiarch}"))
            .arg("-c")
            .arg(&source)
            .arg("-o")
            .arg(&object)
            .status();
        match status {
            Ok(status) if status.success() => {}
            Ok(status) => panic!("clang failed on {source} ({status})"),
            Err(error) => panic!(
                "cannot run {clang} ({error}): the agent's BPF programs need clang and libbpf's \
                 headers; run scripts/setup, or apt-get install clang libbpf-dev"
            ),
        }
    }
}
