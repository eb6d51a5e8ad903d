//! The connection manager's `local_reply_config` applied to a local reply:
//! the first mapper whose filter matches rewrites the status, body and
//! headers; then the mapper's body format (or the config's) renders the
//! body. Only responses the proxy made itself (those carrying
//! [`ReplyInfo`]) are touched; upstream responses pass as they are.
//!
//! Runs once per local reply, and only for managers that configure it;
//! the request's headers are copied for it only when a mapper or format
//! reads them.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Uri, Version, header};
use serde_json::Value;
use strait_codec::Body;
use strait_model::local_reply::{
    BodyFormat, FormatCommand, FormatKind, FormatPart, JsonFormatValue, LocalReplyConfig,
    ReplyFilter,
};

use crate::{body::ProxyBody, local_reply::ReplyInfo};

/// What a local reply's mappers and formats read of its request.
#[derive(Debug)]
pub(crate) struct RequestFacts {
    pub(crate) version: Version,
    /// Method, target and headers, copied only when the config reads them.
    pub(crate) head: Option<(Method, Uri, HeaderMap)>,
}

impl RequestFacts {
    pub(crate) fn of(req: &http::Request<impl Sized>, config: &LocalReplyConfig) -> Self {
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
            head: reads.then(|| {
                (
                    req.method().clone(),
                    req.uri().clone(),
                    req.headers().clone(),
                )
            }),
        }
    }

    fn header(&self, name: &str) -> Option<String> {
        let (method, uri, headers) = self.head.as_ref()?;
        match name {
            ":path" => uri.path_and_query().map(|p| p.as_str().to_owned()),
            ":method" => Some(method.as_str().to_owned()),
            ":authority" => uri
                .authority()
                .map(|a| a.as_str().to_owned())
                .or_else(|| value(headers, "host")),
            ":scheme" => uri.scheme_str().map(str::to_owned),
            _ => value(headers, name),
        }
    }
}

fn value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
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
    let headers = req.head.as_ref().map(|(_, _, h)| h);
    for m in &config.mappers {
        if !matches(&m.filter, status, &info, headers, elapsed) {
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
            let facts = Facts {
                body: &text,
                status: resp.status(),
                info: &info,
                req,
                resp: resp.headers(),
            };
            let (rendered, default_type) = render(f, &facts);
            text = rendered;
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

fn matches(
    f: &ReplyFilter,
    status: StatusCode,
    info: &ReplyInfo,
    headers: Option<&HeaderMap>,
    elapsed: Duration,
) -> bool {
    match f {
        ReplyFilter::Status(c) => c.holds(u64::from(status.as_u16())),
        ReplyFilter::Duration(c) => c.holds(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)),
        ReplyFilter::NotHealthCheck => true,
        ReplyFilter::Header(h) => headers.is_some_and(|hs| h.matches(hs)),
        ReplyFilter::ResponseFlags(flags) if flags.is_empty() => !info.flag.is_empty(),
        ReplyFilter::ResponseFlags(flags) => flags.iter().any(|f| f == info.flag),
        ReplyFilter::And(v) => v.iter().all(|f| matches(f, status, info, headers, elapsed)),
        ReplyFilter::Or(v) => v.iter().any(|f| matches(f, status, info, headers, elapsed)),
    }
}

/// What a format's commands read.
struct Facts<'a> {
    body: &'a Bytes,
    status: StatusCode,
    info: &'a ReplyInfo,
    req: &'a RequestFacts,
    resp: &'a HeaderMap,
}

/// The rendered body and the format's default content type.
fn render(f: &BodyFormat, facts: &Facts<'_>) -> (Bytes, &'static str) {
    match &f.kind {
        FormatKind::Text(parts) => {
            let mut out = String::new();
            for p in parts {
                match p {
                    FormatPart::Text(t) => out.push_str(t),
                    FormatPart::Command(c) => match command(c, facts) {
                        Some(v) => out.push_str(&text_of(&v)),
                        // Envoy prints a missing value as `-`.
                        None if !f.omit_empty_values => out.push('-'),
                        None => {}
                    },
                }
            }
            (Bytes::from(out), "text/plain")
        }
        FormatKind::Json(fields) => {
            let obj = json_object(fields, facts, f.omit_empty_values);
            let mut out = serde_json::to_vec(&obj).unwrap_or_default();
            // Envoy ends a JSON body with a newline.
            out.push(b'\n');
            (Bytes::from(out), "application/json")
        }
    }
}

fn json_object(fields: &[(String, JsonFormatValue)], facts: &Facts<'_>, omit_empty: bool) -> Value {
    let mut map = serde_json::Map::new();
    for (k, v) in fields {
        let value = json_value(v, facts, omit_empty);
        if omit_empty && (value.is_null() || value == Value::String(String::new())) {
            continue;
        }
        map.insert(k.clone(), value);
    }
    Value::Object(map)
}

fn json_value(v: &JsonFormatValue, facts: &Facts<'_>, omit_empty: bool) -> Value {
    match v {
        JsonFormatValue::Literal(l) => l.clone(),
        JsonFormatValue::Struct(fields) => json_object(fields, facts, omit_empty),
        JsonFormatValue::List(l) => {
            Value::Array(l.iter().map(|v| json_value(v, facts, omit_empty)).collect())
        }
        // One command alone keeps its type (a number for a status code).
        JsonFormatValue::Format(parts) => match parts.as_slice() {
            [FormatPart::Command(c)] => command(c, facts).unwrap_or(Value::Null),
            parts => {
                let mut out = String::new();
                for p in parts {
                    match p {
                        FormatPart::Text(t) => out.push_str(t),
                        FormatPart::Command(c) => match command(c, facts) {
                            Some(v) => out.push_str(&text_of(&v)),
                            None => out.push('-'),
                        },
                    }
                }
                Value::String(out)
            }
        },
    }
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One command's value; `None` when it has none (Envoy's `-`).
fn command(c: &FormatCommand, f: &Facts<'_>) -> Option<Value> {
    let s = |s: &str| Some(Value::String(s.to_owned()));
    match c {
        FormatCommand::LocalReplyBody => s(&String::from_utf8_lossy(f.body)),
        FormatCommand::ResponseCode => Some(Value::from(f.status.as_u16())),
        FormatCommand::ResponseCodeDetails if f.info.details.is_empty() => None,
        FormatCommand::ResponseCodeDetails => s(&f.info.details),
        FormatCommand::ResponseFlags if f.info.flag.is_empty() => None,
        FormatCommand::ResponseFlags => s(f.info.flag),
        FormatCommand::Protocol => s(match f.req.version {
            Version::HTTP_09 => "HTTP/0.9",
            Version::HTTP_10 => "HTTP/1.0",
            Version::HTTP_2 => "HTTP/2",
            Version::HTTP_3 => "HTTP/3",
            _ => "HTTP/1.1",
        }),
        FormatCommand::Request {
            name,
            alternative,
            max_len,
        } => truncated(
            f.req
                .header(name)
                .or_else(|| alternative.as_deref().and_then(|a| f.req.header(a))),
            *max_len,
        ),
        FormatCommand::Response {
            name,
            alternative,
            max_len,
        } => truncated(
            value(f.resp, name).or_else(|| alternative.as_deref().and_then(|a| value(f.resp, a))),
            *max_len,
        ),
    }
}

fn truncated(v: Option<String>, max: Option<usize>) -> Option<Value> {
    let mut v = v?;
    if let Some(m) = max
        && v.len() > m
    {
        let mut end = m;
        while !v.is_char_boundary(end) {
            end -= 1;
        }
        v.truncate(end);
    }
    Some(Value::String(v))
}
