//! Generates the `perftools.profiles` types from `profile.proto`.
//!
//! protox parses the schema in pure Rust, so building this crate needs no
//! system `protoc`.

use std::error::Error;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn Error>> {
    let dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").ok_or("CARGO_MANIFEST_DIR unset")?);
    let proto = dir.join("profile.proto");
    println!("cargo:rerun-if-changed={}", proto.display());

    let descriptors = protox::compile([&proto], [&dir])?;
    // prost-build derives Copy, Eq and Hash for messages made only of scalars
    // (Label, Mapping, ...), which the builder relies on to use them as keys.
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
