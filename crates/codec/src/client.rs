//! Upstream client connections: TCP connect, then an HTTP/1.1 or HTTP/2
//! handshake (over the socket, or over any stream the caller layered on it,
//! such as TLS), with the connection driven by a task on the current runtime.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use http::{Request, Response};
use hyper::{
    body::Incoming,
    client::conn::{http1, http2},
};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};

use crate::{Body, ByteCounter, Counted};

/// The protocol spoken to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    /// HTTP/2 with prior knowledge (h2c).
    Http2,
}

/// Why an upstream connection could not be made. Envoy reports all of these
/// as `UF` (upstream connection failure).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    #[error("connection failure: {0}")]
    Io(#[from] std::io::Error),
    #[error("connection timeout")]
    Timeout,
    #[error("handshake failure: {0}")]
    Handshake(#[from] hyper::Error),
    #[error("TLS handshake failure: {0}")]
    Tls(std::io::Error),
}

/// One upstream connection's request sender, and what the opener recorded
/// of it ([`ConnFacts`]).
#[derive(Debug)]
pub struct ClientConn {
    send: Sender,
    /// Behind one pointer: a response body holds its connection, and the
    /// connection manager's futures hold response bodies by value.
    facts: Option<Arc<ConnFacts>>,
}

/// What the opener of a connection recorded of it, once per connection.
#[derive(Debug, Default, Clone)]
pub struct ConnFacts {
    /// The local address (the access log's `%UPSTREAM_LOCAL_ADDRESS%`).
    pub local: Option<SocketAddr>,
    /// The first URI SAN of the server's certificate on a TLS connection
    /// (Istio's `destination_principal` on the client side).
    pub peer_uri_san: Option<Arc<str>>,
}

#[derive(Debug)]
enum Sender {
    Http1(http1::SendRequest<Body>),
    /// Cloneable: every clone multiplexes onto the same connection.
    Http2(http2::SendRequest<Body>),
}

impl ClientConn {
    /// Connects to `addr` within `timeout` and spawns the connection's driver
    /// on the current tokio runtime. Must be called within a runtime.
    /// Bytes moved on the connection are reported to `counter`.
    pub async fn connect<C: ByteCounter + Unpin>(
        addr: SocketAddr,
        protocol: Protocol,
        timeout: Duration,
        counter: C,
    ) -> Result<ClientConn, ConnectError> {
        let stream = connect_tcp(addr, timeout).await?;
        let local = stream.local_addr().ok();
        let mut conn = Self::handshake(stream, protocol, counter).await?;
        conn.set_facts(ConnFacts {
            local,
            peer_uri_san: None,
        });
        Ok(conn)
    }

    /// The HTTP handshake over an established stream `io`; the connection's
    /// driver is spawned on the current tokio runtime.
    pub async fn handshake<I, C>(
        io: I,
        protocol: Protocol,
        counter: C,
    ) -> Result<ClientConn, ConnectError>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        C: ByteCounter + Unpin,
    {
        let io = TokioIo::new(Counted::new(io, counter));
        match protocol {
            Protocol::Http1 => {
                let (send, conn) = http1::handshake(io).await?;
                tokio::spawn(async move {
                    if let Err(e) = conn.with_upgrades().await {
                        tracing::debug!(error = %e, "upstream http1 connection ended");
                    }
                });
                Ok(ClientConn {
                    send: Sender::Http1(send),
                    facts: None,
                })
            }
            Protocol::Http2 => {
                let (send, conn) = http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .handshake(io)
                    .await?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "upstream http2 connection ended");
                    }
                });
                Ok(ClientConn {
                    send: Sender::Http2(send),
                    facts: None,
                })
            }
        }
    }

    /// The connection's local address, when the opener recorded it.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.facts.as_ref().and_then(|f| f.local)
    }

    /// The server certificate's first URI SAN, when the opener recorded it.
    pub fn peer_uri_san(&self) -> Option<&Arc<str>> {
        self.facts.as_ref().and_then(|f| f.peer_uri_san.as_ref())
    }

    /// Records what the opener knows of the connection.
    pub fn set_facts(&mut self, facts: ConnFacts) {
        self.facts = Some(Arc::new(facts));
    }

    /// Whether it is an HTTP/1.1 connection.
    pub fn is_http1(&self) -> bool {
        matches!(self.send, Sender::Http1(_))
    }

    /// True when a request can be sent now without waiting.
    pub fn is_ready(&self) -> bool {
        match &self.send {
            Sender::Http1(s) => s.is_ready(),
            Sender::Http2(s) => s.is_ready(),
        }
    }

    /// True once the connection can never send again.
    pub fn is_closed(&self) -> bool {
        match &self.send {
            Sender::Http1(s) => s.is_closed(),
            Sender::Http2(s) => s.is_closed(),
        }
    }

    /// Waits until the connection can take a request.
    pub async fn ready(&mut self) -> Result<(), hyper::Error> {
        match &mut self.send {
            Sender::Http1(s) => s.ready().await,
            Sender::Http2(s) => s.ready().await,
        }
    }

    /// Sends `req` and waits for the response head. For HTTP/1.1 the
    /// connection is busy until the response body has been read.
    pub async fn send(&mut self, req: Request<Body>) -> Result<Response<Incoming>, hyper::Error> {
        match &mut self.send {
            Sender::Http1(s) => s.send_request(req).await,
            Sender::Http2(s) => s.send_request(req).await,
        }
    }

    /// Another handle onto the same HTTP/2 connection; `None` for HTTP/1.1.
    pub fn share(&self) -> Option<ClientConn> {
        match &self.send {
            Sender::Http1(_) => None,
            Sender::Http2(s) => Some(ClientConn {
                send: Sender::Http2(s.clone()),
                facts: self.facts.clone(),
            }),
        }
    }
}

/// A TCP connection to `addr` within `timeout`, with Nagle off (small
/// proxied requests must not wait for it).
pub async fn connect_tcp(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ConnectError> {
    connect_tcp_from(addr, None, timeout).await
}

/// Like [`connect_tcp`], bound first to `source` (any port) when given:
/// Envoy's `upstream_bind_config.source_address`.
pub async fn connect_tcp_from(
    addr: SocketAddr,
    source: Option<std::net::IpAddr>,
    timeout: Duration,
) -> Result<TcpStream, ConnectError> {
    let connect = async {
        match source {
            None => TcpStream::connect(addr).await,
            Some(ip) => {
                let socket = if addr.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()?
                } else {
                    tokio::net::TcpSocket::new_v6()?
                };
                socket.bind(SocketAddr::new(ip, 0))?;
                socket.connect(addr).await
            }
        }
    };
    let stream = tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| ConnectError::Timeout)??;
    stream.set_nodelay(true)?;
    Ok(stream)
}
