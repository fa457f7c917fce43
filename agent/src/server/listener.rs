//! Accepting and serving connections, with bounds a slow or idle client cannot get around.
//!
//! - A connection must send a whole request header within [`HEADER_TIMEOUT`] of being
//!   accepted, and again within it of each answer (the keep-alive idle time): past it, it is
//!   closed. A client that sends half a header and waits holds its connection that long, no
//!   more, and the bearer token is checked as soon as the header is in.
//! - At most [`MAX_CONNECTIONS`] connections are open at once: each costs buffers and a file
//!   descriptor. Past the cap, new connections wait in the kernel's accept queue until one
//!   closes; as idle ones close within the header timeout, the cap is held only by connections
//!   being served or by idle ones for a bounded time.
//! - A request header may hold at most [`MAX_HEADER_BYTES`], and a request body must arrive
//!   whole within [`BODY_TIMEOUT`] of its header.
//!
//! Shutdown stops accepting, lets every request in flight finish (a profile cut short by the
//! shutdown is still sent), closes idle connections and returns once all are closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::{service_fn, Service};
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::body_deadline::DeadlineBody;
use super::shutdown::Shutdown;

/// Connections open at once. Profiling clients hold one or two each; the rest of the room is
/// for clients that connect and are slow to ask, until their header timeout.
pub const MAX_CONNECTIONS: usize = 512;
/// How long a connection may take to send a request header, from its accept or from the end
/// of its previous answer.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request body may take to arrive, from the end of its header.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// The most a request header may hold (hyper's smallest allowed buffer is 8 KiB). Clients of
/// a pprof endpoint send a few hundred bytes.
const MAX_HEADER_BYTES: usize = 64 * 1024;
/// How long to wait before accepting again when accept fails (out of file descriptors).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The client's address, for the request log.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

/// Serves `router` on `listener` until `shutdown` is triggered, then until every connection
/// has closed.
pub async fn serve(listener: TcpListener, router: Router, shutdown: Shutdown) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    let app = TowerToHyperService::new(router);
    loop {
        let (stream, peer, slot) = tokio::select! {
            () = shutdown.wait() => break,
            accepted = accept(&listener, &slots) => accepted,
        };
        let app = app.clone();
        // The access log and the handlers find the client's address where axum puts it.
        let service = service_fn(move |request: Request<Incoming>| {
            let mut request = request.map(|body| DeadlineBody::new(body, BODY_TIMEOUT));
            request.extensions_mut().insert(ConnectInfo(Peer(peer)));
            app.call(request)
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .max_buf_size(MAX_HEADER_BYTES)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A header timeout, a reset or a malformed request: the client's doing, not ours.
            if let Err(err) = connection.await {
                tracing::debug!("connection from {peer}: {err}");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The next connection, once one of the [`MAX_CONNECTIONS`] slots is free.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> (TcpStream, SocketAddr, OwnedSemaphorePermit) {
    // The semaphore is never closed: acquiring only waits.
    let slot = Arc::clone(slots)
        .acquire_owned()
        .await
        .expect("the connection semaphore is never closed");
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => return (stream, peer, slot),
            Err(err) => {
                // Out of file descriptors, or a connection reset before accept: transient.
                tracing::warn!("accept: {err}");
                tokio::time::sleep(ACCEPT_RETRY).await;
            }
        }
    }
}
