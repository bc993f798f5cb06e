//! The accept loop of `gcx serve`: each connection served by hyper under the limits that
//! keep slow, silent or abusive clients from holding the service (slowloris).
//!
//! - At most `serve.max_connections` connections are served at once (a semaphore, as in
//!   mini-redis); the next ones wait in the kernel's backlog until one closes.
//! - A client has `serve.header_read_timeout` to send a request's headers, counted from
//!   the moment the connection is ready for one (hyper's `header_read_timeout` with a
//!   [`TokioTimer`]). That closes connections that send nothing, trickle their headers,
//!   or sit idle between keep-alive requests.
//! - Bodies: `serve.body_read_timeout` bounds reading a whole body ([`super::body`]).
//!
//! HTTP/1.1 only (TLS offers no other protocol by ALPN): hyper's HTTP/2 server has no
//! timer for a peer that never sends its preface or idles between requests, and an API
//! of small JSON requests gains little from multiplexing.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;

/// The connection limits of `[serve]`.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections served at once, so that many idle clients cannot exhaust the process's
    /// file descriptors and starve the others.
    pub max_connections: usize,
    /// Time a client has to send a request's headers once the connection is ready for
    /// one; also how long an idle keep-alive connection stays open.
    pub header_read_timeout: Duration,
}

/// Serves `router` on every connection `listener` accepts until `shutdown` resolves, then
/// lets open requests finish (connections close after their current answer). Each
/// request carries its peer's address as [`ConnectInfo<SocketAddr>`].
pub async fn serve<L>(
    mut listener: L,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: Listener<Addr = SocketAddr>,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    // Owned here, so aborting the server's task also ends every connection.
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                // The semaphore is never closed; stop serving if it somehow were.
                Err(_) => break,
            },
        };
        let (io, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        // Reap finished connections so the set stays as small as the open ones.
        while connections.try_join_next().is_some() {}
        let router = router.clone();
        let stop = stop_rx.clone();
        connections.spawn(async move {
            serve_connection(io, peer, router, limits, stop).await;
            drop(permit);
        });
    }
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

async fn serve_connection<I>(
    io: I,
    peer: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = router.map_request(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    if let Err(e) = drive(conn, &mut stop).await {
        tracing::debug!(%peer, error = %e, "connection closed");
    }
}

/// Runs one connection; on the stop signal, asks it to finish its current request and
/// close, and waits for that.
async fn drive<I, S>(
    conn: hyper::server::conn::http1::Connection<I, S>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), hyper::Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => return result,
        () = stopped(stop) => {}
    }
    conn.as_mut().graceful_shutdown();
    conn.await
}

/// Resolves once the server says stop (the watch's guard is not held across an await).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}
