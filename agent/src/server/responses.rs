//! Successful responses, with the headers net/http/pprof sends: text is `text/plain;
//! charset=utf-8`, profiles are `application/octet-stream` downloads named after the profile.
//! (`X-Content-Type-Options: nosniff` goes on every response, in `routes`.)

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
const TEXT_HTML: &str = "text/html; charset=utf-8";
const OCTET_STREAM: &str = "application/octet-stream";

/// A profile download: `Content-Disposition: attachment; filename="NAME"`, as Go names them.
pub fn profile(filename: &str, bytes: Vec<u8>) -> Response {
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(OCTET_STREAM));
    let disposition = format!("attachment; filename=\"{filename}\"");
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

/// Text for people (debug=1/2, cmdline, symbol).
pub fn text(body: impl Into<Vec<u8>>) -> Response {
    with_type(body.into(), TEXT_PLAIN)
}

/// The index page.
pub fn html(body: String) -> Response {
    with_type(body.into_bytes(), TEXT_HTML)
}

fn with_type(body: Vec<u8>, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
