//! Real upstream servers for tests, each on its own thread and runtime so a
//! test of any flavour (sync or async) can use them.
//!
//! The HTTP echo server answers by path:
//! - `/status/N`: status N, echo body.
//! - `/delay/MS`: waits MS milliseconds, then echoes.
//! - `/bytes/N`: streams N bytes (64 KiB chunks).
//! - `/count`: reads the request body as a stream and answers its length.
//! - `/drip/MS`: sends its head and `a`, waits MS milliseconds, sends `b`.
//! - `/grpc.health.v1.Health/Check`: a gRPC health answer, SERVING.
//! - `/trailers`: a body followed by trailers `x-trailer: yes` plus the
//!   request's trailers, if it had any.
//! - `/ws`: accepts a WebSocket-style upgrade (101) and echoes raw bytes.
//! - `/reset`: fails the request, so the connection is closed without a response.
//! - anything else: 200 with a JSON echo of the request
//!   (`{"upstream","method","path","version","headers":[[k,v]..],"body_len"}`).
//!
//! Every response carries `x-upstream: NAME`, plus one header per request
//! header `x-respond-header: NAME=VALUE` (to make the upstream send e.g. a
//! `server` or hop-by-hop header). Each request's path and query
//! (as the upstream parsed it) is recorded, see [`Upstream::paths`].

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU16, AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{body::Frame, body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    sync::oneshot,
};

type Out = BoxBody<Bytes, Infallible>;

/// Counters an upstream keeps, to assert on connection reuse and delivery.
#[derive(Debug, Default)]
pub struct Counters {
    pub connections: AtomicU64,
    pub requests: AtomicU64,
    /// Path and query of every request the HTTP echo received, in order.
    pub paths: Mutex<Vec<String>>,
    /// When not 0, the HTTP echo answers every request with this status
    /// (see [`Upstream::fail_with`]).
    pub fail_with: AtomicU16,
}

/// A running upstream; stops when dropped.
#[derive(Debug)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Upstream {
    /// Makes the HTTP echo answer every request with `status` (0: echo
    /// normally again), to provoke outlier detection and health checks.
    pub fn fail_with(&self, status: u16) {
        self.counters.fail_with.store(status, Ordering::SeqCst);
    }

    pub fn connections(&self) -> u64 {
        self.counters.connections.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> u64 {
        self.counters.requests.load(Ordering::SeqCst)
    }

    /// Path and query of every request that reached this (HTTP echo)
    /// upstream so far, in arrival order.
    pub fn paths(&self) -> Vec<String> {
        self.counters
            .paths
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An HTTP echo upstream speaking HTTP/1.1 and HTTP/2 (prior knowledge),
/// named `name` in its `x-upstream` header.
pub fn http_echo(name: &str) -> Upstream {
    http_echo_at(
        name,
        "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")),
    )
}

/// [`http_echo`] bound to `addr`: restarts a stopped upstream on its old
/// port (panics if the port cannot be bound).
pub fn http_echo_at(name: &str, addr: SocketAddr) -> Upstream {
    let name: Arc<str> = Arc::from(name);
    spawn_server_at(addr, move |listener, counters| async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            counters.connections.fetch_add(1, Ordering::SeqCst);
            // As production servers do: HTTP/2 WINDOW_UPDATEs and other small
            // frames must not wait for Nagle (it stalls uploads for ~40 ms
            // per window against a delayed ACK).
            let _ = stream.set_nodelay(true);
            let name = Arc::clone(&name);
            let counters = Arc::clone(&counters);
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    counters.requests.fetch_add(1, Ordering::SeqCst);
                    let fail = counters.fail_with.load(Ordering::SeqCst);
                    let path = req.uri().path_and_query().map_or("", |p| p.as_str());
                    counters
                        .paths
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(path.to_owned());
                    let name = Arc::clone(&name);
                    async move {
                        if let Ok(status) = StatusCode::from_u16(fail)
                            && fail != 0
                        {
                            let mut resp =
                                Response::new(Full::new(Bytes::from_static(b"failing")).boxed());
                            *resp.status_mut() = status;
                            resp.headers_mut().insert(
                                "x-upstream",
                                HeaderValue::from_str(&name)
                                    .unwrap_or(HeaderValue::from_static("?")),
                            );
                            return Ok::<_, std::io::Error>(resp);
                        }
                        respond(req, name).await
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}

/// A TCP upstream that echoes every byte back, and on EOF writes
/// `\n<total bytes>` and closes its write half.
pub fn tcp_echo() -> Upstream {
    spawn_server(|listener, counters| async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            counters.connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut total = 0u64;
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            total += n as u64;
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = s.write_all(format!("\n{total}").as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    })
}

fn spawn_server<F, Fut>(serve: F) -> Upstream
where
    F: FnOnce(TcpListener, Arc<Counters>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    spawn_server_at(
        "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")),
        serve,
    )
}

pub(crate) fn spawn_server_at<F, Fut>(bind: SocketAddr, serve: F) -> Upstream
where
    F: FnOnce(TcpListener, Arc<Counters>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let counters = Arc::new(Counters::default());
    let (stop_tx, stop_rx) = oneshot::channel();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let c = Arc::clone(&counters);
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("upstream runtime: {e}"));
        rt.block_on(async move {
            let listener = TcpListener::bind(bind)
                .await
                .unwrap_or_else(|e| panic!("bind: {e}"));
            let _ = addr_tx.send(
                listener
                    .local_addr()
                    .unwrap_or_else(|e| panic!("addr: {e}")),
            );
            tokio::select! {
                () = serve(listener, c) => {}
                _ = stop_rx => {}
            }
        });
    });
    let addr = addr_rx
        .recv()
        .unwrap_or_else(|e| panic!("upstream did not start: {e}"));
    Upstream {
        addr,
        counters,
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

async fn respond(
    mut req: Request<Incoming>,
    name: Arc<str>,
) -> Result<Response<Out>, std::io::Error> {
    let path = req.uri().path().to_owned();
    let extra: Vec<(http::HeaderName, HeaderValue)> = req
        .headers()
        .get_all("x-respond-header")
        .iter()
        .filter_map(|v| {
            let (k, v) = v.to_str().ok()?.split_once('=')?;
            Some((k.parse().ok()?, v.parse().ok()?))
        })
        .collect();
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (head, arg) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let mut resp = match head {
        "reset" => return Err(std::io::Error::other("reset requested")),
        "bytes" => {
            let n: usize = arg.parse().unwrap_or(0);
            let chunks = (0..n.div_ceil(65536)).map(move |i| {
                let len = (n - i * 65536).min(65536);
                Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'x'; len])))
            });
            Response::new(BoxBody::new(futures_iter(chunks)))
        }
        "grpc.health.v1.Health" => {
            let trailers: http::HeaderMap = std::iter::once((
                http::HeaderName::from_static("grpc-status"),
                HeaderValue::from_static("0"),
            ))
            .collect();
            // `HealthCheckResponse { status: SERVING }`, length-prefixed.
            let frames = vec![
                Ok(Frame::data(Bytes::from_static(&[
                    0, 0, 0, 0, 2, 0x08, 0x01,
                ]))),
                Ok(Frame::trailers(trailers)),
            ];
            let mut r = Response::new(BoxBody::new(futures_iter(frames.into_iter())));
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/grpc"));
            r
        }
        "drip" => {
            let wait = Duration::from_millis(arg.parse().unwrap_or(0));
            Response::new(BoxBody::new(Drip {
                sent: 0,
                wait: Box::pin(tokio::time::sleep(wait)),
            }))
        }
        "count" => {
            let mut total = 0usize;
            let mut body = req.into_body();
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => total += f.data_ref().map_or(0, |d| d.len()),
                    Err(e) => return Err(std::io::Error::other(e)),
                }
            }
            full(format!("{{\"received\":{total}}}"))
        }
        "trailers" => {
            // The request's own trailers come back too, so a test can see
            // that they crossed the proxy.
            let mut trailers = req
                .into_body()
                .collect()
                .await
                .map_err(std::io::Error::other)?
                .trailers()
                .cloned()
                .unwrap_or_default();
            trailers.insert("x-trailer", HeaderValue::from_static("yes"));
            let frames = vec![
                Ok(Frame::data(Bytes::from_static(b"ok"))),
                Ok(Frame::trailers(trailers)),
            ];
            Response::new(BoxBody::new(futures_iter(frames.into_iter())))
        }
        "ws" => {
            let upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = upgrade.await {
                    let mut io = TokioIo::new(up);
                    let mut buf = vec![0u8; 4096];
                    while let Ok(n) = io.read(&mut buf).await {
                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            });
            let mut r = Response::new(full(String::new()).into_body());
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            r.headers_mut()
                .insert("upgrade", HeaderValue::from_static("websocket"));
            r.headers_mut()
                .insert("connection", HeaderValue::from_static("upgrade"));
            r
        }
        _ => {
            if head == "delay" {
                tokio::time::sleep(Duration::from_millis(arg.parse().unwrap_or(0))).await;
            }
            let method = req.method().to_string();
            let version = format!("{:?}", req.version());
            let uri = req.uri().to_string();
            let headers: Vec<(String, String)> = req
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let body = req
                .into_body()
                .collect()
                .await
                .map_err(std::io::Error::other)?
                .to_bytes();
            let echo = serde_json::json!({
                "upstream": &*name, "method": method, "path": uri, "version": version,
                "headers": headers, "body_len": body.len(),
            });
            let mut r = full(echo.to_string());
            if head == "status" {
                *r.status_mut() = arg
                    .parse::<u16>()
                    .ok()
                    .and_then(|s| StatusCode::from_u16(s).ok())
                    .unwrap_or(StatusCode::OK);
            }
            r
        }
    };
    if let Ok(v) = HeaderValue::from_str(&name) {
        resp.headers_mut().insert("x-upstream", v);
    }
    for (k, v) in extra {
        resp.headers_mut().append(k, v);
    }
    Ok(resp)
}

fn full(s: String) -> Response<Out> {
    Response::new(BoxBody::new(Full::new(Bytes::from(s))))
}

/// A body produced frame by frame from an iterator (lazily, so `/bytes/N`
/// streams without holding N bytes).
fn futures_iter<I: Iterator<Item = Result<Frame<Bytes>, Infallible>> + Unpin>(
    iter: I,
) -> IterBody<I> {
    IterBody(iter)
}

struct IterBody<I>(I);

impl<I: Iterator<Item = Result<Frame<Bytes>, Infallible>> + Unpin> http_body::Body for IterBody<I> {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        std::task::Poll::Ready(self.0.next())
    }
}

/// See `/drip/MS`: one byte, a pause, one byte.
struct Drip {
    sent: u8,
    wait: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for Drip {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        use std::task::Poll;
        match self.sent {
            0 => {
                self.sent = 1;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"a")))))
            }
            1 => match self.wait.as_mut().poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(()) => {
                    self.sent = 2;
                    Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"b")))))
                }
            },
            _ => Poll::Ready(None),
        }
    }
}

/// A gRPC server for a tonic-generated `service` (HTTP/2 cleartext) on a
/// loopback port: the test servers of the services Strait calls
/// (authorization, rate limits).
pub(crate) fn grpc_server<S, B, E>(service: S) -> Upstream
where
    S: tonic::codegen::Service<Request<Incoming>, Response = Response<B>, Error = E>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    spawn_server_at(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        |listener, _| async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let service = service.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let mut service = service.clone();
                        async move { service.call(req).await }
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        },
    )
}
