//! `/debug/pprof/symbol`: what pprof asks a Go server to name addresses in profiles that lack
//! function names. GET answers `num_symbols: 1` (there are symbols); the addresses to name come
//! `+`-separated in a POST body (or the raw query), and each one known gets a `0xADDR name`
//! line, named through the target's own modules (inline frames: the innermost function, as Go's
//! `FuncForPC` names it).

use std::fmt::Write;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use rprof_symbolizer::Symbolizer;

use super::errors::PprofError;
use super::responses;
use super::state::SharedState;
use crate::frames::name_stack;
use crate::unwind::ModuleSet;

/// Go's first line: pprof only checks whether the count is zero.
const HEADER: &str = "num_symbols: 1\n";

pub async fn lookup_query(
    State(state): State<SharedState>,
    RawQuery(query): RawQuery,
) -> Result<Response, PprofError> {
    lookup(state, query.unwrap_or_default().as_bytes()).await
}

pub async fn lookup_body(
    State(state): State<SharedState>,
    body: Bytes,
) -> Result<Response, PprofError> {
    lookup(state, &body).await
}

async fn lookup(state: SharedState, request: &[u8]) -> Result<Response, PprofError> {
    let addresses = parse_addresses(request);
    if addresses.is_empty() {
        return Ok(responses::text(HEADER));
    }
    let target = state.target.current()?;
    let _turn = state.limits.lookups.enter().await?;
    let symbolizer = Arc::clone(&state.symbolizer);
    let names = tokio::task::spawn_blocking(move || name_all(target.pid, symbolizer, &addresses))
        .await?
        .map_err(|err| PprofError::from_chain("cannot read the target's modules", &err))?;
    Ok(responses::text(format!("{HEADER}{names}")))
}

/// `0xADDR name` for every address a module of `pid` names.
fn name_all(pid: u32, symbolizer: Arc<Symbolizer>, addresses: &[u64]) -> anyhow::Result<String> {
    let modules = ModuleSet::load(pid, symbolizer)?;
    let mut lines = String::new();
    for &address in addresses {
        let innermost = name_stack(&modules, &[address]).into_iter().next();
        if let Some(name) = innermost.and_then(|frame| frame.function) {
            let _ = writeln!(lines, "{address:#x} {name}");
        }
    }
    Ok(lines)
}

/// The `+`-separated addresses, parsed as Go's `strconv.ParseUint(word, 0, 64)`; words that do
/// not parse, and zero, are skipped as Go skips them.
fn parse_addresses(request: &[u8]) -> Vec<u64> {
    request
        .split(|&byte| byte == b'+')
        .filter_map(|word| std::str::from_utf8(word).ok())
        .filter_map(|word| parse_uint(word.trim()))
        .filter(|&address| address != 0)
        .collect()
}

/// An unsigned integer with Go's base prefixes: 0x (hex), 0b (binary), 0o or 0 (octal).
fn parse_uint(word: &str) -> Option<u64> {
    let lower = word.to_ascii_lowercase();
    let (digits, radix) = if let Some(hex) = lower.strip_prefix("0x") {
        (hex, 16)
    } else if let Some(binary) = lower.strip_prefix("0b") {
        (binary, 2)
    } else if let Some(octal) = lower.strip_prefix("0o") {
        (octal, 8)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (&lower[1..], 8)
    } else {
        (lower.as_str(), 10)
    };
    let digits = digits.replace('_', "");
    if digits.is_empty() || digits.starts_with('+') {
        return None;
    }
    u64::from_str_radix(&digits, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_as_go_parses_them() {
        assert_eq!(parse_addresses(b"0x10+0x2f"), vec![0x10, 0x2f]);
        assert_eq!(parse_addresses(b"0X10+16+020+0b11"), vec![16, 16, 16, 3]);
        assert_eq!(parse_addresses(b"0x10+junk++0+0x"), vec![0x10]);
        assert_eq!(parse_addresses(b"0x1_0\n"), vec![0x10]);
        assert!(parse_addresses(b"").is_empty());
        assert!(parse_addresses(b"0x+").is_empty());
    }
}
