//! pprof `profile.proto` types and a builder that writes gzipped profiles.
//!
//! Every profile rprof writes (CPU, threads, threadcreate) goes through
//! [`ProfileBuilder`]; every profile it reads back (the `top` command, the
//! tests) goes through [`decode`].

mod builder;
mod codec;
mod read;
mod spec;
mod strings;
mod top;

/// Types generated from `profile.proto` (package `perftools.profiles`).
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/perftools.profiles.rs"));
}

pub use builder::ProfileBuilder;
pub use codec::{decode, encode_gzip, write_gzip, DecodeError, MAX_DECODED_BYTES};
pub use pb::{Function, Label, Line, Location, Mapping, Profile, Sample, ValueType};
pub use spec::{FunctionSpec, LabelSpec, LineSpec, MappingSpec};
pub use strings::StringTable;
pub use top::{pprof_top, TopEntry};
