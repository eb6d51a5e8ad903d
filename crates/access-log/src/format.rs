//! Renders a `SubstitutionFormatString` over a [`Record`]: the one
//! evaluator of Envoy's command operators, for access-log lines and local
//! reply bodies alike.
//!
//! Envoy's rules, checked against Envoy 1.40: a command without a value
//! prints `-` in text (nothing with `omit_empty_values`); in JSON a value
//! that is exactly one command keeps its type (numbers for codes, byte
//! counts, durations and attempt counts; `null` when there is no value;
//! the key left out with `omit_empty_values`), and a JSON line ends with a
//! newline. `%RESPONSE_FLAGS%` is `-` (a string) when no flag is set.

use std::borrow::Cow;

use serde_json::Value;
use strait_model::access_log::{
    AddressOf, BodyFormat, FormatCommand, FormatKind, FormatPart, HeaderRef, JsonFormatValue,
};

use crate::{
    record::{Record, hostname, long_flag, value_ref},
    time,
};

/// One command's value.
#[derive(Debug, Clone, PartialEq)]
enum Val<'a> {
    Str(Cow<'a, str>),
    Num(u64),
    Json(Value),
    /// An address, printed only when the line is written: formatting it
    /// through `Display` into a `String` cost more than the rest of a log
    /// line (callgrind, `cargo xtask bench --telemetry`).
    Addr(std::net::SocketAddr, bool),
    /// `%START_TIME%` in Envoy's default format, likewise.
    Start(std::time::SystemTime),
}

impl Val<'_> {
    fn push_to(&self, out: &mut Vec<u8>) {
        match self {
            Val::Str(s) => out.extend_from_slice(s.as_bytes()),
            Val::Num(n) => push_u64(out, *n),
            Val::Json(Value::String(s)) => out.extend_from_slice(s.as_bytes()),
            Val::Json(v) => out.extend_from_slice(v.to_string().as_bytes()),
            Val::Addr(a, without_port) => push_addr(out, *a, *without_port),
            Val::Start(t) => time::push_default_start_time(out, *t),
        }
    }

    fn into_json(self) -> Value {
        match self {
            Val::Str(s) => Value::String(s.into_owned()),
            Val::Num(n) => Value::from(n),
            Val::Json(v) => v,
            other => {
                let mut s = Vec::new();
                other.push_to(&mut s);
                Value::String(text_of(s))
            }
        }
    }
}

/// `n` in decimal, without `fmt`'s machinery: digits filled from the end
/// of a stack buffer and appended once (a `push` per digit cost more than
/// the rest of a status code's or port's rendering; callgrind, `cargo
/// xtask bench --telemetry`).
fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[at..]);
}

/// A line rendered from `&str` pieces as text: valid UTF-8 by construction
/// (the lossy path is never taken).
fn text_of(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// `a` as Envoy prints it (`[v6]:port` for IPv6; an IPv4-mapped address
/// without its port as plain IPv4).
fn push_addr(out: &mut Vec<u8>, a: std::net::SocketAddr, without_port: bool) {
    use std::io::Write as _;
    match (a.ip().to_canonical(), without_port) {
        (std::net::IpAddr::V4(ip), true) => push_ipv4(out, ip),
        (std::net::IpAddr::V4(ip), false) if a.is_ipv4() => {
            push_ipv4(out, ip);
            out.push(b':');
            push_u64(out, u64::from(a.port()));
        }
        (ip, true) => {
            let _ = write!(out, "{ip}");
        }
        _ => {
            let _ = write!(out, "{a}");
        }
    }
}

fn push_ipv4(out: &mut Vec<u8>, ip: std::net::Ipv4Addr) {
    // Into a stack buffer, appended once.
    let mut buf = [0u8; 15];
    let mut len = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            buf[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            buf[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            buf[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        buf[len] = b'0' + octet % 10;
        len += 1;
    }
    out.extend_from_slice(&buf[..len]);
}

/// `f` rendered over `r`, and the format's default content type. Text is
/// printed as it is (a log line's newline is the format's); JSON gets a
/// newline.
pub fn render(f: &BodyFormat, r: &Record<'_>) -> (Vec<u8>, &'static str) {
    match &f.kind {
        FormatKind::Text(parts) => {
            let mut out = Vec::with_capacity(256);
            text(parts, r, f.omit_empty_values, &mut out);
            (out, "text/plain")
        }
        FormatKind::Json(fields) => {
            let obj = json_object(fields, r, f.omit_empty_values);
            let mut out = serde_json::to_vec(&obj).unwrap_or_default();
            out.push(b'\n');
            (out, "application/json")
        }
    }
}

/// `parts` rendered as one string, `-` for a command without a value (the
/// OpenTelemetry logger's strings).
pub fn render_string(parts: &[FormatPart], r: &Record<'_>) -> String {
    let mut out = Vec::new();
    text(parts, r, false, &mut out);
    text_of(out)
}

/// Renders into bytes: digits and addresses are appended without a UTF-8
/// check per piece (every piece is text).
fn text(parts: &[FormatPart], r: &Record<'_>, omit_empty: bool, out: &mut Vec<u8>) {
    for p in parts {
        match p {
            FormatPart::Text(t) => out.extend_from_slice(t.as_bytes()),
            FormatPart::Command(c) => match command(c, r) {
                Some(v) => v.push_to(out),
                None if !omit_empty => out.push(b'-'),
                None => {}
            },
        }
    }
}

fn json_object(fields: &[(String, JsonFormatValue)], r: &Record<'_>, omit_empty: bool) -> Value {
    let mut map = serde_json::Map::new();
    for (k, v) in fields {
        let value = json_value(v, r, omit_empty);
        // Envoy leaves out keys whose command had no value; a literal
        // empty string stays.
        if omit_empty && value.is_null() {
            continue;
        }
        map.insert(k.clone(), value);
    }
    Value::Object(map)
}

fn json_value(v: &JsonFormatValue, r: &Record<'_>, omit_empty: bool) -> Value {
    match v {
        JsonFormatValue::Literal(l) => l.clone(),
        JsonFormatValue::Struct(fields) => json_object(fields, r, omit_empty),
        JsonFormatValue::List(l) => {
            Value::Array(l.iter().map(|v| json_value(v, r, omit_empty)).collect())
        }
        // One command alone keeps its type (a number for a status code).
        JsonFormatValue::Format(parts) => match parts.as_slice() {
            [FormatPart::Command(c)] => command(c, r).map_or(Value::Null, Val::into_json),
            parts => {
                let mut out = Vec::new();
                text(parts, r, false, &mut out);
                Value::String(text_of(out))
            }
        },
    }
}

fn ms(d: Option<std::time::Duration>) -> Option<Val<'static>> {
    d.map(|d| Val::Num(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
}

fn s(v: &str) -> Option<Val<'_>> {
    Some(Val::Str(Cow::Borrowed(v)))
}

/// One command's value; `None` when it has none.
fn command<'a>(c: &FormatCommand, r: &Record<'a>) -> Option<Val<'a>> {
    match c {
        FormatCommand::LocalReplyBody => Some(Val::Str(String::from_utf8_lossy(
            r.local_reply_body.unwrap_or_default(),
        ))),
        FormatCommand::StartTime(None) => Some(Val::Start(r.start)),
        FormatCommand::StartTime(Some(f)) => Some(Val::Str(time::format_time(r.start, f).into())),
        FormatCommand::ResponseCode => Some(Val::Num(u64::from(r.status))),
        FormatCommand::ResponseCodeDetails => r.details.and_then(s),
        FormatCommand::ResponseFlags if r.flags.is_empty() => s("-"),
        FormatCommand::ResponseFlags => s(r.flags),
        FormatCommand::ResponseFlagsLong if r.flags.is_empty() => s("-"),
        FormatCommand::ResponseFlagsLong => Some(Val::Str(
            r.flags
                .split(',')
                .map(long_flag)
                .collect::<Vec<_>>()
                .join(",")
                .into(),
        )),
        // Strait does not record why it closed a connection.
        FormatCommand::ConnectionTerminationDetails => None,
        FormatCommand::UpstreamTransportFailureReason => r
            .transport_failure
            .map(|t| Val::Str(t.replace(' ', "_").into())),
        FormatCommand::Protocol => r.protocol.map(|v| {
            Val::Str(Cow::Borrowed(match v {
                http::Version::HTTP_09 => "HTTP/0.9",
                http::Version::HTTP_10 => "HTTP/1.0",
                http::Version::HTTP_2 => "HTTP/2",
                http::Version::HTTP_3 => "HTTP/3",
                _ => "HTTP/1.1",
            }))
        }),
        FormatCommand::BytesReceived => Some(Val::Num(r.bytes_received)),
        FormatCommand::BytesSent => Some(Val::Num(r.bytes_sent)),
        FormatCommand::Duration => ms(r.duration),
        FormatCommand::RequestDuration => ms(r.request_duration),
        FormatCommand::ResponseDuration => ms(r.response_duration),
        FormatCommand::ResponseTxDuration => ms(r.response_tx_duration),
        FormatCommand::Address { of, without_port } => {
            let addr = match of {
                AddressOf::DownstreamLocal => Some(r.downstream_local),
                AddressOf::DownstreamRemote => Some(r.downstream_remote),
                AddressOf::DownstreamDirectRemote => Some(r.downstream_direct_remote),
                AddressOf::UpstreamLocal => r.upstream_local,
                AddressOf::UpstreamRemote => r.upstream_host,
            }?;
            Some(Val::Addr(addr, *without_port))
        }
        FormatCommand::UpstreamCluster => r.upstream_cluster.and_then(s),
        FormatCommand::RequestedServerName => r.server_name.filter(|n| !n.is_empty()).and_then(s),
        FormatCommand::RouteName => r.route_name.filter(|n| !n.is_empty()).and_then(s),
        FormatCommand::UpstreamRequestAttemptCount => r.attempts.map(|n| Val::Num(u64::from(n))),
        FormatCommand::DownstreamPeerUriSan => r.peer_uri_san.and_then(s),
        FormatCommand::DownstreamLocalUriSan => r.local_uri_san.and_then(s),
        FormatCommand::Hostname => hostname().and_then(s),
        FormatCommand::FilterState => None,
        FormatCommand::DynamicMetadata {
            namespace,
            path,
            max_len,
        } => {
            let md = r.metadata?;
            let v = if path.is_empty() {
                Value::Object(md.namespace(namespace)?.clone())
            } else {
                let path: Vec<&str> = path.iter().map(String::as_str).collect();
                md.get(namespace, &path)?.clone()
            };
            Some(match (v, max_len) {
                (Value::String(t), Some(m)) => Val::Str(truncate(Cow::Owned(t), *m)),
                (Value::String(t), None) => Val::Str(Cow::Owned(t)),
                (other, Some(m)) => Val::Str(truncate(Cow::Owned(other.to_string()), *m)),
                (other, None) => Val::Json(other),
            })
        }
        FormatCommand::Request {
            name,
            alternative,
            max_len,
        } => {
            let req = r.request?;
            let v = req
                .header_ref(name)
                .or_else(|| alternative.as_ref().and_then(|a| req.header_ref(a)))?;
            Some(Val::Str(truncate(
                Cow::Borrowed(v),
                max_len.unwrap_or(usize::MAX),
            )))
        }
        FormatCommand::Response {
            name,
            alternative,
            max_len,
        } => header_of(r.response_headers?, name, alternative.as_ref(), *max_len),
        FormatCommand::Trailer {
            name,
            alternative,
            max_len,
        } => header_of(r.response_trailers?, name, alternative.as_ref(), *max_len),
    }
}

fn header_of<'a>(
    h: &'a http::HeaderMap,
    name: &HeaderRef,
    alternative: Option<&HeaderRef>,
    max_len: Option<usize>,
) -> Option<Val<'a>> {
    let v = value_ref(h, name).or_else(|| alternative.and_then(|a| value_ref(h, a)))?;
    Some(Val::Str(truncate(
        Cow::Borrowed(v),
        max_len.unwrap_or(usize::MAX),
    )))
}

fn truncate(v: Cow<'_, str>, max: usize) -> Cow<'_, str> {
    if v.len() <= max {
        return v;
    }
    let mut end = max;
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    match v {
        Cow::Borrowed(b) => Cow::Borrowed(&b[..end]),
        Cow::Owned(mut o) => {
            o.truncate(end);
            Cow::Owned(o)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use strait_model::access_log::JsonFormatValue as J;

    use super::*;
    use crate::record::RequestHead;

    fn cmd(c: FormatCommand) -> FormatPart {
        FormatPart::Command(c)
    }

    fn record<'a>(req: &'a RequestHead) -> Record<'a> {
        let mut r = Record::new(
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_645_111_093),
            "127.0.0.1:80".parse().expect("addr"),
            "[::1]:5000".parse().expect("addr"),
        );
        r.request = Some(req);
        r.status = 503;
        r.flags = "UF,URX";
        r.duration = Some(Duration::from_millis(12));
        r.transport_failure = Some("delayed connect error: Connection refused");
        r.protocol = Some(http::Version::HTTP_11);
        r
    }

    fn head() -> RequestHead {
        let mut headers = http::HeaderMap::new();
        headers.insert("user-agent", http::HeaderValue::from_static("curl/8"));
        headers.insert("host", http::HeaderValue::from_static("h"));
        RequestHead {
            method: http::Method::GET,
            uri: "/p?q".parse().expect("uri"),
            headers,
        }
    }

    #[test]
    fn text_prints_dashes_for_missing_values() {
        let head = head();
        let r = record(&head);
        let f = BodyFormat {
            kind: FormatKind::Text(vec![
                cmd(FormatCommand::Request {
                    name: ":method".into(),
                    alternative: None,
                    max_len: None,
                }),
                FormatPart::Text(" ".into()),
                cmd(FormatCommand::Request {
                    name: "x-envoy-original-path".into(),
                    alternative: Some(":path".into()),
                    max_len: None,
                }),
                FormatPart::Text(" ".into()),
                cmd(FormatCommand::ResponseFlagsLong),
                FormatPart::Text(" ".into()),
                cmd(FormatCommand::Address {
                    of: AddressOf::UpstreamRemote,
                    without_port: false,
                }),
                FormatPart::Text(" ".into()),
                cmd(FormatCommand::UpstreamTransportFailureReason),
                FormatPart::Text(" ".into()),
                cmd(FormatCommand::Address {
                    of: AddressOf::DownstreamRemote,
                    without_port: true,
                }),
                FormatPart::Text("\n".into()),
            ]),
            content_type: String::new(),
            omit_empty_values: false,
        };
        let (line, _) = render(&f, &r);
        assert_eq!(
            String::from_utf8_lossy(&line),
            "GET /p?q UpstreamConnectionFailure,UpstreamRetryLimitExceeded - \
             delayed_connect_error:_Connection_refused ::1\n"
        );
    }

    #[test]
    fn json_keeps_types_and_nulls() {
        let head = head();
        let r = record(&head);
        let one = |c| J::Format(vec![cmd(c)]);
        let f = BodyFormat {
            kind: FormatKind::Json(vec![
                ("code".into(), one(FormatCommand::ResponseCode)),
                ("dur".into(), one(FormatCommand::Duration)),
                ("flags".into(), one(FormatCommand::ResponseFlags)),
                (
                    "mixed".into(),
                    J::Format(vec![
                        FormatPart::Text("c=".into()),
                        cmd(FormatCommand::ResponseCode),
                    ]),
                ),
                (
                    "start".into(),
                    one(FormatCommand::StartTime(Some("%s".into()))),
                ),
                ("ttfb".into(), one(FormatCommand::ResponseDuration)),
            ]),
            content_type: String::new(),
            omit_empty_values: false,
        };
        let (line, _) = render(&f, &r);
        assert_eq!(
            String::from_utf8_lossy(&line),
            "{\"code\":503,\"dur\":12,\"flags\":\"UF,URX\",\"mixed\":\"c=503\",\
             \"start\":\"1796645111\",\"ttfb\":null}\n"
        );
        let omit = BodyFormat {
            omit_empty_values: true,
            ..f
        };
        let (line, _) = render(&omit, &r);
        assert!(!String::from_utf8_lossy(&line).contains("ttfb"));
    }

    #[test]
    fn numbers_and_addresses_print_as_display_does() {
        for n in [0, 7, 10, 65_535, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, n);
            assert_eq!(text_of(out), n.to_string());
        }
        for (addr, without_port, want) in [
            ("0.0.0.0:0", false, "0.0.0.0:0"),
            ("255.199.100.9:65535", false, "255.199.100.9:65535"),
            ("10.1.2.3:8080", false, "10.1.2.3:8080"),
            ("10.1.2.3:8080", true, "10.1.2.3"),
            ("[::1]:80", false, "[::1]:80"),
            ("[::1]:80", true, "::1"),
            ("[::ffff:10.0.0.1]:80", false, "[::ffff:10.0.0.1]:80"),
            ("[::ffff:10.0.0.1]:80", true, "10.0.0.1"),
        ] {
            let mut out = Vec::new();
            push_addr(&mut out, addr.parse().expect("addr"), without_port);
            assert_eq!(text_of(out), want, "{addr} without_port={without_port}");
        }
    }
}
