//! The `debug=1` text of a count profile (goroutine, threadcreate), as Go's runtime/pprof
//! prints it: `NAME profile: total N`, then one record per distinct stack, most frequent first —
//! `COUNT @ PC PC ...` (return addresses, leaf first), one `#\tPC\tfunction+0xOFF\tfile:line`
//! line per frame, a blank line — with columns aligned by Go's tab writer. `go tool pprof`
//! reads this form too (and then symbolizes through `/debug/pprof/symbol`).

use std::cmp::Reverse;
use std::fmt::Write;

use super::tabwriter;
use crate::unwind::ModuleSet;

/// One distinct stack and how many threads (or thread creations) have it.
pub struct StackRecord {
    pub count: usize,
    /// The stack as Go lists it on the `@` line: the leaf's address, then return addresses.
    pub pcs: Vec<u64>,
    /// Named frames, leaf first, inlined callees before their caller.
    pub frames: Vec<FrameLine>,
}

/// One `#` line.
pub struct FrameLine {
    /// The address looked up (a return address minus one, as Go prints it).
    pub pc: u64,
    pub function: Option<String>,
    /// `pc` minus the function's entry, when the symbol table knows the entry.
    pub offset: Option<u64>,
    /// `file:line` when known, else the mapped file's path.
    pub location: Option<String>,
}

/// The whole profile. `total` is Go's `total` (all threads, including those in no record);
/// `notes` become `#` comment lines at the end, which pprof's parser skips.
pub fn render(name: &str, total: usize, mut records: Vec<StackRecord>, notes: &[String]) -> String {
    // Go: higher counts first, ties broken by the `@ ...` key in string order.
    records.sort_by_cached_key(|record| (Reverse(record.count), key(&record.pcs)));
    let mut text = format!("{name} profile: total {total}\n");
    for record in &records {
        write_record(&mut text, record);
    }
    for note in notes {
        let _ = writeln!(text, "# {note}");
    }
    tabwriter::align(&text)
}

/// The `@` line address for a lookup address (the leaf's instruction pointer, then each
/// caller's return address minus one). Go lists return addresses there, and pprof subtracts one
/// from every one of them, the leaf's included, before naming it (legacy_profile.go,
/// parseGoCount): so each is one past the address to name. For a caller that is its return
/// address; for the leaf, which was interrupted rather than calling, it must be one past the
/// instruction pointer too, or a leaf on a function's first instruction (a spin loop, a uprobe
/// on pthread_create) would be named after the function before it.
pub fn pc(lookup_address: u64) -> u64 {
    lookup_address.wrapping_add(1)
}

/// `address` minus the entry of the function that contains it, from its module's symbol table.
pub fn entry_offset(modules: &ModuleSet, address: u64) -> Option<u64> {
    let module = modules.find(address)?;
    let svma = address.wrapping_sub(module.bias);
    svma.checked_sub(module.object.function_entry(svma)?)
}

/// `@ 0x1 0x2`, the record's key and the tail of its first line.
fn key(pcs: &[u64]) -> String {
    let mut key = String::from("@");
    for pc in pcs {
        let _ = write!(key, " {pc:#x}");
    }
    key
}

fn write_record(text: &mut String, record: &StackRecord) {
    let _ = writeln!(text, "{} {}", record.count, key(&record.pcs));
    for frame in &record.frames {
        match &frame.function {
            None => {
                let _ = writeln!(text, "#\t{:#x}", frame.pc);
            }
            Some(function) => {
                let offset = frame.offset.map(|o| format!("+{o:#x}")).unwrap_or_default();
                let location = frame.location.as_deref().unwrap_or("?");
                let _ = writeln!(text, "#\t{:#x}\t{function}{offset}\t{location}", frame.pc);
            }
        }
    }
    text.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(pc: u64, function: Option<&str>, offset: Option<u64>, location: &str) -> FrameLine {
        FrameLine {
            pc,
            function: function.map(str::to_string),
            offset,
            location: Some(location.to_string()),
        }
    }

    #[test]
    fn records_heaviest_first_in_gos_layout() {
        let records = vec![
            StackRecord {
                count: 1,
                pcs: vec![0x10, 0x21],
                frames: vec![
                    frame(0x10, Some("leaf"), Some(0x4), "a.c:3"),
                    frame(0x20, None, None, ""),
                ],
            },
            StackRecord {
                count: 3,
                pcs: vec![0x30],
                frames: vec![frame(0x30, Some("park"), None, "/lib/libc.so.6")],
            },
        ];
        let text = render(
            "goroutine",
            5,
            records,
            &["1 thread without a stack".into()],
        );
        assert_eq!(
            text,
            "goroutine profile: total 5\n\
             3 @ 0x30\n\
             #\t0x30\tpark\t/lib/libc.so.6\n\
             \n\
             1 @ 0x10 0x21\n\
             #\t0x10\tleaf+0x4\ta.c:3\n\
             #\t0x20\n\
             \n\
             # 1 thread without a stack\n"
        );
    }
}
