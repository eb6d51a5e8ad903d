//! The rate-limit service's call, `envoy.service.ratelimit.v3.
//! RateLimitService/ShouldRateLimit`, through one of the proxy's clusters:
//! the two messages encoded by hand (a few fields each, so the data tier
//! needs no protobuf library), framed as gRPC, sent over HTTP/2 through the
//! cluster's balancer, pool and circuit breakers, within the filter's
//! timeout.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderName, HeaderValue, Request, Uri, Version, header};
use http_body_util::BodyExt;
use strait_codec::Body;
use strait_upstream::{ClusterRegistry, RoutingPriority};

use crate::{RateLimitError, descriptor::Descriptor};

/// The method's path.
pub const PATH: &str = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";

/// `RateLimitResponse.Code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// `UNKNOWN` and `OK`: Envoy lets both through.
    Ok,
    OverLimit,
}

/// One `DescriptorStatus` that has a `current_limit`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    pub requests_per_unit: u32,
    /// The unit in seconds (0 for UNKNOWN and units Envoy does not name).
    pub window: u32,
    pub name: String,
    pub limit_remaining: u32,
    pub reset_seconds: i64,
}

/// The parts of a `RateLimitResponse` the filter acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub code: Code,
    pub statuses: Vec<Status>,
    pub response_headers: Vec<(HeaderName, HeaderValue)>,
    pub request_headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

/// A `RateLimitRequest` for `domain` and `descriptors`, framed for gRPC
/// (flag byte, big-endian length, message).
pub fn request(domain: &str, descriptors: &[Descriptor<'_>]) -> Bytes {
    let mut msg = BytesMut::new();
    string(&mut msg, 1, domain);
    let mut entry = BytesMut::new();
    let mut desc = BytesMut::new();
    for d in descriptors {
        desc.clear();
        for (k, v) in &d.entries {
            entry.clear();
            string(&mut entry, 1, k);
            string(&mut entry, 2, v);
            bytes_field(&mut desc, 1, &entry);
        }
        bytes_field(&mut msg, 2, &desc);
    }
    let mut framed = BytesMut::with_capacity(5 + msg.len());
    framed.put_u8(0);
    framed.put_u32(u32::try_from(msg.len()).unwrap_or(u32::MAX));
    framed.extend_from_slice(&msg);
    framed.freeze()
}

fn varint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

fn bytes_field(out: &mut BytesMut, tag: u64, value: &[u8]) {
    varint(out, (tag << 3) | 2);
    varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

fn string(out: &mut BytesMut, tag: u64, value: &str) {
    if !value.is_empty() {
        bytes_field(out, tag, value.as_bytes());
    }
}

/// A protobuf reader over one message: (field number, value) pairs.
struct Fields<'a> {
    buf: &'a [u8],
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// Fixed-width values, which no field read here uses.
    Other,
}

impl<'a> Fields<'a> {
    fn varint(&mut self) -> Result<u64, RateLimitError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.buf.split_first().ok_or(RateLimitError::Malformed)?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(RateLimitError::Malformed)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], RateLimitError> {
        if self.buf.len() < n {
            return Err(RateLimitError::Malformed);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn next_field(&mut self) -> Option<Result<(u64, Value<'a>), RateLimitError>> {
        if self.buf.is_empty() {
            return None;
        }
        Some((|| {
            let key = self.varint()?;
            let value = match key & 7 {
                0 => Value::Varint(self.varint()?),
                1 => {
                    self.take(8)?;
                    Value::Other
                }
                2 => {
                    let n =
                        usize::try_from(self.varint()?).map_err(|_| RateLimitError::Malformed)?;
                    Value::Bytes(self.take(n)?)
                }
                5 => {
                    self.take(4)?;
                    Value::Other
                }
                _ => return Err(RateLimitError::Malformed),
            };
            Ok((key >> 3, value))
        })())
    }
}

fn fields(buf: &[u8]) -> Fields<'_> {
    Fields { buf }
}

/// Decodes a `RateLimitResponse` (the gRPC message, unframed).
pub fn decode(msg: &[u8]) -> Result<Answer, RateLimitError> {
    let mut answer = Answer {
        code: Code::Ok,
        statuses: Vec::new(),
        response_headers: Vec::new(),
        request_headers: Vec::new(),
        body: Bytes::new(),
    };
    let mut f = fields(msg);
    while let Some(field) = f.next_field() {
        match field? {
            (1, Value::Varint(2)) => answer.code = Code::OverLimit,
            (2, Value::Bytes(b)) => {
                if let Some(s) = status(b)? {
                    answer.statuses.push(s);
                }
            }
            (3, Value::Bytes(b)) => answer.response_headers.extend(header_value(b)?),
            (4, Value::Bytes(b)) => answer.request_headers.extend(header_value(b)?),
            (5, Value::Bytes(b)) => answer.body = Bytes::copy_from_slice(b),
            _ => {}
        }
    }
    Ok(answer)
}

/// A `DescriptorStatus`; `None` without `current_limit` (Envoy's headers
/// skip those).
fn status(buf: &[u8]) -> Result<Option<Status>, RateLimitError> {
    let mut s = Status::default();
    let mut has_limit = false;
    let mut f = fields(buf);
    while let Some(field) = f.next_field() {
        match field? {
            (2, Value::Bytes(b)) => {
                has_limit = true;
                let mut l = fields(b);
                while let Some(field) = l.next_field() {
                    match field? {
                        (1, Value::Varint(v)) => s.requests_per_unit = v as u32,
                        (2, Value::Varint(v)) => s.window = window(v),
                        (3, Value::Bytes(b)) => s.name = String::from_utf8_lossy(b).into_owned(),
                        _ => {}
                    }
                }
            }
            (3, Value::Varint(v)) => s.limit_remaining = v as u32,
            (4, Value::Bytes(b)) => {
                let mut d = fields(b);
                while let Some(field) = d.next_field() {
                    if let (1, Value::Varint(v)) = field? {
                        s.reset_seconds = v as i64;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(has_limit.then_some(s))
}

/// A `RateLimit.Unit` in seconds, as Envoy's headers count it (week,
/// month and year are 0 to Envoy too).
fn window(unit: u64) -> u32 {
    match unit {
        1 => 1,
        2 => 60,
        3 => 60 * 60,
        4 => 24 * 60 * 60,
        _ => 0,
    }
}

/// A `config.core.v3.HeaderValue` (`value`, else `raw_value`); `None` for
/// a name or value HTTP cannot carry.
fn header_value(buf: &[u8]) -> Result<Option<(HeaderName, HeaderValue)>, RateLimitError> {
    let (mut key, mut value, mut raw): (&[u8], &[u8], &[u8]) = (&[], &[], &[]);
    let mut f = fields(buf);
    while let Some(field) = f.next_field() {
        match field? {
            (1, Value::Bytes(b)) => key = b,
            (2, Value::Bytes(b)) => value = b,
            (3, Value::Bytes(b)) => raw = b,
            _ => {}
        }
    }
    let value = if value.is_empty() { raw } else { value };
    Ok(HeaderName::from_bytes(key)
        .ok()
        .zip(HeaderValue::from_bytes(value).ok()))
}

/// Sends the framed `request` to the service behind `cluster` and reads
/// its answer, within `timeout` (`None`: no limit).
pub async fn call(
    upstreams: &ClusterRegistry,
    cluster: &str,
    authority: &str,
    request: Bytes,
    timeout: Option<Duration>,
) -> Result<Answer, RateLimitError> {
    let live = upstreams.get(cluster).ok_or(RateLimitError::NoCluster)?;
    let authority = if authority.is_empty() {
        cluster
    } else {
        authority
    };
    let uri = Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(PATH)
        .build()
        .map_err(|_| RateLimitError::Malformed)?;
    let mut req = Request::post(uri)
        .version(Version::HTTP_2)
        .body(Body::full(request))
        .map_err(|_| RateLimitError::Malformed)?;
    let h = req.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert(header::TE, HeaderValue::from_static("trailers"));
    if let Some(t) = timeout
        && let Ok(v) = HeaderValue::from_str(&format!("{}m", t.as_millis()))
    {
        h.insert("grpc-timeout", v);
    }
    let attempt = async {
        let host = live.pick().ok_or(RateLimitError::NoHealthyHost)?;
        let lease = live
            .lease_for(host, RoutingPriority::Default, true)
            .await
            .map_err(|e| RateLimitError::Upstream(e.to_string()))?;
        let resp = lease
            .send(req)
            .await
            .map_err(|e| RateLimitError::Upstream(e.to_string()))?;
        let (head, body) = resp.into_parts();
        let collected = body
            .collect()
            .await
            .map_err(|_| RateLimitError::Malformed)?;
        let trailers = collected.trailers().cloned();
        let body = collected.to_bytes();
        // grpc-status in the trailers, or in the head of a trailers-only
        // answer; absent or non-zero is a failed call.
        let grpc_status = trailers
            .as_ref()
            .and_then(|t| t.get("grpc-status"))
            .or_else(|| head.headers.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok());
        if !head.status.is_success() || grpc_status != Some(0) {
            return Err(RateLimitError::Status(grpc_status.unwrap_or(2)));
        }
        let msg = body.get(5..).ok_or(RateLimitError::Malformed)?;
        decode(msg)
    };
    match timeout {
        Some(t) => tokio::time::timeout(t, attempt)
            .await
            .map_err(|_| RateLimitError::Timeout)?,
        None => attempt.await,
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    #[test]
    fn request_is_framed_protobuf() {
        let d = [Descriptor {
            entries: vec![("k", Cow::Borrowed("v"))],
        }];
        let framed = request("dom", &d);
        // flag, length, then: domain (tag 1), descriptor (tag 2) holding an
        // entry (tag 1) holding key (1) and value (2).
        let msg: &[u8] = &[
            0x0a, 3, b'd', b'o', b'm', 0x12, 8, 0x0a, 6, 0x0a, 1, b'k', 0x12, 1, b'v',
        ];
        assert_eq!(&framed[..5], &[0, 0, 0, 0, msg.len() as u8]);
        assert_eq!(&framed[5..], msg);
    }

    #[test]
    fn response_fields_are_read() {
        let mut m = BytesMut::new();
        varint(&mut m, 1 << 3);
        varint(&mut m, 2);
        // status: current_limit {requests_per_unit 10, unit MINUTE, name
        // "n"}, limit_remaining 7, duration_until_reset {seconds 30}.
        let mut limit = BytesMut::new();
        varint(&mut limit, 1 << 3);
        varint(&mut limit, 10);
        varint(&mut limit, 2 << 3);
        varint(&mut limit, 2);
        string(&mut limit, 3, "n");
        let mut dur = BytesMut::new();
        varint(&mut dur, 1 << 3);
        varint(&mut dur, 30);
        let mut status = BytesMut::new();
        bytes_field(&mut status, 2, &limit);
        varint(&mut status, 3 << 3);
        varint(&mut status, 7);
        bytes_field(&mut status, 4, &dur);
        bytes_field(&mut m, 2, &status);
        let mut hv = BytesMut::new();
        string(&mut hv, 1, "x-a");
        string(&mut hv, 2, "b");
        bytes_field(&mut m, 3, &hv);
        bytes_field(&mut m, 4, &hv);
        bytes_field(&mut m, 5, b"body");
        // An unknown fixed64 field is skipped.
        varint(&mut m, (9 << 3) | 1);
        m.extend_from_slice(&[0; 8]);
        let a = decode(&m).expect("decodes");
        assert_eq!(a.code, Code::OverLimit);
        assert_eq!(
            a.statuses,
            [Status {
                requests_per_unit: 10,
                window: 60,
                name: "n".to_owned(),
                limit_remaining: 7,
                reset_seconds: 30,
            }]
        );
        assert_eq!(a.response_headers.len(), 1);
        assert_eq!(a.request_headers[0].0, "x-a");
        assert_eq!(&a.body[..], b"body");
        assert!(decode(&[0x0a, 5, 1]).is_err());
    }
}
