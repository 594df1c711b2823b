//! Serving HTTP/1.1 connections, guarded against clients that hold them
//! for nothing: a connection that brings no complete request head within
//! the idle timeout — silent from the start, stalled mid-headers
//! (slowloris), or idle between keep-alive requests — is closed; and the
//! node holds at most as many connections as its file limit leaves room
//! for, beyond which new ones wait in the listen backlog until one
//! closes, so the store and the upstream calls never run out of file
//! descriptors. On stop, the node accepts no more and lets open
//! connections finish their requests.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// File descriptors kept for the store, upstream calls, gossip and logs.
const RESERVED_FILES: u64 = 1_024;
/// The most connections, whatever the file limit.
const MAX_CONNECTIONS: u64 = 65_536;
/// Connections allowed when the file limit cannot be read.
const FALLBACK_CONNECTIONS: u64 = 1_024;
/// Linux's errors for out of memory, of files system-wide, of files here.
const ENOMEM: i32 = 12;
const ENFILE: i32 = 23;
const EMFILE: i32 = 24;

/// How many client connections the node may hold: its file limit, raised
/// to the hard limit first, less what the rest of the node needs.
pub fn connection_limit() -> usize {
    let files = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(files) => files,
        Err(error) => {
            tracing::warn!(%error, "cannot read the open-file limit");
            FALLBACK_CONNECTIONS + RESERVED_FILES
        }
    };
    let limit = files
        .saturating_sub(RESERVED_FILES)
        .clamp(1, MAX_CONNECTIONS);
    usize::try_from(limit).unwrap_or(usize::MAX)
}

/// Serves `router` on `listener` until `stop` resolves, then waits for the
/// open connections to finish (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    idle_timeout: Duration,
    max_connections: usize,
    stop: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(idle_timeout);
    let mut stop = std::pin::pin!(stop);
    let mut warned_full = false;
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot,
            () = &mut stop => break,
        };
        let Ok(slot) = slot else { break };
        if slots.available_permits() == 0 && !warned_full {
            warned_full = true;
            tracing::warn!(
                max_connections,
                "the node holds as many connections as it may; new ones wait"
            );
        }
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of files or memory for a moment: waiting lets
                    // connections close instead of spinning on the error.
                    // Anything else is one client's (reset, aborted).
                    if matches!(error.raw_os_error(), Some(ENOMEM | ENFILE | EMFILE)) {
                        tracing::warn!(%error, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
            () = &mut stop => break,
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let service = TowerToHyperService::new(router.clone());
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // Errors here are the client's: a timeout, a reset, bad bytes.
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
