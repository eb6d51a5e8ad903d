//! The HTTP connection manager as a network filter: one downstream
//! connection served by the codec, each request through [`crate::handle`].

use std::{sync::Arc, time::Duration};

use hyper::service::service_fn;
use strait_codec::{Counted, ServerOptions, ServerProtocol, server};
use strait_model::{CodecType, HttpConnectionManager};
use strait_net::DrainWatch;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::{
    conn::{ConnCtx, Connection},
    request::handle_counted,
    shared::Shared,
};

/// How long an HTTP/1.1 connection may wait for (the rest of) a request
/// head. hyper has one timer for both a keep-alive connection waiting for its
/// next request (Envoy's `idle_timeout`, 1 h) and a head arriving slowly
/// (covered in Envoy by `stream_idle_timeout`, 5 min); the shorter of the two
/// configured values bounds both, so neither limit is ever exceeded.
fn header_read_timeout(hcm: &HttpConnectionManager) -> Option<Duration> {
    match (hcm.idle_timeout, hcm.stream_idle_timeout) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Serves one downstream connection with the HTTP connection manager `hcm`
/// until it closes, `drain` fires or its filter chain leaves the live
/// config (HTTP/1.1 closes after the current response, HTTP/2 sends
/// GOAWAY), or it has been idle for the manager's `idle_timeout`. Every
/// request loads the snapshot afresh.
pub async fn serve_connection<I>(
    io: I,
    hcm: &HttpConnectionManager,
    conn: Connection,
    shared: Arc<Shared>,
    drain: DrainWatch,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let stats = shared.http_stats(&hcm.stat_prefix);
    stats.cx_total.increment(1);
    stats.cx_active.increment(1.0);
    let opts = ServerOptions {
        protocol: match hcm.codec {
            CodecType::Auto => ServerProtocol::Auto,
            CodecType::Http1 => ServerProtocol::Http1,
            CodecType::Http2 => ServerProtocol::Http2,
        },
        max_header_bytes: hcm.max_request_headers_kb as usize * 1024,
        header_read_timeout: header_read_timeout(hcm),
    };
    // Envoy drains the connections of a filter chain that a listener
    // update removed or changed.
    let retired = conn.chain.tenure().ended();
    let ctx = Arc::new(ConnCtx::new(shared, conn, Arc::clone(&stats)));
    let idle = idle_watch(Arc::clone(&ctx), hcm.idle_timeout);
    let svc = service_fn(move |req| {
        let ctx = Arc::clone(&ctx);
        async move { Ok::<_, std::convert::Infallible>(handle_counted(req, ctx).await) }
    });
    let io = Counted::new(io, Arc::clone(&stats));
    let stop = async move {
        tokio::select! {
            () = drain.signaled() => {}
            () = idle => {}
            () = retired => {}
        }
    };
    if let Err(e) = server::serve(io, &opts, svc, stop).await {
        tracing::debug!(error = %e, "downstream connection ended with error");
    }
    stats.cx_active.decrement(1.0);
}

/// Resolves once the connection has had no open stream for `limit` (Envoy's
/// `common_http_protocol_options.idle_timeout`); the connection then closes
/// gracefully (HTTP/2: GOAWAY). Never resolves when `limit` is `None`.
async fn idle_watch(ctx: Arc<ConnCtx>, limit: Option<Duration>) {
    let Some(limit) = limit else {
        return std::future::pending().await;
    };
    loop {
        match ctx.streams.idle_for() {
            Some(idle) if idle >= limit => return,
            Some(idle) => tokio::time::sleep(limit - idle).await,
            None => tokio::time::sleep(limit).await,
        }
    }
}
