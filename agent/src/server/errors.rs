//! Error responses shaped as net/http/pprof shapes them: `text/plain`, the header
//! `X-Go-Pprof: 1` (on which `go tool pprof` shows the body instead of a bare status line), and
//! the message followed by a newline.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::responses::TEXT_PLAIN;

/// The header that tells pprof clients the body is a message for a person.
pub const X_GO_PPROF: &str = "x-go-pprof";

/// A request that could not be served, with what to tell the client.
#[derive(Debug)]
pub struct PprofError {
    status: StatusCode,
    message: String,
}

impl PprofError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        PprofError {
            status,
            message: message.into(),
        }
    }

    /// 400: the request asked for something the server will not do.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404 for a profile name nobody serves, in Go's words.
    pub fn unknown_profile() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Unknown profile")
    }

    /// 503: nothing to profile right now, or too busy; worth retrying later.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// 500: the profile could not be taken.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// 500 for a failure with a chain of causes, all on one line.
    pub fn from_chain(context: &str, err: &anyhow::Error) -> Self {
        Self::internal(format!("{context}: {err:#}"))
    }

    #[cfg(test)]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    #[cfg(test)]
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// A blocking task that panicked (the panic is already on stderr) or was cancelled.
impl From<tokio::task::JoinError> for PprofError {
    fn from(err: tokio::task::JoinError) -> Self {
        PprofError::internal(format!("internal error: {err}"))
    }
}

impl IntoResponse for PprofError {
    fn into_response(self) -> Response {
        let mut body = self.message;
        body.push('\n');
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN));
        headers.insert(X_GO_PPROF, HeaderValue::from_static("1"));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_plain_text_flagged_for_pprof() {
        let response = PprofError::unknown_profile().into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()[header::CONTENT_TYPE], TEXT_PLAIN);
        assert_eq!(response.headers()[X_GO_PPROF], "1");
    }
}
