//! A gRPC server that records every call it receives (its path and each
//! request message, unframed) and answers each with an empty message and
//! `grpc-status: 0`: the collector of the remote access-log tests (OTLP
//! `LogsService/Export`, the access log service's client stream
//! `StreamAccessLogs`), whose messages the test decodes itself.

use std::{
    convert::Infallible,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use bytes::{Buf, Bytes};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::BodyExt;
use hyper::{body::Frame, body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::upstream::{Upstream, spawn_server_at};

/// One call: its path, request headers and messages.
#[derive(Debug, Clone)]
pub struct Call {
    pub path: String,
    pub headers: HeaderMap,
    pub messages: Vec<Bytes>,
}

/// What a [`grpc_recorder`] received, in arrival order.
#[derive(Debug, Default)]
pub struct Recorded {
    calls: Mutex<Vec<Call>>,
}

impl Recorded {
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Every message of every call to `path`.
    pub fn messages(&self, path: &str) -> Vec<Bytes> {
        self.calls()
            .into_iter()
            .filter(|c| c.path == path)
            .flat_map(|c| c.messages)
            .collect()
    }
}

/// Splits a gRPC request body into its messages.
fn unframe(mut body: Bytes) -> Vec<Bytes> {
    let mut out = Vec::new();
    while body.len() >= 5 {
        body.advance(1);
        let len = body.get_u32() as usize;
        if body.len() < len {
            break;
        }
        out.push(body.split_to(len));
    }
    out
}

/// How many bytes at the start of `buf` are whole messages.
fn complete_prefix(buf: &[u8]) -> usize {
    let mut at = 0;
    while buf.len() >= at + 5 {
        let len = u32::from_be_bytes([buf[at + 1], buf[at + 2], buf[at + 3], buf[at + 4]]) as usize;
        if buf.len() < at + 5 + len {
            break;
        }
        at += 5 + len;
    }
    at
}

/// An answer of one empty message and `grpc-status: 0` trailers.
struct Ok2 {
    sent: u8,
}

impl http_body::Body for Ok2 {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.sent += 1;
        Poll::Ready(match self.sent {
            1 => Some(Ok(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0])))),
            2 => {
                let mut t = HeaderMap::new();
                t.insert("grpc-status", HeaderValue::from_static("0"));
                Some(Ok(Frame::trailers(t)))
            }
            _ => None,
        })
    }
}

/// Starts the recorder on a loopback port (HTTP/2 cleartext).
pub fn grpc_recorder() -> (Upstream, Arc<Recorded>) {
    let recorded = Arc::new(Recorded::default());
    let rec = Arc::clone(&recorded);
    let upstream = spawn_server_at(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        |listener, _| async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let rec = Arc::clone(&rec);
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let rec = Arc::clone(&rec);
                        async move {
                            let (head, mut body) = req.into_parts();
                            // Recorded as the messages arrive, so a client
                            // stream that stays open (the gRPC access log
                            // service's) is seen while it lasts.
                            let index = rec.calls.lock().map_or(0, |mut calls| {
                                calls.push(Call {
                                    path: head.uri.path().to_owned(),
                                    headers: head.headers,
                                    messages: Vec::new(),
                                });
                                calls.len() - 1
                            });
                            let mut pending = bytes::BytesMut::new();
                            while let Some(Ok(frame)) = body.frame().await {
                                let Ok(data) = frame.into_data() else {
                                    continue;
                                };
                                pending.extend_from_slice(&data);
                                let whole = complete_prefix(&pending);
                                let done = unframe(pending.split_to(whole).freeze());
                                if let Ok(mut calls) = rec.calls.lock() {
                                    calls[index].messages.extend(done);
                                }
                            }
                            let mut resp = Response::new(Ok2 { sent: 0 });
                            resp.headers_mut().insert(
                                "content-type",
                                HeaderValue::from_static("application/grpc"),
                            );
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        },
    );
    (upstream, recorded)
}
