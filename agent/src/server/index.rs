//! `/debug/pprof/`: the HTML index Go serves — a table of profiles with counts and links to
//! their `debug=1` text, the full dump link, descriptions — plus a line naming the target.

use std::fmt::Write;

use axum::extract::State;
use axum::response::Response;

use super::responses;
use super::state::SharedState;
use super::target::TargetSpec;
use crate::kinds::{Form, KINDS};

/// One row of the index.
struct Entry {
    name: &'static str,
    count: usize,
    description: &'static str,
}

pub async fn index(State(state): State<SharedState>) -> Response {
    let target = state.target.peek();
    // Counting /proc/PID/task reads kernel memory, not a disk: fine on an async worker.
    let threads = target.map_or(0, |t| thread_count(t.pid));
    let status = match target {
        Some(t) => format!("rprof-agent: profiling PID {} ({})", t.pid, t.name()),
        None => match state.target.spec() {
            TargetSpec::Name(name) => format!("rprof-agent: waiting for a process named {name}"),
            TargetSpec::Pid(pid) => format!("rprof-agent: process {pid} has exited"),
        },
    };
    responses::html(render(&status, &entries(threads)))
}

/// Go's rows that a native process has — every kind's endpoints, and `cmdline` — sorted by
/// name as Go sorts them. Snapshots count the threads now.
fn entries(threads: usize) -> Vec<Entry> {
    let mut entries = vec![Entry {
        name: "cmdline",
        count: 0,
        description: "The command line invocation of the target process",
    }];
    for endpoint in KINDS
        .iter()
        .flat_map(|kind| kind.endpoints)
        .filter(|endpoint| endpoint.path.is_none())
    {
        let count = match endpoint.form {
            Form::Snapshot { .. } => threads,
            Form::Window | Form::Recorded => 0,
        };
        entries.push(Entry {
            name: endpoint.name,
            count,
            description: endpoint.description,
        });
    }
    entries.sort_by_key(|entry| entry.name);
    entries
}

fn render(status: &str, entries: &[Entry]) -> String {
    let mut page = String::from(
        "<html>\n<head>\n<title>/debug/pprof/</title>\n<style>\n.profile-name{\n\tdisplay:inline-block;\n\twidth:6rem;\n}\n</style>\n</head>\n<body>\n/debug/pprof/<br>\n<br>\n",
    );
    let _ = write!(page, "{}<br>\n<br>\n", escape(status));
    page.push_str(
        "Types of profiles available:\n<table>\n<thead><td>Count</td><td>Profile</td></thead>\n",
    );
    for entry in entries {
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td><a href='{name}?debug=1'>{name}</a></td></tr>",
            entry.count,
            name = entry.name
        );
    }
    page.push_str(
        "</table>\n<a href=\"goroutine?debug=2\">full goroutine stack dump</a>\n<br>\n<p>\nProfile Descriptions:\n<ul>\n",
    );
    for entry in entries {
        let _ = writeln!(
            page,
            "<li><div class=profile-name>{}: </div> {}</li>",
            entry.name,
            escape(entry.description)
        );
    }
    page.push_str("</ul>\n</p>\n</body>\n</html>");
    page
}

/// HTML-escapes text that comes from outside (a process name).
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '&' => escaped.push_str("&amp;"),
            '\'' => escaped.push_str("&#39;"),
            '"' => escaped.push_str("&#34;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// How many threads `pid` has now (0 once it is gone).
fn thread_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, Iterator::count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_every_profile_with_its_debug_link() {
        let page = render("rprof-agent: profiling PID 7 (<srv>)", &entries(3));
        for name in ["cmdline", "goroutine", "profile", "threadcreate", "threads"] {
            assert!(
                page.contains(&format!("<a href='{name}?debug=1'>{name}</a>")),
                "{name}"
            );
        }
        assert!(page.contains("<tr><td>3</td><td><a href='goroutine?debug=1'>"));
        assert!(page.contains("goroutine?debug=2"));
        assert!(page.contains("(&lt;srv&gt;)"), "the name is escaped");
    }
}
