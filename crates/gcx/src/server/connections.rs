//! The accept loop of `gcx serve`: each connection served by hyper under the limits that
//! keep slow, silent or abusive clients from holding the service (slowloris).
//!
//! - At most `serve.max_connections` connections are served at once (a semaphore, as in
//!   mini-redis); the next ones wait in the kernel's backlog until one closes.
//! - HTTP/1.1: a client has `serve.header_read_timeout` to send a request's headers,
//!   counted from the moment the connection is ready for one (hyper's
//!   `header_read_timeout` with a [`TokioTimer`]). That closes connections that send
//!   nothing, trickle their headers, or sit idle between keep-alive requests.
//! - HTTP/2 (TLS with ALPN `h2`): keep-alive pings every `serve.header_read_timeout`; a
//!   peer that does not answer one within it is closed.
//! - Bodies: `serve.body_read_timeout` bounds reading a whole body ([`super::body`]).
//!
//! Plain TCP is HTTP/1.1 only: HTTP/2 is offered through TLS's ALPN, so no connection
//! ever waits in a protocol guess without a timer.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
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

/// Which protocol an accepted connection speaks.
pub trait Negotiated {
    /// Whether TLS's ALPN chose HTTP/2.
    fn is_h2(&self) -> bool;
}

impl Negotiated for TcpStream {
    fn is_h2(&self) -> bool {
        false
    }
}

impl Negotiated for TlsStream<TcpStream> {
    fn is_h2(&self) -> bool {
        self.get_ref().1.alpn_protocol() == Some(b"h2")
    }
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
    L::Io: Negotiated,
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
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Negotiated + Unpin + Send + 'static,
{
    let h2 = io.is_h2();
    let service = router.map_request(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request
    });
    let service = TowerToHyperService::new(service);
    let io = TokioIo::new(io);
    let result = if h2 {
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .keep_alive_interval(limits.header_read_timeout)
            .keep_alive_timeout(limits.header_read_timeout);
        let conn = builder.serve_connection(io, service);
        drive(conn, &mut stop, |c| c.graceful_shutdown()).await
    } else {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout);
        let conn = builder.serve_connection(io, service);
        drive(conn, &mut stop, |c| c.graceful_shutdown()).await
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection closed");
    }
}

/// Runs one connection; on the stop signal, asks it to finish its current request and
/// close, and waits for that.
async fn drive<C, E>(
    conn: C,
    stop: &mut watch::Receiver<bool>,
    graceful: impl FnOnce(std::pin::Pin<&mut C>),
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => return result,
        () = stopped(stop) => {}
    }
    graceful(conn.as_mut());
    conn.await
}

/// Resolves once the server says stop (the watch's guard is not held across an await).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}
