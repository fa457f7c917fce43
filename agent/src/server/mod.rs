//! `rprof-agent serve`: an HTTP server that makes a native process look like a Go service with
//! `net/http/pprof` to every tool that speaks pprof over HTTP (`go tool pprof`, `pprof -http`,
//! Parca and Grafana Alloy scrape configs).
//!
//! Layout: `routes` (the URL space and layers) dispatches each profile to the handler of its
//! kind's form, as the registry ([`crate::kinds`]) declares it (`recorded`: a window,
//! `dumps`: a snapshot), and the rest to `index`, `cmdline`, `symbol`; `target` picks and
//! follows the process; `listener` serves connections within timeouts and a cap,
//! `body_deadline` bounds the time a request body may take, `auth` and `limits` bound who may
//! ask and how much; `errors` and `responses` give answers Go's shape; `shutdown` and `cancel`
//! end recordings early.
//! Recordings and snapshots are blocking work and run on tokio's blocking threads.

mod access_log;
mod auth;
mod body_deadline;
mod cancel;
mod cmdline;
mod count_text;
mod dumps;
mod errors;
mod index;
mod legacy_text;
mod limits;
mod listener;
mod params;
mod procs;
mod recorded;
mod recording;
mod responses;
mod routes;
mod shutdown;
mod state;
mod symbol;
mod tabwriter;
mod target;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use rprof_symbolizer::Symbolizer;

use crate::cli::ServeArgs;
use auth::Token;
use limits::Limits;
use shutdown::Shutdown;
use state::{AppState, Settings};
use target::{TargetSpec, TargetWatch};

/// Threads serving requests. The work itself runs on blocking threads; a container may see
/// every core of its node, and the server needs few.
const WORKER_THREADS: usize = 2;
/// Blocking threads: recordings (one per kind), snapshots, lookups and /proc scans, with room.
const MAX_BLOCKING_THREADS: usize = 16;

pub fn run(args: &ServeArgs) -> Result<()> {
    let token = args
        .token_file
        .as_deref()
        .map(Token::load)
        .transpose()?
        .map(Arc::new);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .thread_name("rprof-serve")
        .enable_all()
        .build()
        .context("cannot start the server's runtime")?;
    runtime.block_on(serve(args, token))
}

async fn serve(args: &ServeArgs, token: Option<Arc<Token>>) -> Result<()> {
    let shutdown = Shutdown::new();
    // Before anything else: from here on a signal means "finish", not "die".
    let signals = shutdown::on_signals(shutdown.clone()).context("cannot handle signals")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    let target = TargetWatch::start(target_spec(args)?, shutdown.clone())?;
    warn_if_exposed(address, token.is_some());
    tracing::info!("serving http://{address}/debug/pprof/");

    let state = Arc::new(AppState {
        settings: Settings {
            max_seconds: args.max_seconds,
            frequency: args.frequency,
            nonblocking: args.nonblocking,
        },
        target,
        symbolizer: Arc::new(Symbolizer::new()),
        limits: Limits::new(),
        shutdown: shutdown.clone(),
    });
    listener::serve(listener, routes::router(state, token), shutdown).await;
    signals.abort();
    tracing::info!("stopped");
    Ok(())
}

fn target_spec(args: &ServeArgs) -> Result<TargetSpec> {
    match (&args.process, args.pid) {
        (Some(name), _) => Ok(TargetSpec::Name(name.clone())),
        (None, Some(pid)) => Ok(TargetSpec::Pid(pid)),
        (None, None) => anyhow::bail!("serve needs --pid PID or --process NAME"),
    }
}

/// Stacks and command lines can hold secrets: say so when anyone on the network may ask.
fn warn_if_exposed(address: SocketAddr, has_token: bool) {
    if !address.ip().is_loopback() && !has_token {
        tracing::warn!(
            "listening on {address} without --token-file: anyone who can reach this address \
             can read the target's stacks and command line"
        );
    }
}
