//! Profile kinds: one module per kind, each owning everything specific to it — how it is taken
//! (its perf events, or a snapshot), how a raw event becomes a weighted sample, its pprof shape,
//! its `/debug/pprof` endpoints and their query parameters, its command-line name and help
//! line — and [`KINDS`], the one registry the verbs (`record`, `serve`, `threads`) are driven by.
//!
//! Adding a kind: a new module here that defines a `pub static KIND: Kind`, plus one line in
//! [`KINDS`]. See docs/ARCHITECTURE.md.

pub mod allocs;
pub mod block;
pub mod cpu;
pub mod growth;
pub mod heap;
pub mod malloc;
pub mod mutex;
pub mod threadcreate;
pub mod threads;
pub mod waits;
pub mod wall;

use std::fmt;

use anyhow::{bail, Result};
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};

use crate::recording::{Recording, Request};

/// Every profile kind, in the order the command line and the index list them.
pub static KINDS: &[&Kind] = &[
    &cpu::KIND,
    &threadcreate::KIND,
    &threads::KIND,
    &block::KIND,
    &mutex::KIND,
    &wall::KIND,
    &growth::KIND,
    &allocs::KIND,
    &heap::KIND,
];

/// One profile kind.
pub struct Kind {
    /// Its name on the command line (`record --profile NAME`) and in file names.
    pub name: &'static str,
    /// One line: what it shows.
    pub help: &'static str,
    /// How Go's error messages name it ("Could not enable CPU profiling: ...").
    pub go_name: &'static str,
    /// How it is taken.
    pub source: Source,
    /// Its `/debug/pprof/NAME` endpoints.
    pub endpoints: &'static [Endpoint],
}

/// How a kind is taken.
pub enum Source {
    /// Recorded over a window (`record --profile NAME`, `?seconds=N`): the kind opens its
    /// trigger for the request and drives its own aggregate.
    Recorded(fn(&Request<'_>) -> Result<Box<dyn Recording>>),
    /// A snapshot of one moment, taken by the `threads` verb and the snapshot endpoints.
    Snapshot,
}

/// One `/debug/pprof/NAME` endpoint of a kind.
pub struct Endpoint {
    /// NAME, the path under `/debug/pprof/`.
    pub name: &'static str,
    /// Where it is served instead, for endpoints that live elsewhere in Go's world (fgprof's
    /// `/debug/fgprof`); such endpoints are not on the index page.
    pub path: Option<&'static str>,
    /// What the index page says about it.
    pub description: &'static str,
    pub form: Form,
}

/// Which query parameters an endpoint takes and what it answers, as net/http/pprof does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// Go's `/profile`: `?seconds=N` (default 30), always a pprof download.
    Window,
    /// A named profile that only a recording shows from outside: `?seconds=N` (Go's delta
    /// form) or the default window; `debug=1` gives Go's text of counts by stack.
    Recorded,
    /// A snapshot of the moment under this sample type: `debug=0` pprof, `1` counts by stack,
    /// `2` every thread; no `seconds`.
    Snapshot { sample_type: &'static str },
}

impl Kind {
    /// Starts recording this kind.
    pub fn open(&self, request: &Request<'_>) -> Result<Box<dyn Recording>> {
        match self.source {
            Source::Recorded(open) => open(request),
            Source::Snapshot => bail!(
                "the {} profile is a snapshot of one moment: use `rprof-agent threads`",
                self.name
            ),
        }
    }

    pub fn is_recorded(&self) -> bool {
        matches!(self.source, Source::Recorded(_))
    }
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kind({})", self.name)
    }
}

/// The kind named `name`.
pub fn find(name: &str) -> Option<&'static Kind> {
    KINDS.iter().copied().find(|kind| kind.name == name)
}

/// The kinds `record --profile` takes.
pub fn recorded() -> impl Iterator<Item = &'static Kind> {
    KINDS.iter().copied().filter(|kind| kind.is_recorded())
}

/// The kind serving `/debug/pprof/NAME`, and that endpoint.
pub fn endpoint(name: &str) -> Option<(&'static Kind, &'static Endpoint)> {
    endpoints().find(|(_, e)| e.name == name && e.path.is_none())
}

/// Every endpoint of every kind, with its kind.
pub fn endpoints() -> impl Iterator<Item = (&'static Kind, &'static Endpoint)> {
    KINDS
        .iter()
        .copied()
        .flat_map(|kind| kind.endpoints.iter().map(move |endpoint| (kind, endpoint)))
}

/// Parses `--profile NAME`: the recorded kinds, each listed with its help line.
pub fn parser() -> impl TypedValueParser<Value = &'static Kind> {
    let values = recorded().map(|kind| PossibleValue::new(kind.name).help(kind.help));
    PossibleValuesParser::new(values)
        .try_map(|name| find(&name).ok_or_else(|| format!("no profile kind named {name}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_endpoints_are_unique() {
        let mut names: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KINDS.len());
        let mut endpoints: Vec<&str> = KINDS
            .iter()
            .flat_map(|k| k.endpoints.iter().map(|e| e.name))
            .collect();
        let count = endpoints.len();
        endpoints.sort_unstable();
        endpoints.dedup();
        assert_eq!(endpoints.len(), count);
        for (_, endpoint) in self::endpoints().filter(|(_, e)| e.path.is_none()) {
            assert_eq!(self::endpoint(endpoint.name).unwrap().1.name, endpoint.name);
        }
    }

    #[test]
    fn snapshots_are_not_recorded() {
        assert!(recorded().all(Kind::is_recorded));
        assert!(find("cpu").is_some_and(Kind::is_recorded));
        assert!(!find("threads").is_some_and(Kind::is_recorded));
        assert_eq!(endpoint("profile").map(|(k, _)| k.name), Some("cpu"));
        assert_eq!(endpoint("heap").map(|(k, _)| k.name), Some("heap"));
        assert!(endpoint("fgprof").is_none(), "served at its own path");
        assert_eq!(endpoint("block").map(|(k, _)| k.name), Some("block"));
    }
}
