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

impl Client {
    pub async fn http1(addr: SocketAddr) -> anyhow::Result<Client> {
        let io = TokioIo::new(TcpStream::connect(addr).await?);
        let (send, conn) = http1::handshake(io).await?;
        tokio::spawn(conn);
        Ok(Client::H1(send))
    }

    pub async fn http2(addr: SocketAddr) -> anyhow::Result<Client> {
        let io = TokioIo::new(TcpStream::connect(addr).await?);
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
