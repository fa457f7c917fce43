//! Helpers for the end-to-end tests: build the test programs, start them, run the agent.
//!
//! The tests under `tests/` profile real programs (the sources in `programs/`) with the real
//! `rprof-agent` binary and check real figures in the profiles it writes. This crate holds
//! everything they share:
//!
//! - [`toolchain`]: finds gcc, g++, rustc and go, and builds the test programs into a
//!   content-addressed cache under the cargo target directory;
//! - [`programs`]: one function per test program, building it with the flags its claim needs;
//! - [`process`]: starts a test program and waits until it says `ready`, runs a command with a
//!   deadline, signals it, and never leaves a process behind;
//! - [`agent`]: builds `rprof-agent` once per test process and records profiles with it;
//! - [`profile`]: reads a pprof profile and answers questions about its stacks and labels;
//! - [`docker`]: the Docker engine, images assembled from host files, containers removed
//!   when dropped;
//! - [`http`]: a minimal HTTP/1.1 client for the `serve` endpoints;
//! - [`elf`]: checks the premises of a test on the binary itself (no DWARF, no .eh_frame...);
//! - [`measuring`]: test programs that measure themselves, recorded and compared.

pub mod agent;
pub mod docker;
pub mod elf;
pub mod http;
pub mod measuring;
pub mod process;
pub mod profile;
pub mod programs;
pub mod toolchain;

pub use agent::{
    agent_bin, agent_command, assert_one_line_error, assert_success, exclusive, exclusive_cpu,
    record, record_full, record_full_env, run_agent, Recording,
};
pub use measuring::{assert_split, total, Figures, Measuring, Totals};
pub use process::{
    assert_nothing_stopped, cpu_time, files_in, is_root, is_running,
    require_kernel_sampling_refused, Finished, Running, Target, AS_UNPRIVILEGED,
};
pub use profile::{
    assert_go_stacks_rooted, assert_leaf_ratio, assert_share, comment_starting, decode_profile,
    frames_of, label, leaf_share, leaf_split, num_label, of_process, passes_through, read_profile,
    sample_types, share_of, stack_split, string, top_leaves, total_samples, Fraction, Stacks,
};
pub use toolchain::{
    build_c, build_cpp, build_go, build_rust, go_tool_pprof, pprof_output, programs_dir, strip_all,
    strip_debug, target_dir, workspace_root,
};

/// What the toolchain panics say: where to get what is missing.
pub const SETUP_HINT: &str = "run scripts/setup to install the integration-test toolchain";
