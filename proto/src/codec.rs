//! Profile bytes on disk and on the wire: gzipped protobuf.

use std::io::{self, Read, Write};

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use prost::Message;

use crate::pb::Profile;

/// Why bytes could not be read as a profile.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("profile is not valid gzip")]
    Gzip(#[source] io::Error),
    #[error("profile is not a valid profile.proto message")]
    Proto(#[source] prost::DecodeError),
    #[error("profile decompresses to more than {0} bytes")]
    TooLarge(u64),
}

/// Serializes and gzips `profile`, the form pprof tools expect.
pub fn encode_gzip(profile: &Profile) -> Vec<u8> {
    let mut out = Vec::new();
    write_gzip(profile, &mut out).expect("writing to a Vec cannot fail");
    out
}

/// Serializes and gzips `profile` into `out`.
pub fn write_gzip(profile: &Profile, out: impl Write) -> io::Result<()> {
    let mut encoder = GzEncoder::new(out, Compression::default());
    encoder.write_all(&profile.encode_to_vec())?;
    encoder.finish()?.flush()
}

/// The largest decompressed profile [`decode`] accepts (1 GiB): pprof files of real programs
/// are kilobytes to tens of megabytes.
pub const MAX_DECODED_BYTES: u64 = 1 << 30;

/// Parses a profile from gzipped or plain protobuf bytes.
///
/// Both forms occur in the wild: pprof tools write gzip, but some producers
/// and `go tool pprof -proto` pipelines hand around the raw message.
pub fn decode(bytes: &[u8]) -> Result<Profile, DecodeError> {
    // A protobuf message cannot start with 0x1f (field 3, wire type 7 does
    // not exist), so the gzip magic is unambiguous.
    const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Profile::decode(bytes).map_err(DecodeError::Proto);
    }
    let mut raw = Vec::new();
    // A gzip bomb (or /dev/zero gzipped) must not take all memory: no real profile comes near.
    MultiGzDecoder::new(bytes)
        .take(MAX_DECODED_BYTES + 1)
        .read_to_end(&mut raw)
        .map_err(DecodeError::Gzip)?;
    if raw.len() as u64 > MAX_DECODED_BYTES {
        return Err(DecodeError::TooLarge(MAX_DECODED_BYTES));
    }
    Profile::decode(raw.as_slice()).map_err(DecodeError::Proto)
}
