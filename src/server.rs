//! The HTTP server: hyper-util's auto builder (HTTP/1.1 and h2c on one port) with graceful
//! shutdown. On SIGTERM or Ctrl-C it stops accepting, lets open streams finish up to a deadline,
//! then closes the rest and returns once every connection task has ended, so whatever a stream
//! does when it is dropped (its usage record, its lease) has happened before the caller drains
//! the usage queue and exits.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::Service;

/// How client connections are served.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerOptions {
    /// The most an HTTP/1.1 connection buffers while reading (hyper's `max_buf_size`, at least
    /// 8192), which also bounds a request head; `None` keeps hyper's default (about 400 KiB).
    /// Every open stream keeps its connection's read buffer for its whole life: at 8192 that is
    /// 8 KiB, while hyper's default lets it grow to 16 KiB on the first request.
    pub http1_max_buf_size: Option<usize>,
}

/// Serves `service` on `listener` until `shutdown` resolves, then drains open connections for
/// at most `drain`.
pub async fn serve<S, F>(
    listener: TcpListener,
    service: S,
    shutdown: F,
    drain: Duration,
) -> std::io::Result<()>
where
    S: Service<
            http::Request<Incoming>,
            Response = http::Response<axum::body::Body>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    F: Future<Output = ()>,
{
    serve_with(listener, service, shutdown, drain, ServerOptions::default()).await
}

/// [`serve`] with `options`.
pub async fn serve_with<S, F>(
    listener: TcpListener,
    service: S,
    shutdown: F,
    drain: Duration,
    options: ServerOptions,
) -> std::io::Result<()>
where
    S: Service<
            http::Request<Incoming>,
            Response = http::Response<axum::body::Body>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    F: Future<Output = ()>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    if let Some(max) = options.http1_max_buf_size {
        // hyper panics below its minimum.
        builder.http1().max_buf_size(max.max(8192));
    }
    let graceful = GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!("accept failed: {error}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                // The peer address rides along in every request (axum's `ConnectInfo`), for
                // the web console's login rate limit.
                let with_peer = tower::ServiceExt::map_request(
                    service.clone(),
                    move |mut request: http::Request<Incoming>| {
                        request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                        request
                    },
                );
                let connection = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(with_peer))
                    .into_owned();
                let connection = graceful.watch(connection);
                connections.spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%peer, "connection ended: {error}");
                    }
                });
                // Reap finished connections so the set stays as large as what is open.
                while connections.try_join_next().is_some() {}
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!(
        "shutting down: no new connections; waiting up to {} s for open streams",
        drain.as_secs()
    );
    match tokio::time::timeout(drain, graceful.shutdown()).await {
        Ok(()) => tracing::info!("all connections closed"),
        Err(_) => {
            tracing::warn!(
                open = connections.len(),
                "drain deadline passed; closing remaining connections"
            );
            // Dropping a connection drops its streams, which record their usage then.
            connections.abort_all();
        }
    }
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
