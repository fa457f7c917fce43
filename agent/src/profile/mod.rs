//! pprof output: turning unwound stacks into symbolized locations, the weighted stack aggregate
//! every kind builds on, and writing files.

mod locations;
mod merge;
mod stacks;
mod thread_names;
mod window;
mod write;

pub use locations::{LocationTable, PseudoFrame};
pub use merge::{merge, ProcessProfile};
pub use stacks::{Meta, Shape, StackAggregate, StackSample};
pub use thread_names::ThreadNames;
pub use write::{directory_of, write_output, Output};
