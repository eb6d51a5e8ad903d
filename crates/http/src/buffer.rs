//! The downstream request body on its way through the filters: streamed
//! untouched, unless a filter asks to see its start first (ext_authz's
//! `with_request_body`). Then up to the filter's limit is read into memory
//! before that filter decides, and sent upstream ahead of the rest.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use strait_codec::{Body, ReplayFrame};

use crate::local_reply::{LocalReply, Reply};

/// How much of the request body a filter wants before its decode step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyBuffering {
    /// Read at most this many bytes.
    pub max_bytes: usize,
    /// A longer body is passed on with its first `max_bytes` seen (else the
    /// request is answered 413, as Envoy's buffer limit does).
    pub allow_partial: bool,
}

/// A downstream request body and what has been read of it.
#[derive(Debug)]
pub(crate) struct DownstreamBody {
    kept: Vec<ReplayFrame>,
    bytes: usize,
    /// The unread rest; `None` once the body ended.
    rest: Option<Incoming>,
    /// The kept data in one piece, made when a filter first asks.
    joined: Option<Bytes>,
}

impl DownstreamBody {
    pub(crate) fn new(body: Incoming) -> Self {
        let ended = http_body::Body::is_end_stream(&body);
        DownstreamBody {
            kept: Vec::new(),
            bytes: 0,
            rest: (!ended).then_some(body),
            joined: None,
        }
    }

    /// Reads until `want.max_bytes` are kept or the body ends; a stall
    /// longer than `idle` ends the request as Envoy's stream idle timeout.
    pub(crate) async fn buffer(
        &mut self,
        want: BodyBuffering,
        idle: Option<Duration>,
    ) -> Result<(), Reply> {
        while self.bytes < want.max_bytes || !want.allow_partial {
            let Some(rest) = self.rest.as_mut() else {
                return Ok(());
            };
            let frame = match idle {
                Some(t) => match tokio::time::timeout(t, rest.frame()).await {
                    Ok(f) => f,
                    Err(_) => return Err(LocalReply::StreamIdleTimeout.into()),
                },
                None => rest.frame().await,
            };
            let frame = match frame {
                None => {
                    self.rest = None;
                    return Ok(());
                }
                Some(Err(_)) => return Err(LocalReply::BadRequestBody.into()),
                Some(Ok(f)) => f,
            };
            self.joined = None;
            match frame.into_data() {
                Ok(d) => {
                    self.bytes += d.len();
                    self.kept.push(ReplayFrame::Data(d));
                    if self.bytes > want.max_bytes && !want.allow_partial {
                        return Err(Reply::new(StatusCode::PAYLOAD_TOO_LARGE)
                            .body("Payload Too Large")
                            .details("request_payload_too_large")
                            .close());
                    }
                }
                Err(f) => {
                    if let Ok(t) = f.into_trailers() {
                        self.kept.push(ReplayFrame::Trailers(t));
                    }
                    self.rest = None;
                    return Ok(());
                }
            }
            if self
                .rest
                .as_ref()
                .is_some_and(http_body::Body::is_end_stream)
            {
                self.rest = None;
            }
        }
        Ok(())
    }

    /// The data read so far, in one piece (`None` when nothing was read).
    pub(crate) fn buffered(&mut self) -> Option<&Bytes> {
        if self.kept.is_empty() {
            return None;
        }
        if self.joined.is_none() {
            let mut all = BytesMut::with_capacity(self.bytes);
            for f in &self.kept {
                if let ReplayFrame::Data(d) = f {
                    all.extend_from_slice(d);
                }
            }
            self.joined = Some(all.freeze());
        }
        self.joined.as_ref()
    }

    /// The body for the upstream: what was read, then the rest streamed
    /// through `stream` (which reports progress), and whether any of it
    /// still streams from downstream; `None` for no body.
    pub(crate) fn into_upstream(
        self,
        stream: impl FnOnce(Incoming) -> Body,
    ) -> Option<(Body, bool)> {
        match (self.kept.is_empty(), self.rest) {
            (true, None) => None,
            (true, Some(rest)) => Some((stream(rest), true)),
            (false, None) => Some((Body::replay(self.kept.into()), false)),
            (false, Some(rest)) => Some((Body::prefixed(self.kept.into(), stream(rest)), true)),
        }
    }
}
