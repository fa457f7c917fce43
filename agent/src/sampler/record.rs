//! Decoding the records the kernel writes into a ring buffer, for the layout `attr.rs` asks for.
//!
//! The bytes come from the kernel and are trusted for nothing: every field is bounds-checked and
//! a record that does not add up is a [`Malformed`] error, never a panic.

use std::fmt;

use perf_event_open_sys::bindings as sys;

const HEADER_BYTES: usize = 8;

/// `sample_id_all` appends `{ pid, tid } { time } { identifier }` to every non-sample record,
/// in that order (the order of the TID, TIME and IDENTIFIER bits).
const TRAILER_BYTES: usize = 24;

/// Call-chain entries at or above this are context markers (`PERF_CONTEXT_*`), not addresses.
const CONTEXT_MARKER_MIN: u64 = sys::PERF_CONTEXT_MAX;

/// What the sample records of these events carry beyond the fixed fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SampleFormat {
    pub callchain: bool,
    /// Samples carry the sampling period in effect (frequency-driven events: each sample
    /// stands for that many events).
    pub period: bool,
    /// Samples carry the tracepoint's raw fields.
    pub raw: bool,
}

/// One thing the kernel reported, borrowed from the ring buffer (or from a scratch copy when it
/// wrapped around the buffer's end): valid only inside the `drain` callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    Sample(Sample<'a>),
    /// The kernel dropped `count` records because a ring buffer was full.
    Lost {
        count: u64,
    },
    /// A new executable mapping (`exec`) or, should the kernel report one, a data mapping.
    Mmap {
        pid: u32,
        tid: u32,
        addr: u64,
        len: u64,
        pgoff: u64,
        exec: bool,
        /// The mapped file's inode number (0 when the record does not carry it): what tells
        /// the file that was mapped from another one at the same path since.
        inode: u64,
        /// As in /proc/PID/maps; not UTF-8 bytes are replaced by U+FFFD.
        filename: &'a str,
    },
    /// A thread's name changed; `exec` when the name changed because the process exec'd.
    Comm {
        pid: u32,
        tid: u32,
        name: &'a str,
        exec: bool,
    },
    /// A thread (`tid`) was created by `ptid`; it is sampled by inheritance.
    Fork {
        pid: u32,
        ppid: u32,
        tid: u32,
        ptid: u32,
    },
    Exit {
        pid: u32,
        tid: u32,
    },
    /// Thread `tid` left the CPU (`out`; `preempt` when it was still runnable: preempted, not
    /// waiting) or came back, at `time` (CLOCK_MONOTONIC ns). Only with context-switch
    /// sampling.
    Switch {
        pid: u32,
        tid: u32,
        time: u64,
        out: bool,
        preempt: bool,
    },
}

/// One sample of a thread.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Sample<'a> {
    pub pid: u32,
    pub tid: u32,
    /// CLOCK_MONOTONIC, nanoseconds.
    pub time: u64,
    /// How many events this sample stands for (1 unless the event is frequency-driven and
    /// reports its period).
    pub period: u64,
    /// The user-mode instruction pointer (from the user registers; the sampled address when
    /// those are not available).
    pub ip: u64,
    /// User stack pointer; `stack` starts here.
    pub sp: u64,
    /// User frame pointer.
    pub bp: u64,
    /// The kernel copied the user registers (`ip`, `sp`, `bp` and `stack` are meaningful).
    pub user_regs_available: bool,
    /// The valid part of the user stack copy (the kernel's `dyn_size` bytes), from `sp` up.
    pub stack: &'a [u8],
    /// Kernel frames, innermost first, without context markers. Empty unless kernel call
    /// chains were asked for.
    pub kernel_callchain: &'a [u64],
    /// A tracepoint's raw fields (its tracefs `format`); empty for other events.
    pub raw: &'a [u8],
    /// The id of the event that took it (an inherited copy reports its original's).
    pub id: u64,
}

impl fmt::Debug for Sample<'_> {
    // The stack is up to 64 KiB of bytes: show its length, not its content.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sample")
            .field("pid", &self.pid)
            .field("tid", &self.tid)
            .field("time", &self.time)
            .field("ip", &format_args!("{:#x}", self.ip))
            .field("sp", &format_args!("{:#x}", self.sp))
            .field("bp", &format_args!("{:#x}", self.bp))
            .field("user_regs_available", &self.user_regs_available)
            .field("stack", &format_args!("[{} bytes]", self.stack.len()))
            .field("kernel_callchain", &self.kernel_callchain)
            .finish()
    }
}

/// The task and event a record came from, to drop the copies a thread sampled twice produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Emitter {
    /// The task running when the record was written (for a fork: the parent).
    pub tid: u32,
    /// The id of the event we opened, even when an inherited copy of it wrote the record.
    pub event_id: u64,
    pub time: u64,
}

/// What one ring-buffer record turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded<'a> {
    Record(Record<'a>, Option<Emitter>),
    /// The kernel throttled or unthrottled an event (too many interrupts).
    Throttle,
    /// A record type the sampler does not use.
    Other,
}

/// Why a record was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed(pub &'static str);

/// Reusable buffers for the parts of a record that cannot be borrowed as they are.
#[derive(Debug, Default)]
pub(crate) struct DecodeScratch {
    /// Kernel frames, copied out because the record bytes are not aligned for `u64`.
    callchain: Vec<u64>,
    /// A file or thread name that is not UTF-8, made valid.
    text: String,
}

/// The record's timestamp, to merge rings in time order. `None` if it cannot be found.
pub(crate) fn timestamp(record: &[u8]) -> Option<u64> {
    let kind = read_u32(record, 0)?;
    if kind == sys::PERF_RECORD_SAMPLE {
        // header, identifier, ip, pid/tid, then time.
        read_u64(record, HEADER_BYTES + 24)
    } else {
        read_u64(record, record.len().checked_sub(16)?)
    }
}

/// Decodes one complete record (header included).
pub(crate) fn decode<'a>(
    record: &'a [u8],
    format: SampleFormat,
    scratch: &'a mut DecodeScratch,
) -> Result<Decoded<'a>, Malformed> {
    let mut header = Fields::new(record);
    let kind = header.u32()?;
    let misc = header.u16()?;
    let size = usize::from(header.u16()?);
    let body = record
        .get(HEADER_BYTES..size)
        .ok_or(Malformed("record shorter than its header says"))?;
    let DecodeScratch { callchain, text } = scratch;
    if kind == sys::PERF_RECORD_SAMPLE {
        let (sample, emitter) = decode_sample(body, format, callchain)?;
        return Ok(Decoded::Record(Record::Sample(sample), Some(emitter)));
    }
    let (body, emitter, pid) = split_trailer(body)?;
    let decoded = match kind {
        sys::PERF_RECORD_SWITCH => decode_switch(u32::from(misc), pid, emitter),
        sys::PERF_RECORD_MMAP2 => decode_mmap2(body, u32::from(misc), text)?,
        sys::PERF_RECORD_MMAP => decode_mmap(body, u32::from(misc), text)?,
        sys::PERF_RECORD_COMM => decode_comm(body, u32::from(misc), text)?,
        sys::PERF_RECORD_FORK => decode_fork(body)?,
        sys::PERF_RECORD_EXIT => decode_exit(body)?,
        // A LOST record is written once per ring, by whichever event writes next: it is never a
        // duplicate, so it carries no emitter.
        sys::PERF_RECORD_LOST => return decode_lost(body, 8),
        sys::PERF_RECORD_LOST_SAMPLES => return decode_lost(body, 0),
        sys::PERF_RECORD_THROTTLE | sys::PERF_RECORD_UNTHROTTLE => return Ok(Decoded::Throttle),
        _ => return Ok(Decoded::Other),
    };
    Ok(Decoded::Record(decoded, Some(emitter)))
}

fn decode_sample<'a>(
    body: &'a [u8],
    format: SampleFormat,
    callchain: &'a mut Vec<u64>,
) -> Result<(Sample<'a>, Emitter), Malformed> {
    let mut fields = Fields::new(body);
    let event_id = fields.u64()?;
    let sampled_ip = fields.u64()?;
    let pid = fields.u32()?;
    let tid = fields.u32()?;
    let time = fields.u64()?;
    let period = if format.period { fields.u64()? } else { 1 };
    callchain.clear();
    if format.callchain {
        let entries = fields.u64()?;
        let entries = usize::try_from(entries)
            .ok()
            .filter(|&n| n <= fields.remaining() / 8)
            .ok_or(Malformed("call chain longer than its record"))?;
        collect_kernel_frames(fields.bytes(entries * 8)?, callchain);
    }
    // `u32 size; char data[size]`, padded by the kernel so that what follows is aligned.
    let raw = if format.raw {
        let size = usize::try_from(fields.u32()?).map_err(|_| Malformed("raw size"))?;
        fields.bytes(size)?
    } else {
        &[]
    };
    let abi = fields.u64()?;
    // The registers are present only when the kernel had user registers to copy, in bit order
    // of sample_regs_user: frame pointer, stack pointer, instruction pointer.
    let regs = if abi == u64::from(sys::PERF_SAMPLE_REGS_ABI_NONE) {
        None
    } else {
        Some([fields.u64()?, fields.u64()?, fields.u64()?])
    };
    let stack = user_stack(&mut fields)?;
    let (bp, sp, ip) = regs.map_or((0, 0, sampled_ip), |[bp, sp, ip]| (bp, sp, ip));
    let sample = Sample {
        pid,
        tid,
        time,
        period,
        ip,
        sp,
        bp,
        user_regs_available: regs.is_some(),
        stack,
        kernel_callchain: callchain,
        raw,
        id: event_id,
    };
    Ok((
        sample,
        Emitter {
            tid,
            event_id,
            time,
        },
    ))
}

/// `size, data[size], dyn_size`: only the first `dyn_size` bytes were copied, the rest of `data`
/// is stale ring-buffer content.
fn user_stack<'a>(fields: &mut Fields<'a>) -> Result<&'a [u8], Malformed> {
    let size = fields.u64()?;
    if size == 0 {
        return Ok(&[]);
    }
    let size = usize::try_from(size).map_err(|_| Malformed("stack size out of range"))?;
    let data = fields.bytes(size)?;
    let valid = fields.u64()?;
    usize::try_from(valid)
        .ok()
        .and_then(|valid| data.get(..valid))
        .ok_or(Malformed("stack dyn_size larger than the copy"))
}

/// Keeps the addresses that follow a PERF_CONTEXT_KERNEL marker, up to the next marker.
fn collect_kernel_frames(chain: &[u8], out: &mut Vec<u64>) {
    let mut in_kernel = false;
    for entry in chain.chunks_exact(8).filter_map(|bytes| read_u64(bytes, 0)) {
        if entry >= CONTEXT_MARKER_MIN {
            in_kernel = entry == sys::PERF_CONTEXT_KERNEL;
        } else if in_kernel {
            out.push(entry);
        }
    }
}

/// The record's own fields, who wrote it, and the process of the task it is about.
fn split_trailer(body: &[u8]) -> Result<(&[u8], Emitter, u32), Malformed> {
    let split = body
        .len()
        .checked_sub(TRAILER_BYTES)
        .ok_or(Malformed("record too short for its sample_id trailer"))?;
    let (body, trailer) = body.split_at(split);
    let mut fields = Fields::new(trailer);
    let pid = fields.u32()?;
    let tid = fields.u32()?;
    let time = fields.u64()?;
    let event_id = fields.u64()?;
    Ok((
        body,
        Emitter {
            tid,
            event_id,
            time,
        },
        pid,
    ))
}

/// PERF_RECORD_SWITCH has no fields of its own: the task and time are the trailer's, the
/// direction and the preemption flags are in `misc`.
fn decode_switch(misc: u32, pid: u32, emitter: Emitter) -> Record<'static> {
    Record::Switch {
        pid,
        tid: emitter.tid,
        time: emitter.time,
        out: misc & sys::PERF_RECORD_MISC_SWITCH_OUT != 0,
        preempt: misc & sys::PERF_RECORD_MISC_SWITCH_OUT_PREEMPT != 0,
    }
}

fn decode_mmap2<'a>(
    body: &'a [u8],
    misc: u32,
    text: &'a mut String,
) -> Result<Record<'a>, Malformed> {
    let mut fields = Fields::new(body);
    let (pid, tid) = (fields.u32()?, fields.u32()?);
    let (addr, len, pgoff) = (fields.u64()?, fields.u64()?, fields.u64()?);
    // Device and inode numbers (major, minor, inode, generation), or a build id: 24 bytes
    // either way.
    let identity = fields.bytes(24)?;
    let inode = if misc & sys::PERF_RECORD_MISC_MMAP_BUILD_ID == 0 {
        read_u64(identity, 8).unwrap_or(0)
    } else {
        0
    };
    let prot = fields.u32()?;
    let _flags = fields.u32()?;
    Ok(Record::Mmap {
        pid,
        tid,
        addr,
        len,
        pgoff,
        exec: prot & libc::PROT_EXEC as u32 != 0,
        inode,
        filename: c_string(fields.rest(), text),
    })
}

fn decode_mmap<'a>(
    body: &'a [u8],
    misc: u32,
    text: &'a mut String,
) -> Result<Record<'a>, Malformed> {
    let mut fields = Fields::new(body);
    let (pid, tid) = (fields.u32()?, fields.u32()?);
    let (addr, len, pgoff) = (fields.u64()?, fields.u64()?, fields.u64()?);
    Ok(Record::Mmap {
        pid,
        tid,
        addr,
        len,
        pgoff,
        exec: misc & sys::PERF_RECORD_MISC_MMAP_DATA == 0,
        inode: 0,
        filename: c_string(fields.rest(), text),
    })
}

fn decode_comm<'a>(
    body: &'a [u8],
    misc: u32,
    text: &'a mut String,
) -> Result<Record<'a>, Malformed> {
    let mut fields = Fields::new(body);
    let (pid, tid) = (fields.u32()?, fields.u32()?);
    Ok(Record::Comm {
        pid,
        tid,
        name: c_string(fields.rest(), text),
        exec: misc & sys::PERF_RECORD_MISC_COMM_EXEC != 0,
    })
}

fn decode_fork(body: &[u8]) -> Result<Record<'_>, Malformed> {
    let mut fields = Fields::new(body);
    Ok(Record::Fork {
        pid: fields.u32()?,
        ppid: fields.u32()?,
        tid: fields.u32()?,
        ptid: fields.u32()?,
    })
}

fn decode_exit(body: &[u8]) -> Result<Record<'_>, Malformed> {
    let mut fields = Fields::new(body);
    let pid = fields.u32()?;
    let _ppid = fields.u32()?;
    let tid = fields.u32()?;
    Ok(Record::Exit { pid, tid })
}

/// PERF_RECORD_LOST is `id, lost`; PERF_RECORD_LOST_SAMPLES is `lost`.
fn decode_lost(body: &[u8], skip: usize) -> Result<Decoded<'_>, Malformed> {
    let mut fields = Fields::new(body);
    fields.bytes(skip)?;
    let count = fields.u64()?;
    Ok(Decoded::Record(Record::Lost { count }, None))
}

/// A NUL-terminated (and NUL-padded) string; the whole slice if the NUL is missing.
fn c_string<'a>(bytes: &'a [u8], spill: &'a mut String) -> &'a str {
    let bytes = bytes.split(|&b| b == 0).next().unwrap_or_default();
    match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(_) => {
            spill.clear();
            spill.push_str(&String::from_utf8_lossy(bytes));
            spill
        }
    }
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let field = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes(field.try_into().ok()?))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let field = bytes.get(at..at.checked_add(8)?)?;
    Some(u64::from_ne_bytes(field.try_into().ok()?))
}

/// Reads fields in order, each one checked against what is left.
struct Fields<'a> {
    bytes: &'a [u8],
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Fields { bytes }
    }

    fn remaining(&self) -> usize {
        self.bytes.len()
    }

    fn rest(&self) -> &'a [u8] {
        self.bytes
    }

    fn bytes(&mut self, len: usize) -> Result<&'a [u8], Malformed> {
        if len > self.bytes.len() {
            return Err(Malformed("record shorter than its fields"));
        }
        let (taken, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(taken)
    }

    fn u16(&mut self) -> Result<u16, Malformed> {
        let bytes = self.bytes(2)?;
        Ok(u16::from_ne_bytes([bytes[0], bytes[1]]))
    }

    fn u32(&mut self) -> Result<u32, Malformed> {
        read_u32(self.bytes(4)?, 0).ok_or(Malformed("record shorter than its fields"))
    }

    fn u64(&mut self) -> Result<u64, Malformed> {
        read_u64(self.bytes(8)?, 0).ok_or(Malformed("record shorter than its fields"))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sampler::config::SAMPLE_FIXED_BYTES;

    /// Builds records the way the kernel lays them out, for tests here and in `ring.rs`.
    pub(crate) struct RecordBuilder {
        bytes: Vec<u8>,
    }

    impl RecordBuilder {
        pub(crate) fn new(kind: u32, misc: u16) -> Self {
            let mut bytes = Vec::new();
            bytes.extend_from_slice(&kind.to_ne_bytes());
            bytes.extend_from_slice(&misc.to_ne_bytes());
            bytes.extend_from_slice(&0u16.to_ne_bytes());
            RecordBuilder { bytes }
        }

        pub(crate) fn u32(mut self, value: u32) -> Self {
            self.bytes.extend_from_slice(&value.to_ne_bytes());
            self
        }

        pub(crate) fn u64(mut self, value: u64) -> Self {
            self.bytes.extend_from_slice(&value.to_ne_bytes());
            self
        }

        pub(crate) fn raw(mut self, bytes: &[u8]) -> Self {
            self.bytes.extend_from_slice(bytes);
            self
        }

        /// A NUL-terminated string padded to 8 bytes.
        pub(crate) fn string(mut self, text: &[u8]) -> Self {
            self.bytes.extend_from_slice(text);
            self.bytes.push(0);
            while self.bytes.len() & 7 != 0 {
                self.bytes.push(0);
            }
            self
        }

        /// The sample_id_all trailer.
        pub(crate) fn trailer(self, pid: u32, tid: u32, time: u64, id: u64) -> Self {
            self.u32(pid).u32(tid).u64(time).u64(id)
        }

        pub(crate) fn build(mut self) -> Vec<u8> {
            let size = u16::try_from(self.bytes.len()).unwrap();
            self.bytes[6..8].copy_from_slice(&size.to_ne_bytes());
            self.bytes
        }
    }

    pub(crate) fn sample_record(tid: u32, time: u64, stack: &[u8], dyn_size: u64) -> Vec<u8> {
        RecordBuilder::new(sys::PERF_RECORD_SAMPLE, 2)
            .u64(77) // identifier
            .u64(0x401000) // ip
            .u32(100)
            .u32(tid)
            .u64(time)
            .u64(u64::from(sys::PERF_SAMPLE_REGS_ABI_64))
            .u64(0x7ffd_0000_0010) // bp
            .u64(0x7ffd_0000_0000) // sp
            .u64(0x401234) // ip from the user registers
            .u64(stack.len() as u64)
            .raw(stack)
            .u64(dyn_size)
            .build()
    }

    const USER: SampleFormat = SampleFormat {
        callchain: false,
        period: false,
        raw: false,
    };

    fn decode_one(bytes: &[u8], format: SampleFormat) -> Result<String, Malformed> {
        let mut scratch = DecodeScratch::default();
        decode(bytes, format, &mut scratch).map(|decoded| format!("{decoded:?}"))
    }

    #[test]
    fn sample_hands_out_only_the_valid_stack_bytes() {
        let stack: Vec<u8> = (0..32).collect();
        let bytes = sample_record(101, 5_000, &stack, 24);
        assert_eq!(bytes.len() as u32, SAMPLE_FIXED_BYTES + 32);
        assert_eq!(timestamp(&bytes), Some(5_000));
        let mut scratch = DecodeScratch::default();
        let Decoded::Record(Record::Sample(sample), Some(emitter)) =
            decode(&bytes, USER, &mut scratch).unwrap()
        else {
            panic!("not a sample");
        };
        assert_eq!((sample.pid, sample.tid, sample.time), (100, 101, 5_000));
        assert_eq!(sample.ip, 0x401234);
        assert_eq!(sample.sp, 0x7ffd_0000_0000);
        assert_eq!(sample.bp, 0x7ffd_0000_0010);
        assert!(sample.user_regs_available);
        assert_eq!(sample.stack, &stack[..24]);
        assert!(sample.kernel_callchain.is_empty());
        assert_eq!(
            emitter,
            Emitter {
                tid: 101,
                event_id: 77,
                time: 5_000
            }
        );
    }

    #[test]
    fn sample_without_user_registers_has_no_regs_and_no_stack() {
        let bytes = RecordBuilder::new(sys::PERF_RECORD_SAMPLE, 1)
            .u64(1)
            .u64(0xffff_ffff_8100_0000)
            .u32(5)
            .u32(6)
            .u64(9)
            .u64(u64::from(sys::PERF_SAMPLE_REGS_ABI_NONE))
            .u64(0) // stack size 0: no data, no dyn_size
            .build();
        let mut scratch = DecodeScratch::default();
        let Decoded::Record(Record::Sample(sample), _) =
            decode(&bytes, USER, &mut scratch).unwrap()
        else {
            panic!("not a sample");
        };
        assert!(!sample.user_regs_available);
        assert_eq!(sample.ip, 0xffff_ffff_8100_0000);
        assert!(sample.stack.is_empty());
    }

    #[test]
    fn kernel_callchain_skips_context_markers_and_user_frames() {
        let kernel = sys::PERF_CONTEXT_KERNEL;
        let user = sys::PERF_CONTEXT_USER;
        let bytes = RecordBuilder::new(sys::PERF_RECORD_SAMPLE, 1)
            .u64(1)
            .u64(0xffff_ffff_8100_0010)
            .u32(5)
            .u32(6)
            .u64(9)
            .u64(5) // call chain entries
            .u64(kernel)
            .u64(0xffff_ffff_8100_0010)
            .u64(0xffff_ffff_8100_0020)
            .u64(user)
            .u64(0x401000)
            .u64(u64::from(sys::PERF_SAMPLE_REGS_ABI_64))
            .u64(1)
            .u64(2)
            .u64(3)
            .u64(8)
            .u64(42)
            .u64(8)
            .build();
        let mut scratch = DecodeScratch::default();
        let format = SampleFormat {
            callchain: true,
            period: false,
            raw: false,
        };
        let Decoded::Record(Record::Sample(sample), _) =
            decode(&bytes, format, &mut scratch).unwrap()
        else {
            panic!("not a sample");
        };
        assert_eq!(
            sample.kernel_callchain,
            &[0xffff_ffff_8100_0010, 0xffff_ffff_8100_0020]
        );
        assert_eq!((sample.bp, sample.sp, sample.ip), (1, 2, 3));
        assert_eq!(sample.stack, &42u64.to_ne_bytes());
    }

    #[test]
    fn mmap2_comm_fork_exit_and_lost_decode() {
        let mmap2 = RecordBuilder::new(sys::PERF_RECORD_MMAP2, 2)
            .u32(100)
            .u32(101)
            .u64(0x7f00_0000_0000)
            .u64(0x2000)
            .u64(0x1000)
            .u32(0xfe)
            .u32(1)
            .u64(4242)
            .u64(0)
            .u32((libc::PROT_READ | libc::PROT_EXEC) as u32)
            .u32(libc::MAP_PRIVATE as u32)
            .string(b"/usr/lib/libc.so.6")
            .trailer(100, 101, 7, 3)
            .build();
        assert_eq!(timestamp(&mmap2), Some(7));
        let comm = RecordBuilder::new(
            sys::PERF_RECORD_COMM,
            sys::PERF_RECORD_MISC_COMM_EXEC as u16,
        )
        .u32(100)
        .u32(100)
        .string(b"server")
        .trailer(100, 100, 8, 3)
        .build();
        let fork = RecordBuilder::new(sys::PERF_RECORD_FORK, 0)
            .u32(100)
            .u32(100)
            .u32(102)
            .u32(101)
            .u64(9)
            .trailer(100, 101, 9, 3)
            .build();
        let exit = RecordBuilder::new(sys::PERF_RECORD_EXIT, 0)
            .u32(100)
            .u32(100)
            .u32(102)
            .u32(102)
            .u64(10)
            .trailer(100, 102, 10, 3)
            .build();
        let lost = RecordBuilder::new(sys::PERF_RECORD_LOST, 0)
            .u64(3)
            .u64(12)
            .trailer(100, 101, 11, 3)
            .build();
        let mut scratch = DecodeScratch::default();
        let expected = [
            (
                mmap2,
                Record::Mmap {
                    pid: 100,
                    tid: 101,
                    addr: 0x7f00_0000_0000,
                    len: 0x2000,
                    pgoff: 0x1000,
                    exec: true,
                    inode: 4242,
                    filename: "/usr/lib/libc.so.6",
                },
            ),
            (
                comm,
                Record::Comm {
                    pid: 100,
                    tid: 100,
                    name: "server",
                    exec: true,
                },
            ),
            (
                fork,
                Record::Fork {
                    pid: 100,
                    ppid: 100,
                    tid: 102,
                    ptid: 101,
                },
            ),
            (exit, Record::Exit { pid: 100, tid: 102 }),
            (lost, Record::Lost { count: 12 }),
        ];
        for (bytes, record) in expected {
            match decode(&bytes, USER, &mut scratch).unwrap() {
                Decoded::Record(decoded, _) => assert_eq!(decoded, record),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn side_band_records_name_their_emitter() {
        let fork = RecordBuilder::new(sys::PERF_RECORD_FORK, 0)
            .u32(100)
            .u32(100)
            .u32(102)
            .u32(101)
            .u64(9)
            .trailer(100, 101, 9, 55)
            .build();
        let mut scratch = DecodeScratch::default();
        let Decoded::Record(_, Some(emitter)) = decode(&fork, USER, &mut scratch).unwrap() else {
            panic!("no emitter");
        };
        assert_eq!(
            emitter,
            Emitter {
                tid: 101,
                event_id: 55,
                time: 9
            }
        );
    }

    #[test]
    fn names_that_are_not_utf8_are_made_valid() {
        let comm = RecordBuilder::new(sys::PERF_RECORD_COMM, 0)
            .u32(1)
            .u32(1)
            .string(b"bad\xffname")
            .trailer(1, 1, 1, 1)
            .build();
        let mut scratch = DecodeScratch::default();
        let Decoded::Record(Record::Comm { name, .. }, _) =
            decode(&comm, USER, &mut scratch).unwrap()
        else {
            panic!("not a comm");
        };
        assert_eq!(name, "bad\u{fffd}name");
    }

    #[test]
    fn throttle_and_unknown_records_are_recognised() {
        let throttle = RecordBuilder::new(sys::PERF_RECORD_THROTTLE, 0)
            .u64(1)
            .u64(2)
            .u64(3)
            .trailer(1, 1, 1, 1)
            .build();
        let unknown = RecordBuilder::new(sys::PERF_RECORD_AUX, 0)
            .u64(1)
            .u64(2)
            .u64(3)
            .trailer(1, 1, 1, 1)
            .build();
        let mut scratch = DecodeScratch::default();
        assert_eq!(decode(&throttle, USER, &mut scratch), Ok(Decoded::Throttle));
        assert_eq!(decode(&unknown, USER, &mut scratch), Ok(Decoded::Other));
    }

    #[test]
    fn switches_carry_direction_preemption_task_and_time() {
        let misc =
            (sys::PERF_RECORD_MISC_SWITCH_OUT | sys::PERF_RECORD_MISC_SWITCH_OUT_PREEMPT) as u16;
        let out = RecordBuilder::new(sys::PERF_RECORD_SWITCH, misc)
            .trailer(100, 101, 5000, 9)
            .build();
        let back = RecordBuilder::new(sys::PERF_RECORD_SWITCH, 0)
            .trailer(100, 101, 6000, 9)
            .build();
        let mut scratch = DecodeScratch::default();
        let Ok(Decoded::Record(record, Some(emitter))) = decode(&out, USER, &mut scratch) else {
            panic!("not decoded");
        };
        assert_eq!(
            record,
            Record::Switch {
                pid: 100,
                tid: 101,
                time: 5000,
                out: true,
                preempt: true
            }
        );
        assert_eq!((emitter.tid, emitter.event_id), (101, 9));
        let Ok(Decoded::Record(record, _)) = decode(&back, USER, &mut scratch) else {
            panic!("not decoded");
        };
        assert!(matches!(
            record,
            Record::Switch {
                out: false,
                preempt: false,
                time: 6000,
                ..
            }
        ));
    }

    #[test]
    fn truncated_records_are_errors() {
        let stack = [7u8; 16];
        let sample = sample_record(1, 1, &stack, 16);
        for len in 0..sample.len() {
            let mut cut = sample[..len].to_vec();
            if cut.len() >= 8 {
                // Make the header agree with the cut, so the fields themselves run short.
                cut[6..8].copy_from_slice(&(len as u16).to_ne_bytes());
            }
            assert!(decode_one(&cut, USER).is_err(), "length {len}");
        }
    }

    #[test]
    fn lying_sizes_are_errors() {
        let stack = [7u8; 16];
        let too_much_dyn = sample_record(1, 1, &stack, 17);
        assert_eq!(
            decode_one(&too_much_dyn, USER),
            Err(Malformed("stack dyn_size larger than the copy"))
        );
        let huge_stack = RecordBuilder::new(sys::PERF_RECORD_SAMPLE, 0)
            .u64(1)
            .u64(1)
            .u32(1)
            .u32(1)
            .u64(1)
            .u64(2)
            .u64(1)
            .u64(2)
            .u64(3)
            .u64(u64::MAX)
            .build();
        assert!(decode_one(&huge_stack, USER).is_err());
        let huge_chain = RecordBuilder::new(sys::PERF_RECORD_SAMPLE, 0)
            .u64(1)
            .u64(1)
            .u32(1)
            .u32(1)
            .u64(1)
            .u64(u64::MAX / 4)
            .build();
        assert!(decode_one(
            &huge_chain,
            SampleFormat {
                callchain: true,
                period: false,
                raw: false
            }
        )
        .is_err());
        let mut header_too_long = sample_record(1, 1, &stack, 16);
        header_too_long[6..8].copy_from_slice(&u16::MAX.to_ne_bytes());
        assert!(decode_one(&header_too_long, USER).is_err());
    }

    #[test]
    fn garbage_never_panics() {
        // A small deterministic generator: the point is many shapes, not randomness.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = (next() % 160) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if bytes.len() >= 8 {
                // Plausible types and sizes reach deeper into the decoders.
                let kind = (next() % 24) as u32;
                bytes[..4].copy_from_slice(&kind.to_ne_bytes());
                let size = (next() % (len as u64 + 8)) as u16;
                bytes[6..8].copy_from_slice(&size.to_ne_bytes());
            }
            let format = SampleFormat {
                callchain: next() % 2 == 0,
                period: next() % 2 == 0,
                raw: false,
            };
            let _ = decode_one(&bytes, format);
            let _ = timestamp(&bytes);
        }
    }
}
