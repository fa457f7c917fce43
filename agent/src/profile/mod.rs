//! pprof output: turning unwound stacks into symbolized locations, and the profiles built on them.

mod cpu;
mod locations;
mod thread_names;
mod threadcreate;
mod window;
mod write;

pub use cpu::{CpuProfile, CpuProfileMeta};
pub use locations::{LocationTable, PseudoFrame};
pub use threadcreate::{ThreadcreateMeta, ThreadcreateProfile};
pub use write::{directory_of, write_output, Output};
