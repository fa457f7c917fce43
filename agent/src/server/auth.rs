//! The optional bearer token: with `--token-file`, every request must carry
//! `Authorization: Bearer TOKEN` (what Parca's and Alloy's `bearer_token_file` send), or gets 401.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::errors::PprofError;

/// Longest token file read: a token is a line, not a document.
const MAX_TOKEN_BYTES: u64 = 4096;

/// The secret requests must present.
pub struct Token(Vec<u8>);

impl Token {
    /// Reads the token from `path`, without the surrounding whitespace (the newline editors and
    /// `kubectl create secret --from-file` leave).
    pub fn load(path: &Path) -> Result<Token> {
        use std::io::Read;
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|file| file.take(MAX_TOKEN_BYTES + 1).read_to_end(&mut bytes))
            .with_context(|| format!("cannot read the token file {}", path.display()))?;
        if bytes.len() as u64 > MAX_TOKEN_BYTES {
            bail!(
                "the token file {} is over {MAX_TOKEN_BYTES} bytes: it should hold one token",
                path.display()
            );
        }
        let token = bytes.trim_ascii();
        if token.is_empty() {
            bail!("the token file {} is empty", path.display());
        }
        Ok(Token(token.to_vec()))
    }

    /// Whether the request's `Authorization` header carries this token.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let presented = headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes)
            .and_then(bearer_credentials);
        presented.is_some_and(|presented| constant_time_eq(presented, &self.0))
    }
}

/// The credentials of a `Bearer` authorization (the scheme is case-insensitive).
fn bearer_credentials(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || !rest.starts_with(b" ") {
        return None;
    }
    Some(rest.trim_ascii())
}

/// Compares in time that depends only on the length of `expected`, so that response times do
/// not reveal how much of a guess was right.
fn constant_time_eq(presented: &[u8], expected: &[u8]) -> bool {
    let mut difference = u8::from(presented.len() != expected.len());
    for (i, &byte) in expected.iter().enumerate() {
        let other = presented.get(i).copied().unwrap_or(!byte);
        difference |= std::hint::black_box(byte ^ other);
    }
    difference == 0
}

/// Middleware: 401 unless the request carries the token.
pub async fn require_token(
    State(token): State<Arc<Token>>,
    request: Request,
    next: Next,
) -> Response {
    if token.admits(request.headers()) {
        return next.run(request).await;
    }
    let mut response = PprofError::new(
        StatusCode::UNAUTHORIZED,
        "missing or wrong bearer token: send \"Authorization: Bearer TOKEN\" with the token from \
         rprof-agent's --token-file",
    )
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"rprof-agent\""),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, authorization.parse().unwrap());
        headers
    }

    #[test]
    fn only_the_exact_bearer_token_is_admitted() {
        let token = Token(b"s3cret".to_vec());
        assert!(token.admits(&headers("Bearer s3cret")));
        assert!(token.admits(&headers("bearer s3cret")));
        assert!(!token.admits(&headers("Bearer s3cre")));
        assert!(!token.admits(&headers("Bearer s3cret2")));
        assert!(!token.admits(&headers("Bearer S3cret")));
        assert!(!token.admits(&headers("Basic s3cret")));
        assert!(!token.admits(&headers("Bearers3cret")));
        assert!(!token.admits(&HeaderMap::new()));
    }

    #[test]
    fn token_files_are_trimmed_and_must_not_be_empty() {
        let path = std::env::temp_dir().join(format!("rprof-token-test-{}", std::process::id()));
        std::fs::write(&path, "  abc\n").unwrap();
        let trimmed = Token::load(&path).map(|token| token.0);
        std::fs::write(&path, "\n").unwrap();
        let empty = Token::load(&path);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(trimmed.unwrap(), b"abc");
        assert!(empty.is_err());
        assert!(Token::load(&path).is_err(), "a missing file is an error");
    }
}
