//! A zlib-compressed section read in pieces, without keeping it decompressed.
//!
//! Debug files keep their DWARF compressed (`SHF_COMPRESSED`; libc6-dbg's `.debug_info` is
//! 2.3 MB compressed, ~8 MB decompressed). Decompressed whole and kept, it costs the agent
//! megabytes to name a few frames. Instead, one pass decompresses the section to index it,
//! saving the decompressor's state every [`checkpoint_interval`] bytes of output (deflate
//! streams cannot be entered anywhere else: each block refers to the 32 KiB of output before
//! it, which the state holds). A later read of a range resumes from the checkpoint before it
//! and decompresses at most an interval more than it returns.

use miniz_oxide::inflate::stream::{inflate, InflateState};
use miniz_oxide::{DataFormat, MZFlush, MZStatus};

use crate::bytes::Bytes;

/// Output produced per `inflate` call.
const CHUNK: usize = 64 * 1024;
/// Output between checkpoints, at least: a unit read decompresses half of it on average.
const MIN_INTERVAL: u64 = 256 * 1024;
/// Checkpoints kept at most (each holds a decompressor state, ~43 KiB: 8 MiB in all).
const MAX_CHECKPOINTS: u64 = 192;

/// Where decompression can resume: the input consumed and output produced so far, and the
/// decompressor's state at that point.
struct Checkpoint {
    input: usize,
    output: u64,
    state: Box<InflateState>,
}

/// A zlib stream (`compressed`) that decompresses to `size` bytes.
pub(crate) struct SeekableZlib {
    compressed: Bytes,
    size: u64,
    checkpoints: Vec<Checkpoint>,
}

impl SeekableZlib {
    pub fn new(compressed: Bytes, size: u64) -> Self {
        SeekableZlib {
            compressed,
            size,
            checkpoints: Vec::new(),
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Decompresses the whole section once, handing each piece of output to `sink` in order
    /// (false from `sink` stops early), and keeps checkpoints for later reads. False when the
    /// stream is corrupt or ends short of its size.
    pub fn scan(&mut self, mut sink: impl FnMut(&[u8]) -> bool) -> bool {
        let interval = checkpoint_interval(self.size);
        let mut state = InflateState::new_boxed(DataFormat::Zlib);
        let mut checkpoints = vec![Checkpoint {
            input: 0,
            output: 0,
            state: state.clone(),
        }];
        let mut next_checkpoint = interval;
        let mut input = 0usize;
        let mut output = 0u64;
        let mut buffer = vec![0u8; CHUNK];
        let whole = loop {
            if output >= next_checkpoint {
                checkpoints.push(Checkpoint {
                    input,
                    output,
                    state: state.clone(),
                });
                next_checkpoint = output.saturating_add(interval);
            }
            let Some((consumed, written, done)) =
                step(&mut state, &self.compressed, input, &mut buffer)
            else {
                break false;
            };
            input += consumed;
            let written = written.min(usize::try_from(self.size - output).unwrap_or(usize::MAX));
            output += written as u64;
            if !sink(&buffer[..written]) {
                break output == self.size;
            }
            if done || output >= self.size {
                break output == self.size;
            }
            if consumed == 0 && written == 0 {
                break false;
            }
        };
        self.checkpoints = checkpoints;
        whole
    }

    /// The whole section, decompressed (for readers that need all of it).
    pub fn into_whole(mut self) -> Option<Vec<u8>> {
        let mut whole = Vec::with_capacity(usize::try_from(self.size).ok()?);
        self.scan(|piece| {
            whole.extend_from_slice(piece);
            true
        })
        .then_some(whole)
    }

    /// Bytes `[offset, offset + len)` of the decompressed section, decompressed anew from the
    /// checkpoint before `offset`. None past the end or when the stream is corrupt.
    pub fn read(&self, offset: u64, len: usize) -> Option<Vec<u8>> {
        let end = offset.checked_add(len as u64)?;
        if end > self.size {
            return None;
        }
        let at = self.checkpoints.partition_point(|c| c.output <= offset);
        let from = self.checkpoints.get(at.checked_sub(1)?)?;
        let mut state = from.state.clone();
        let (mut input, mut output) = (from.input, from.output);
        let mut out = Vec::with_capacity(len);
        let mut buffer = vec![0u8; CHUNK];
        while output < end {
            let (consumed, written, done) = step(&mut state, &self.compressed, input, &mut buffer)?;
            input += consumed;
            let piece = &buffer[..written];
            // The part of this piece inside [offset, end).
            let skip = usize::try_from(offset.saturating_sub(output)).unwrap_or(usize::MAX);
            let keep = usize::try_from(end - output).unwrap_or(usize::MAX);
            if let Some(wanted) = piece.get(skip.min(written)..keep.min(written)) {
                out.extend_from_slice(wanted);
            }
            output += written as u64;
            if done || (consumed == 0 && written == 0) {
                break;
            }
        }
        (out.len() == len).then_some(out)
    }
}

/// One `inflate` call from `input` on: (input consumed, output written, stream ended), or None
/// on a corrupt stream.
fn step(
    state: &mut InflateState,
    compressed: &[u8],
    input: usize,
    buffer: &mut [u8],
) -> Option<(usize, usize, bool)> {
    let rest = compressed.get(input..)?;
    let result = inflate(state, rest, buffer, MZFlush::None);
    match result.status {
        Ok(MZStatus::StreamEnd) => Some((result.bytes_consumed, result.bytes_written, true)),
        Ok(_) => Some((result.bytes_consumed, result.bytes_written, false)),
        // Out of input or output space with nothing done: the stream is cut short.
        Err(_) if result.bytes_written > 0 => {
            Some((result.bytes_consumed, result.bytes_written, false))
        }
        Err(_) => None,
    }
}

/// Output between checkpoints: [`MIN_INTERVAL`], or more for sections so big that it would
/// make more than [`MAX_CHECKPOINTS`] (libc's 8 MiB `.debug_info`: 32 checkpoints, 1.4 MiB).
fn checkpoint_interval(size: u64) -> u64 {
    (size / MAX_CHECKPOINTS).max(MIN_INTERVAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes that do not compress to nothing: a counter mixed with a small LCG.
    fn data(len: usize) -> Vec<u8> {
        let mut x = 12345u32;
        (0..len)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if i % 3 == 0 {
                    (x >> 24) as u8
                } else {
                    (i / 7) as u8
                }
            })
            .collect()
    }

    fn compressed(original: &[u8]) -> SeekableZlib {
        let zlib = miniz_oxide::deflate::compress_to_vec_zlib(original, 6);
        SeekableZlib::new(Bytes::from_vec(zlib), original.len() as u64)
    }

    #[test]
    fn reads_any_range_after_one_scan() {
        let original = data(5 << 20);
        let mut section = compressed(&original);
        let mut seen = Vec::new();
        assert!(section.scan(|piece| {
            seen.extend_from_slice(piece);
            true
        }));
        assert_eq!(seen, original);
        assert!(section.checkpoints.len() >= 20);
        for (offset, len) in [
            (0usize, 10usize),
            (1 << 20, 100),
            ((1 << 20) - 5, 10),
            (3_333_333, 200_000),
            (original.len() - 7, 7),
        ] {
            let read = section.read(offset as u64, len).expect("in range");
            assert_eq!(read, original[offset..offset + len], "at {offset}+{len}");
        }
        assert!(section.read(original.len() as u64 - 1, 2).is_none());
    }

    #[test]
    fn a_corrupt_or_short_stream_is_refused_not_trusted() {
        let original = data(300_000);
        let mut zlib = miniz_oxide::deflate::compress_to_vec_zlib(&original, 6);
        zlib.truncate(zlib.len() / 2);
        let mut section = SeekableZlib::new(Bytes::from_vec(zlib), original.len() as u64);
        assert!(!section.scan(|_| true));
        let mut garbage = SeekableZlib::new(Bytes::from_vec(vec![0xff; 1000]), 5000);
        assert!(!garbage.scan(|_| true));
        assert!(garbage.read(0, 10).is_none());
        // A declared size smaller than the stream: output stops there.
        let mut small = SeekableZlib::new(
            Bytes::from_vec(miniz_oxide::deflate::compress_to_vec_zlib(&original, 6)),
            1000,
        );
        let mut seen = 0;
        assert!(small.scan(|piece| {
            seen += piece.len();
            true
        }));
        assert_eq!(seen, 1000);
    }
}
