//! The URL space, as net/http/pprof lays it out, and the layers every request goes through.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state, map_response};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::auth::{require_token, Token};
use super::errors::PprofError;
use super::params::Params;
use super::state::SharedState;
use super::{access_log, cmdline, dumps, index, recorded, symbol};
use crate::kinds::{self, Endpoint, Form, Kind};

/// Largest `/symbol` request body: ~60 000 addresses, far more than any profile has.
const MAX_SYMBOL_BODY: usize = 1 << 20;

pub fn router(state: SharedState, token: Option<Arc<Token>>) -> Router {
    let mut router: Router<SharedState> = Router::new()
        .route("/debug/pprof", get(to_index))
        .route("/debug/pprof/", get(index::index))
        .route("/debug/pprof/cmdline", get(cmdline::cmdline))
        .route(
            "/debug/pprof/symbol",
            get(symbol::lookup_query)
                .post(symbol::lookup_body)
                .layer(DefaultBodyLimit::max(MAX_SYMBOL_BODY)),
        )
        .route("/debug/pprof/{name}", get(named_profile));
    // Endpoints a kind serves elsewhere (fgprof's /debug/fgprof).
    for (kind, endpoint) in kinds::endpoints() {
        if let Some(path) = endpoint.path {
            router = router.route(
                path,
                get(move |State(state), params| serve(state, kind, endpoint, params)),
            );
        }
    }
    let mut router = router
        .fallback(|| async { (StatusCode::NOT_FOUND, "404 page not found\n") })
        .with_state(state);
    if let Some(token) = token {
        router = router.layer(from_fn_with_state(token, require_token));
    }
    router
        .layer(map_response(no_sniffing))
        .layer(from_fn(access_log::log_requests))
}

/// `/debug/pprof/NAME`: the endpoint of a kind in the registry, served in its form; Go's
/// "Unknown profile" for the rest.
async fn named_profile(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    params: Params,
) -> Response {
    let Some((kind, endpoint)) = kinds::endpoint(&name) else {
        return PprofError::unknown_profile().into_response();
    };
    serve(state, kind, endpoint, params).await
}

/// One endpoint of a kind, served in its form.
async fn serve(
    state: SharedState,
    kind: &'static Kind,
    endpoint: &'static Endpoint,
    params: Params,
) -> Response {
    let served = match endpoint.form {
        Form::Window | Form::Recorded => recorded::serve(state, kind, endpoint, params).await,
        Form::Snapshot { sample_type } => {
            let profile = dumps::DumpProfile {
                name: endpoint.name,
                sample_type,
            };
            dumps::serve(state, profile, params).await
        }
    };
    served.into_response()
}

/// Go's mux answers a path missing its trailing slash with 301 to the path with it.
async fn to_index() -> Response {
    let mut response = StatusCode::MOVED_PERMANENTLY.into_response();
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/debug/pprof/"));
    response
}

/// Every pprof handler in Go sets this; so does every response here.
async fn no_sniffing(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
