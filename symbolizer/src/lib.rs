//! Everything about a target's binaries: where they are, what they contain, and what their
//! addresses mean.
//!
//! [`Symbolizer::modules`] lists the ELF objects a process maps (found through
//! `/proc/PID/map_files` and the target's own root, the vdso read from its memory), each with
//! its load bias and a shared, lazily parsed [`ObjectInfo`]. An `ObjectInfo` answers
//! [`ObjectInfo::symbolize`] (DWARF with inline frames, then symbol tables; separate debug
//! files and MiniDebugInfo included) and provides the [`UnwindSections`] framehop needs.
//! Code in no ELF file (JIT) is named from the target's perf map, [`PerfMap`].
//!
//! Everything read from the target is untrusted: reads, loops and decompression are bounded,
//! and malformed input yields errors or fewer names, never a panic.

mod bytes;
mod debug_files;
mod demangle;
mod dwarf;
mod elf;
mod error;
mod frame;
mod frame_cache;
mod function_starts;
mod go_frames;
mod go_runtime;
mod go_runtime_code;
mod gopclntab;
mod load_bias;
pub mod maps;
mod minidebuginfo;
mod module;
mod object_cache;
mod object_info;
mod perf_map;
mod plt;
pub mod proc_dir;
mod seekable_zlib;
mod symbol_table;
mod symbolizer;
mod target_fs;
mod truncation_guard;
mod units;
mod unwind;

pub use bytes::Bytes;
pub use demangle::demangle;
pub use error::Error;
pub use frame::Frame;
pub use go_runtime::GoRuntimeLayout;
pub use module::MappedModule;
pub use object_info::{DebugAltLink, DebugLink, ObjectInfo};
pub use perf_map::{PerfMap, PerfMapSource};
pub use symbolizer::Symbolizer;
pub use target_fs::open_mapping;
pub use unwind::UnwindSections;
