//! MiniDebugInfo: Fedora/RHEL-style `.gnu_debugdata`, an xz-compressed ELF file holding a
//! `.symtab` of the functions that `.dynsym` does not name.

use std::io::{self, Write};

use crate::bytes::Bytes;
use crate::elf::{self, Elf};

/// Real MiniDebugInfo payloads are a few hundred KiB decompressed; the cap keeps a
/// decompression bomb from costing more than this.
const MAX_DECOMPRESSED: usize = 64 << 20;

/// The decompressed embedded ELF image, if the file has a valid `.gnu_debugdata`.
pub(crate) fn extract(elf: &Elf<'_>, file: &Bytes) -> Option<Bytes> {
    let compressed = elf::section_bytes(elf, file, ".gnu_debugdata")?;
    // lzma-rs buffers a whole xz block in memory before writing any of it, so the output cap
    // alone would come too late: check the sizes the stream declares first.
    match xz_declared_size(&compressed) {
        Some(size) if size <= MAX_DECOMPRESSED as u64 => {}
        size => {
            tracing::debug!(?size, "unusable .gnu_debugdata");
            return None;
        }
    }
    let mut out = CappedWriter::default();
    match lzma_rs::xz_decompress(&mut &compressed[..], &mut out) {
        Ok(()) => Some(Bytes::from_vec(out.buf)),
        Err(err) => {
            tracing::debug!(%err, "unreadable .gnu_debugdata");
            None
        }
    }
}

/// The total uncompressed size the first xz stream in `data` declares in its LZMA2 chunk
/// headers, found by walking block and chunk headers without decompressing. The decoder never
/// produces more than a chunk declares, so this bounds its memory. `None` if the layout is not
/// that of an xz stream.
fn xz_declared_size(data: &[u8]) -> Option<u64> {
    const MAGIC: &[u8] = b"\xfd7zXZ\0";
    const STREAM_HEADER_LEN: usize = 12;
    if data.get(..MAGIC.len())? != MAGIC {
        return None;
    }
    let check_len = check_size(*data.get(7)? & 0x0f);
    let mut pos = STREAM_HEADER_LEN;
    let mut total: u64 = 0;
    loop {
        let block_start = pos;
        let header_size_byte = *data.get(pos)?;
        if header_size_byte == 0 {
            // The index follows the last block.
            return Some(total);
        }
        pos = pos.checked_add((usize::from(header_size_byte) + 1) * 4)?;
        let (unpacked, end) = lzma2_declared_size(data, pos)?;
        total = total.checked_add(unpacked)?;
        // Block padding to a multiple of four, then the check field.
        let padded = block_start + (end - block_start).next_multiple_of(4);
        pos = padded.checked_add(check_len)?;
        if pos > data.len() {
            return None;
        }
    }
}

/// Walks the LZMA2 chunks starting at `pos`: their declared uncompressed size and the offset just
/// past the end marker. Every iteration consumes at least one byte, so the walk ends.
fn lzma2_declared_size(data: &[u8], mut pos: usize) -> Option<(u64, usize)> {
    let mut total: u64 = 0;
    loop {
        let control = *data.get(pos)?;
        let be16 = |at: usize| -> Option<u64> {
            let bytes = data.get(at..at.checked_add(2)?)?;
            Some(u64::from(u16::from_be_bytes([
                *bytes.first()?,
                *bytes.get(1)?,
            ])))
        };
        match control {
            0x00 => return Some((total, pos + 1)),
            // Uncompressed chunk, with or without dictionary reset.
            0x01 | 0x02 => {
                let size = be16(pos + 1)? + 1;
                total = total.checked_add(size)?;
                pos = pos
                    .checked_add(3)?
                    .checked_add(usize::try_from(size).ok()?)?;
            }
            0x80..=0xff => {
                let unpacked = (u64::from(control & 0x1f) << 16 | be16(pos + 1)?) + 1;
                let packed = be16(pos + 3)? + 1;
                let has_props = control >= 0xc0;
                total = total.checked_add(unpacked)?;
                pos = pos
                    .checked_add(5 + usize::from(has_props))?
                    .checked_add(usize::try_from(packed).ok()?)?;
            }
            _ => return None,
        }
    }
}

/// Size of an xz block's check field for the stream's check type.
fn check_size(check_type: u8) -> usize {
    match check_type {
        0 => 0,
        id => 4 << ((id - 1) / 3),
    }
}

/// A `Vec` writer that fails once more than [`MAX_DECOMPRESSED`] bytes are written, which
/// aborts the decompressor.
#[derive(Default)]
struct CappedWriter {
    buf: Vec<u8>,
}

impl Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len().saturating_add(data.len()) > MAX_DECOMPRESSED {
            return Err(io::Error::other("decompressed size limit exceeded"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xz(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        lzma_rs::xz_compress(&mut &data[..], &mut out).unwrap();
        out
    }

    #[test]
    fn declared_size_matches_real_streams() {
        for len in [0usize, 1, 1000, 70_000, 3 << 20] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            assert_eq!(xz_declared_size(&xz(&data)), Some(len as u64), "{len}");
        }
        // From the xz tool (LZMA2 compressed chunks, CRC64 check) if installed; the test
        // machine image has it.
        let data = vec![b'a'; 5 << 20];
        let mut child = std::process::Command::new("xz")
            .args(["-c", "-6"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the xz tool is needed by this test");
        child.stdin.take().unwrap().write_all(&data).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(xz_declared_size(&out.stdout), Some(data.len() as u64));
    }

    #[test]
    fn declared_size_rejects_garbage() {
        let stream = xz(b"hello world");
        for cut in 0..stream.len() - 12 {
            // Truncated streams: None (or a size for the part before the index).
            let _ = xz_declared_size(&stream[..cut]);
        }
        assert_eq!(xz_declared_size(b"not xz at all"), None);
    }

    #[test]
    fn capped_writer_refuses_past_the_cap() {
        let mut out = CappedWriter::default();
        assert!(out.write(&vec![0; MAX_DECOMPRESSED]).is_ok());
        assert!(out.write(&[0]).is_err());
    }
}
