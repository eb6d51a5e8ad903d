//! The connection manager's `local_reply_config` applied to a local reply:
//! the first mapper whose filter matches rewrites the status, body and
//! headers; then the mapper's body format (or the config's) renders the
//! body. Only responses the proxy made itself (those carrying
//! [`ReplyInfo`]) are touched; upstream responses pass as they are.
//!
//! Runs once per local reply, and only for managers that configure it;
//! the request's headers are copied for it only when a mapper or format
//! reads them.

use std::{
    net::SocketAddr,
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, Version, header};
use strait_access_log::{Record, RequestHead};
use strait_codec::Body;
use strait_model::local_reply::{BodyFormat, LocalReplyConfig};

use crate::{body::ProxyBody, local_reply::ReplyInfo};

/// What a local reply's mappers and formats read of its request and
/// connection.
#[derive(Debug)]
pub(crate) struct RequestFacts {
    pub(crate) version: Version,
    /// Method, target and headers, copied only when the config reads them.
    pub(crate) head: Option<RequestHead>,
    local: SocketAddr,
    peer: SocketAddr,
}

impl RequestFacts {
    pub(crate) fn of(
        req: &http::Request<impl Sized>,
        config: &LocalReplyConfig,
        local: SocketAddr,
        peer: SocketAddr,
    ) -> Self {
        let reads = config
            .body_format
            .as_ref()
            .is_some_and(BodyFormat::reads_request_headers)
            || config.mappers.iter().any(|m| {
                m.filter.reads_request_headers()
                    || m.body_format
                        .as_ref()
                        .is_some_and(BodyFormat::reads_request_headers)
            });
        RequestFacts {
            version: req.version(),
            head: reads.then(|| RequestHead {
                method: req.method().clone(),
                uri: req.uri().clone(),
                headers: req.headers().clone(),
            }),
            local,
            peer,
        }
    }

    /// The record mappers and formats read, for a reply with `info`.
    fn record<'a>(&'a self, info: &'a ReplyInfo, status: u16, elapsed: Duration) -> Record<'a> {
        let mut r = Record::new(SystemTime::now() - elapsed, self.local, self.peer);
        r.protocol = Some(self.version);
        r.request = self.head.as_ref();
        r.status = status;
        r.flags = info.flag;
        r.details = (!info.details.is_empty()).then_some(&*info.details);
        r.duration = Some(elapsed);
        r
    }
}

/// Rewrites `resp` if it is a local reply.
pub(crate) fn apply(
    config: &LocalReplyConfig,
    resp: &mut Response<ProxyBody>,
    req: &RequestFacts,
    elapsed: Duration,
) {
    let Some(info) = resp.extensions().get::<ReplyInfo>().cloned() else {
        return;
    };
    let Some(body) = local_body(resp.body_mut()) else {
        return;
    };
    let mut text = match body {
        Body::Full(Some(b)) => b.clone(),
        _ => Bytes::new(),
    };
    let status = resp.status();
    let mut format = config.body_format.as_ref();
    let record = req.record(&info, status.as_u16(), elapsed);
    for m in &config.mappers {
        if !strait_access_log::matches(&m.filter, &record) {
            continue;
        }
        if let Some(s) = m.status.and_then(|s| StatusCode::from_u16(s).ok()) {
            *resp.status_mut() = s;
        }
        if let Some(b) = &m.body {
            text = Bytes::copy_from_slice(b.as_bytes());
        }
        // Compiled here, not per config: only a matched local reply pays.
        if let Ok(add) = strait_route::HeaderMutation::compile(&m.headers, &String::new) {
            add.apply_response(resp.headers_mut());
        }
        if m.body_format.is_some() {
            format = m.body_format.as_ref();
        }
        break;
    }
    let content_type = match format {
        None => None,
        Some(f) => {
            let mut r = req.record(&info, resp.status().as_u16(), elapsed);
            r.local_reply_body = Some(&text);
            r.response_headers = Some(resp.headers());
            let (rendered, default_type) = strait_access_log::render(f, &r);
            text = Bytes::from(rendered);
            Some(if f.content_type.is_empty() {
                default_type.to_owned()
            } else {
                f.content_type.clone()
            })
        }
    };
    if let Some(ct) = content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    } else if text.is_empty() {
        resp.headers_mut().remove(header::CONTENT_TYPE);
    } else if !resp.headers().contains_key(header::CONTENT_TYPE) {
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    resp.headers_mut().remove(header::CONTENT_LENGTH);
    if let Some(body) = local_body(resp.body_mut()) {
        *body = Body::full(text);
    }
}

/// The body of a local reply, under any body filters wrapping it.
fn local_body(body: &mut ProxyBody) -> Option<&mut Body> {
    match body {
        ProxyBody::Local(b) => Some(b),
        ProxyBody::Filtered(inner, _) | ProxyBody::Observed(inner, _) => local_body(inner),
        ProxyBody::Upstream(..) => None,
    }
}
