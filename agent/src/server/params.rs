//! Query parameters, read the way net/http/pprof reads them: the first value of a key counts,
//! `debug` is an integer that falls back to 0, and `seconds` is a positive integer.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;

use super::errors::PprofError;

/// What Go answers to a `seconds` that is not a positive integer.
pub const INVALID_SECONDS: &str = r#"invalid value for "seconds" - must be a positive integer"#;

/// A request's query parameters, in order.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = PprofError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map(|Query(pairs)| Params(pairs))
            .map_err(|err| PprofError::bad_request(format!("malformed query: {err}")))
    }
}

impl Params {
    #[cfg(test)]
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Params(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// The first value of `key`, as Go's `FormValue`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `debug`, as Go reads it: anything that is not an integer is 0.
    pub fn debug(&self) -> i64 {
        self.get("debug")
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    }

    /// Whether `seconds` was given at all (an empty value counts as absent, as in Go).
    pub fn has_seconds(&self) -> bool {
        self.get("seconds").is_some_and(|value| !value.is_empty())
    }

    /// `seconds`: `None` when absent; 400 unless it is a positive integer no larger than `max`.
    ///
    /// Go caps a profile's duration below the server's write timeout. This server sets no
    /// write timeout (a profile is never cut off mid-response); `--max-seconds` is the cap, and
    /// asking for more is refused up front rather than answered with a truncated profile.
    pub fn seconds(&self, max: u64) -> Result<Option<u64>, PprofError> {
        if !self.has_seconds() {
            return Ok(None);
        }
        let value = self.get("seconds").unwrap_or_default();
        let seconds = value
            .parse::<i64>()
            .ok()
            .and_then(|s| u64::try_from(s).ok())
            .filter(|&s| s > 0)
            .ok_or_else(|| PprofError::bad_request(INVALID_SECONDS))?;
        if seconds > max {
            return Err(PprofError::bad_request(format!(
                "profile duration of {seconds}s exceeds the server's limit of {max}s \
                 (rprof-agent serve --max-seconds)"
            )));
        }
        Ok(Some(seconds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn seconds_must_be_a_positive_integer_within_the_cap() {
        let seconds = |value: &str| Params::from_pairs(&[("seconds", value)]).seconds(300);
        assert_eq!(seconds("30").unwrap(), Some(30));
        assert_eq!(seconds("+7").unwrap(), Some(7));
        assert_eq!(seconds("").unwrap(), None);
        assert_eq!(Params::default().seconds(300).unwrap(), None);
        for bad in ["0", "-1", "1.5", "abc", "99999999999999999999"] {
            let err = seconds(bad).unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(err.message(), INVALID_SECONDS, "{bad}");
        }
        let err = seconds("301").unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert!(err.message().contains("--max-seconds"), "{}", err.message());
    }

    #[test]
    fn debug_falls_back_to_zero_and_the_first_value_counts() {
        assert_eq!(Params::from_pairs(&[("debug", "2")]).debug(), 2);
        assert_eq!(Params::from_pairs(&[("debug", "x")]).debug(), 0);
        assert_eq!(Params::default().debug(), 0);
        let twice = Params::from_pairs(&[("debug", "1"), ("debug", "2")]);
        assert_eq!(twice.debug(), 1);
    }
}
