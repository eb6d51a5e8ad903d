//! A small real HTTP client (hyper) for tests: one connection per [`Client`],
//! HTTP/1.1 keep-alive or HTTP/2 prior knowledge.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// A fully read response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The echo upstream's JSON, parsed.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One client connection.
pub enum Client {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// Which protocol a client speaks ([`Client::connect`], [`send_streaming`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    /// HTTP/2 with prior knowledge.
    Http2,
}

impl Client {
    pub async fn http1(addr: SocketAddr) -> anyhow::Result<Client> {
        let io = TokioIo::new(connect(addr).await?);
        let (send, conn) = http1::handshake(io).await?;
        tokio::spawn(conn);
        Ok(Client::H1(send))
    }

    pub async fn http2(addr: SocketAddr) -> anyhow::Result<Client> {
        let io = TokioIo::new(connect(addr).await?);
        let (send, conn) = http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(conn);
        Ok(Client::H2(send))
    }

    /// Sends `req` (a relative URI is fine for HTTP/1.1; `Host` defaults to
    /// `localhost`) and reads the whole response.
    pub async fn send(&mut self, mut req: Request<Full<Bytes>>) -> anyhow::Result<Reply> {
        let resp = match self {
            Client::H1(s) => {
                if !req.headers().contains_key(http::header::HOST) {
                    req.headers_mut().insert(
                        http::header::HOST,
                        http::HeaderValue::from_static("localhost"),
                    );
                }
                s.ready().await?;
                s.send_request(req).await?
            }
            Client::H2(s) => {
                if req.uri().authority().is_none() {
                    let pq = req
                        .uri()
                        .path_and_query()
                        .map_or("/", |p| p.as_str())
                        .to_owned();
                    *req.uri_mut() = format!("http://localhost{pq}").parse()?;
                }
                s.ready().await?;
                s.send_request(req).await?
            }
        };
        let (parts, body) = resp.into_parts();
        let collected = body.collect().await?;
        let trailers = collected.trailers().cloned();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body: collected.to_bytes(),
            trailers,
        })
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> anyhow::Result<Reply> {
        let req = Request::get(path).body(Full::new(Bytes::new()))?;
        self.send(req).await
    }
}

impl Client {
    /// Connects with `protocol`.
    pub async fn connect(addr: SocketAddr, protocol: Protocol) -> anyhow::Result<Client> {
        match protocol {
            Protocol::Http1 => Client::http1(addr).await,
            Protocol::Http2 => Client::http2(addr).await,
        }
    }

    /// Another handle on the same HTTP/2 connection (requests multiplex as
    /// concurrent streams); `None` for HTTP/1.1, whose connection is serial.
    /// True once the connection is closed (by either side).
    pub fn is_closed(&self) -> bool {
        match self {
            Client::H1(s) => s.is_closed(),
            Client::H2(s) => s.is_closed(),
        }
    }

    pub fn share(&self) -> Option<Client> {
        match self {
            Client::H1(_) => None,
            Client::H2(s) => Some(Client::H2(s.clone())),
        }
    }
}

/// Sends one request with any body (streamed, so a huge body is never held
/// in memory) on a new connection, and returns the response with its body
/// unread: the caller decides whether to collect, count or drop it.
pub async fn send_streaming<B>(
    addr: SocketAddr,
    protocol: Protocol,
    mut req: Request<B>,
) -> anyhow::Result<http::Response<hyper::body::Incoming>>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let io = TokioIo::new(connect(addr).await?);
    match protocol {
        Protocol::Http1 => {
            if !req.headers().contains_key(http::header::HOST) {
                req.headers_mut().insert(
                    http::header::HOST,
                    http::HeaderValue::from_static("localhost"),
                );
            }
            let (mut send, conn) = http1::handshake(io).await?;
            tokio::spawn(conn);
            Ok(send.send_request(req).await?)
        }
        Protocol::Http2 => {
            if req.uri().authority().is_none() {
                let pq = req
                    .uri()
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_owned();
                *req.uri_mut() = format!("http://localhost{pq}").parse()?;
            }
            let (mut send, conn) = http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            Ok(send.send_request(req).await?)
        }
    }
}

/// A TCP connection with `TCP_NODELAY`, as curl and browsers open them:
/// small frames (HTTP/2 WINDOW_UPDATEs) must not wait for Nagle.
async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Reads `body` to the end, dropping each chunk as it arrives; returns the
/// number of data bytes and the trailers, if any.
pub async fn discard(mut body: hyper::body::Incoming) -> anyhow::Result<(u64, Option<HeaderMap>)> {
    let mut total = 0u64;
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        match frame.into_data() {
            Ok(data) => total += data.len() as u64,
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    Ok((total, trailers))
}

/// A request body of `len` bytes generated on the fly from one shared chunk
/// (cheap `Bytes` clones), so uploading a gigabyte costs no memory.
#[derive(Debug)]
pub struct Generated {
    chunk: Bytes,
    remaining: u64,
}

impl Generated {
    /// `len` bytes of `b'x'`, sent in 64 KiB frames.
    pub fn new(len: u64) -> Generated {
        Generated {
            chunk: Bytes::from(vec![b'x'; 64 * 1024]),
            remaining: len,
        }
    }
}

impl http_body::Body for Generated {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.remaining == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(self.chunk.len());
        self.remaining -= n as u64;
        let data = self.chunk.slice(..n);
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

/// A request body of given frames (data, then optionally trailers), sent in
/// order: the way to send request trailers.
#[derive(Debug, Default)]
pub struct Frames(std::collections::VecDeque<http_body::Frame<Bytes>>);

impl Frames {
    /// `data` followed by `trailers`.
    pub fn with_trailers(data: impl Into<Bytes>, trailers: HeaderMap) -> Frames {
        Frames(
            [
                http_body::Frame::data(data.into()),
                http_body::Frame::trailers(trailers),
            ]
            .into(),
        )
    }
}

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}
