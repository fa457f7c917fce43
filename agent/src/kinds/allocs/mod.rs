//! The allocs kind: who allocates, how much — Go's `/debug/pprof/allocs`, from outside. The
//! same recording as heap (see [`super::malloc`]), shown by alloc_space.

use anyhow::Result;

use super::malloc::{recording, View};
use super::{Endpoint, Form, Kind, Source};
use crate::recording::{Recording, Request};

pub static KIND: Kind = Kind {
    name: "allocs",
    help: "Who allocates, how much: the malloc family probed in sampled windows (alloc_space, \
           alloc_objects; inuse too); --exact traces every call",
    go_name: "allocs",
    source: Source::Recorded(open),
    endpoints: &[Endpoint {
        name: "allocs",
        path: None,
        description: "A sampling of the memory allocations made over the seconds GET \
                      parameter (default 30), by allocation stack",
        form: Form::Recorded,
    }],
};

fn open(request: &Request<'_>) -> Result<Box<dyn Recording>> {
    Ok(Box::new(recording::open(request, View::Allocs)?))
}
