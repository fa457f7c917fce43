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
    let mut out = CappedWriter::default();
    match lzma_rs::xz_decompress(&mut &compressed[..], &mut out) {
        Ok(()) => Some(Bytes::from_vec(out.buf)),
        Err(err) => {
            tracing::debug!(%err, "unreadable .gnu_debugdata");
            None
        }
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

    #[test]
    fn capped_writer_refuses_past_the_cap() {
        let mut out = CappedWriter::default();
        assert!(out.write(&vec![0; MAX_DECOMPRESSED]).is_ok());
        assert!(out.write(&[0]).is_err());
    }
}
