//! The HTTP server loop of `conclave serve`: hyper's HTTP/1.1 connections with the limits a
//! server facing untrusted clients needs, which `axum::serve` does not set.
//!
//! - **Header-read timeout** ([`HttpLimits::header_timeout`], default 10 s): a client that
//!   has not sent a whole request head within it is disconnected. It also bounds how long a
//!   kept-alive connection may sit idle between requests (hyper starts the same timer when it
//!   waits for the next request).
//! - **Connection cap** ([`HttpLimits::max_connections`], default 512): beyond it, new
//!   connections wait in the listen backlog until one closes, so that slow or idle clients
//!   cannot take every file descriptor (a slow client holds a slot at most the header
//!   timeout).
//! - **Shutdown deadline** ([`HttpLimits::shutdown_grace`], default 30 s): on the shutdown
//!   signal the listener closes, requests in flight get this long to finish, and connections
//!   still open after it are cut (a decision cut before its record is written is not recorded;
//!   its client sees the connection close).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Limits of the HTTP server (see the [module](self) documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Time a client has to send a request head (and a kept-alive connection may stay idle).
    pub header_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Time requests in flight get to finish after the shutdown signal.
    pub shutdown_grace: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            max_connections: 512,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// How the server ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every request in flight finished.
    Drained,
    /// The shutdown deadline passed with connections still open; they were cut.
    Cut,
}

/// Serves `app` on `listener` within `limits` until `shutdown` completes, then drains.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) -> Stopped {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    // The connections' tasks: aborted (their sockets closed) when the deadline passes.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        // Finished connections are reaped as new ones come, so the set stays small.
        while connections.try_join_next().is_some() {}
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment, do not spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        connections.spawn(async move {
            // A connection that ends in an error (a timeout, a reset) concerns its client.
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended");
            }
            drop(slot);
        });
    }
    drop(listener);
    let stopped = tokio::select! {
        () = graceful.shutdown() => Stopped::Drained,
        () = tokio::time::sleep(limits.shutdown_grace) => Stopped::Cut,
    };
    connections.shutdown().await;
    stopped
}
