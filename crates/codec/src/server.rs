//! Serving one downstream connection as HTTP/1.1, HTTP/2 or either.

use std::{future::Future, time::Duration};

use http::{Request, Response};
use hyper::{body::Incoming, service::Service};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::io::{AsyncRead, AsyncWrite};

/// Which protocol a listener speaks downstream (Envoy's `codec_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerProtocol {
    /// HTTP/2 when the connection starts with the HTTP/2 preface, else HTTP/1.1.
    Auto,
    Http1,
    /// HTTP/2 with prior knowledge only.
    Http2,
}

/// Per-connection server settings, resolved from config by the caller.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub protocol: ServerProtocol,
    /// Largest request head accepted; larger heads get 431 (Envoy's
    /// `max_request_headers_kb`). For HTTP/1.1 this bounds hyper's read
    /// buffer, which one read can overshoot by up to its spare capacity, so
    /// callers that need the exact limit count the parsed head themselves.
    pub max_header_bytes: usize,
    /// How long a client may take to send a request head.
    pub header_read_timeout: Option<Duration>,
}

/// Serves `io` until the peer closes, an error occurs, or `drain` resolves; on
/// drain, in-flight requests finish and the connection then closes
/// (HTTP/1.1: after the current response; HTTP/2: GOAWAY).
///
/// Upgrades (WebSocket) are enabled: the service decides whether to accept.
pub async fn serve<I, S, B>(
    io: I,
    opts: &ServerOptions,
    service: S,
    drain: impl Future<Output = ()>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Send,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        // hyper's floor for its read buffer is 8 KiB.
        .max_buf_size(opts.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(opts.max_header_bytes).unwrap_or(u32::MAX));
    let builder = match opts.protocol {
        ServerProtocol::Auto => builder,
        ServerProtocol::Http1 => builder.http1_only(),
        ServerProtocol::Http2 => builder.http2_only(),
    };
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::pin!(drain);
    tokio::select! {
        res = conn.as_mut() => return res,
        () = &mut drain => {}
    }
    conn.as_mut().graceful_shutdown();
    conn.await
}
