//! The heap kind: what stays live, by allocation stack — Go's `/debug/pprof/heap`, from
//! outside, over the recording: inuse_space is what the allocations made during it still hold
//! at its end. The same recording as allocs (see [`super::malloc`]), shown by inuse_space.

use anyhow::Result;

use super::malloc::{recording, View};
use super::{Endpoint, Form, Kind, Source};
use crate::recording::{Recording, Request};

pub static KIND: Kind = Kind {
    name: "heap",
    help: "What stays live, by allocation stack: allocations made during the recording still \
           live at its end (inuse_space; alloc_* too); --exact traces every call",
    go_name: "heap",
    source: Source::Recorded(open),
    endpoints: &[Endpoint {
        name: "heap",
        path: None,
        description: "A sampling of the memory allocated over the seconds GET parameter \
                      (default 30) and still live at its end, by allocation stack",
        form: Form::Recorded,
    }],
};

fn open(request: &Request<'_>) -> Result<Box<dyn Recording>> {
    Ok(Box::new(recording::open(request, View::Heap)?))
}
