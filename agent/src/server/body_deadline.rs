//! A request body that must arrive whole within a deadline: the header timeout bounds how long
//! a client may take to ask, this bounds how long it may take to send what it asks with (a
//! `/symbol` POST trickled a byte at a time would otherwise hold its connection for ever).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Bytes, HttpBody};
use axum::BoxError;
use hyper::body::{Frame, Incoming, SizeHint};
use tokio::time::Sleep;

/// A request body that fails once `limit` has passed since the request's header arrived.
pub struct DeadlineBody {
    inner: Incoming,
    limit: Duration,
    /// Boxed so that the body stays `Unpin`; it counts from the body's creation, as soon as
    /// the request's header has arrived.
    deadline: Pin<Box<Sleep>>,
}

impl DeadlineBody {
    pub fn new(inner: Incoming, limit: Duration) -> Self {
        DeadlineBody {
            inner,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            let limit = self.limit.as_secs();
            return Poll::Ready(Some(Err(format!(
                "the request body did not arrive within {limit} s"
            )
            .into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
