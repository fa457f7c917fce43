//! Finding separate debug information the way distributions install it, inside the target's
//! root: the build-id directory, then `.gnu_debuglink` (CRC-checked) beside the binary, in
//! `.debug/` beside it, and under `/usr/lib/debug/<dir>`. MiniDebugInfo needs no lookup (it is
//! embedded) and is handled by the symbol table.

use std::io::Read;
use std::sync::Arc;

use crate::bytes::Bytes;
use crate::object_info::{hex, ObjectInfo};
use crate::target_fs::TargetRoot;

const DEBUG_ROOT: &str = "/usr/lib/debug";

/// The separate debug file for `object`, which the target knows as `path`.
pub(crate) fn find_debug_file(
    root: &TargetRoot,
    path: &str,
    object: &ObjectInfo,
) -> Option<ObjectInfo> {
    if let Some(build_id) = object.build_id() {
        if let Some(debug) = by_build_id(root, build_id, "debug") {
            return Some(debug);
        }
    }
    let link = object.debug_link()?;
    let dir = parent_dir(path);
    let candidates = [
        format!("{dir}/{}", link.file_name),
        format!("{dir}/.debug/{}", link.file_name),
        format!("{DEBUG_ROOT}{dir}/{}", link.file_name),
    ];
    candidates
        .iter()
        .filter(|candidate| candidate.as_str() != path)
        .find_map(|candidate| by_debug_link(root, candidate, link.crc, object.build_id()))
}

/// The dwz supplementary file for `debug` (found at `debug_path`), if its DWARF names one.
pub(crate) fn find_supplementary_file(
    root: &TargetRoot,
    debug_path: &str,
    debug: &ObjectInfo,
) -> Option<ObjectInfo> {
    let link = debug.debug_alt_link()?;
    if let Some(sup) = by_build_id(root, &link.build_id, "debug") {
        return Some(sup);
    }
    let path = if link.path.starts_with('/') {
        link.path.clone()
    } else {
        format!("{}/{}", parent_dir(debug_path), link.path)
    };
    let sup = load(root, &path)?;
    (sup.build_id() == Some(&link.build_id[..])).then_some(sup)
}

/// `/usr/lib/debug/.build-id/ab/cdef….debug`, accepted if its build id matches.
fn by_build_id(root: &TargetRoot, build_id: &[u8], suffix: &str) -> Option<ObjectInfo> {
    let hex = hex(build_id);
    if hex.len() < 3 {
        return None;
    }
    let (head, tail) = hex.split_at(2);
    let path = format!("{DEBUG_ROOT}/.build-id/{head}/{tail}.{suffix}");
    let debug = load(root, &path)?;
    if debug.build_id() == Some(build_id) {
        Some(debug)
    } else {
        tracing::debug!(path, "build id mismatch, ignored");
        None
    }
}

/// A debuglink candidate, accepted if the CRC-32 of the whole file matches (and its build id,
/// when both files have one).
fn by_debug_link(
    root: &TargetRoot,
    path: &str,
    crc: u32,
    build_id: Option<&[u8]>,
) -> Option<ObjectInfo> {
    let bytes = read(root, path)?;
    let actual = crc32fast::hash(&bytes);
    if actual != crc {
        tracing::debug!(
            path,
            expected = crc,
            actual,
            "debuglink CRC mismatch, ignored"
        );
        return None;
    }
    let debug = ObjectInfo::from_bytes(path, bytes).ok()?;
    match (build_id, debug.build_id()) {
        (Some(expected), Some(actual)) if expected != actual => None,
        _ => Some(debug),
    }
}

fn load(root: &TargetRoot, path: &str) -> Option<ObjectInfo> {
    let bytes = read(root, path)?;
    match ObjectInfo::from_bytes(path, bytes) {
        Ok(object) => Some(object),
        Err(err) => {
            tracing::debug!(%err, "unusable debug file");
            None
        }
    }
}

fn read(root: &TargetRoot, path: &str) -> Option<Bytes> {
    let file = root.open(path).ok()?;
    let bytes = Bytes::map_file(&file).ok()?;
    // Cheap check before anyone parses (or CRCs) a stray non-ELF file.
    let mut magic = [0u8; 4];
    (&bytes[..]).read_exact(&mut magic).ok()?;
    (&magic == b"\x7fELF").then_some(bytes)
}

/// The directory part of an absolute path, without a trailing slash ("" for "/x").
fn parent_dir(path: &str) -> &str {
    path.rfind('/').map_or("", |slash| &path[..slash])
}

/// `object` (known to the target as `path`) with its separate debug file and dwz
/// supplementary file attached, where they exist.
pub(crate) fn attach_debug_files(root: &TargetRoot, path: &str, object: ObjectInfo) -> ObjectInfo {
    let object = with_supplementary(root, path, object);
    let Some(debug) = find_debug_file(root, path, &object) else {
        return object;
    };
    let debug_path = debug.name().to_owned();
    tracing::debug!(path, debug_path, "using separate debug file");
    object.with_debug_file(Arc::new(with_supplementary(root, &debug_path, debug)))
}

fn with_supplementary(root: &TargetRoot, path: &str, object: ObjectInfo) -> ObjectInfo {
    match find_supplementary_file(root, path, &object) {
        Some(sup) => object.with_supplementary_file(Arc::new(sup)),
        None => object,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_dirs() {
        assert_eq!(parent_dir("/usr/lib/libc.so.6"), "/usr/lib");
        assert_eq!(parent_dir("/init"), "");
        assert_eq!(parent_dir("relative"), "");
    }
}
