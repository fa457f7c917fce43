//! One log line per request, at info: client, method, path and query, status, body size and
//! time taken. A request whose client goes away before the answer is logged too (as 499, the
//! customary code for it), so a profile nobody received still shows in the log.

use std::time::Instant;

use axum::body::HttpBody;
use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::Response;

use super::listener::Peer;

/// Middleware: logs the request once it is answered or abandoned.
pub async fn log_requests(request: Request, next: Next) -> Response {
    let mut entry = Entry {
        peer: request
            .extensions()
            .get::<ConnectInfo<Peer>>()
            .map_or_else(|| "-".to_string(), |info| info.0 .0.to_string()),
        method: request.method().to_string(),
        target: request
            .uri()
            .path_and_query()
            .map_or_else(|| request.uri().path().to_string(), ToString::to_string),
        started: Instant::now(),
        answered: None,
    };
    let response = next.run(request).await;
    let size = response.body().size_hint().exact();
    entry.answered = Some((response.status().as_u16(), size));
    response
}

/// Written when dropped: after the response is produced, or when the client left first.
struct Entry {
    peer: String,
    method: String,
    target: String,
    started: Instant,
    answered: Option<(u16, Option<u64>)>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        let elapsed_ms = self.started.elapsed().as_millis();
        let (status, size) = self.answered.unwrap_or((499, None));
        let size = size.map_or_else(|| "-".to_string(), |s| s.to_string());
        tracing::info!(
            "{} \"{} {}\" {status} {size} {elapsed_ms}ms",
            self.peer,
            self.method,
            self.target
        );
    }
}
