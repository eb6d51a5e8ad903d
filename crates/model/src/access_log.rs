//! Access logs as Envoy configures them (`access_log` on a listener, an
//! HTTP connection manager or a TCP proxy): where each line goes, which
//! requests or connections are logged (`AccessLogFilter`), and the line's
//! format (`SubstitutionFormatString` with Envoy's command operators).
//! Local replies' `body_format` and mapper filters are the same types.

use std::sync::Arc;

use crate::policy::HeaderCondition;

/// The access logs of one listener, connection manager or TCP proxy, in
/// config order. Empty for none: the data path then gathers nothing.
pub type AccessLogs = Arc<[AccessLog]>;

/// One `access_log` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLog {
    pub sink: LogSink,
    /// `filter`: only entries it accepts are written.
    pub filter: Option<LogFilter>,
    pub format: BodyFormat,
    /// What the entry reads, worked out once ([`AccessLog::new`]) so a
    /// request does not walk the format to know what to keep.
    needs: Needs,
}

/// What one access log reads of a request: the data path keeps only
/// that.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Needs {
    /// The request's head (method, URI, headers) at all.
    pub request: bool,
    /// Every request header (a filter or a remote logger reads them);
    /// else only [`Needs::request_headers`].
    pub all_request_headers: bool,
    /// The request headers the format names (`Host` for `:authority`).
    pub request_headers: Vec<http::HeaderName>,
    /// The response's headers or trailers at all.
    pub response: bool,
    /// Every response header and trailer (a remote logger reads them);
    /// else only [`Needs::response_headers`].
    pub all_response_headers: bool,
    /// The response headers and trailers the format names.
    pub response_headers: Vec<http::HeaderName>,
    /// Dynamic metadata.
    pub metadata: bool,
}

/// Where lines (or records) go.
#[derive(Debug, Clone, PartialEq)]
pub enum LogSink {
    /// `envoy.access_loggers.file`: appended to this path (opened once per
    /// path and shared, reopened on `SIGUSR1` and `POST /reopen_logs`).
    File(String),
    /// `envoy.access_loggers.stdout`.
    Stdout,
    /// `envoy.access_loggers.stderr`.
    Stderr,
    /// `envoy.access_loggers.open_telemetry`: OTLP log records exported
    /// over gRPC (`LogsService/Export`) to a cluster. `format` of the
    /// [`AccessLog`] is unused: `body` and `attributes` are the format.
    OpenTelemetry(Arc<OtelLog>),
    /// `envoy.access_loggers.http_grpc` / `tcp_grpc`: Envoy's gRPC access
    /// log service (`AccessLogService/StreamAccessLogs`, one long-lived
    /// client stream). `format` of the [`AccessLog`] is unused: the entry's
    /// shape is fixed by `envoy.data.accesslog.v3`.
    GrpcService(Arc<GrpcLog>),
}

/// A gRPC access log service logger (`HttpGrpcAccessLogConfig`,
/// `TcpGrpcAccessLogConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcLog {
    /// Where and how entries are sent; `log_name` goes in the identifier
    /// of each stream's first message. Loggers with equal configs share
    /// one stream.
    pub channel: RemoteChannel,
    /// `HTTPAccessLogEntry` (`http_grpc`) or `TCPAccessLogEntry`
    /// (`tcp_grpc`).
    pub kind: GrpcLogKind,
    /// `additional_request_headers_to_log`, lower-case.
    pub request_headers: Vec<String>,
    /// `additional_response_headers_to_log`, lower-case.
    pub response_headers: Vec<String>,
    /// `additional_response_trailers_to_log`, lower-case.
    pub response_trailers: Vec<String>,
}

/// Which entries a gRPC access log service logger sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrpcLogKind {
    Http,
    Tcp,
}

/// An OpenTelemetry access logger (`OpenTelemetryAccessLogConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct OtelLog {
    /// Where and how records are sent; loggers with equal channels share
    /// one exporter (Envoy's gRPC access logger cache does the same).
    pub channel: RemoteChannel,
    /// `disable_builtin_labels` unset: the resource carries `log_name`,
    /// `zone_name`, `cluster_name` and `node_name` first.
    pub builtin_labels: bool,
    /// `resource_attributes`, literal, after (and overriding) the built-in
    /// labels.
    pub resource_attributes: Vec<(String, AnyValue)>,
    /// `body`: `None` leaves the record's body unset.
    pub body: Option<OtelFormat>,
    /// `attributes`, in config order.
    pub attributes: Vec<(String, OtelFormat)>,
}

/// A remote logger's destination and batching.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemoteChannel {
    /// `envoy_grpc.cluster_name`.
    pub cluster: String,
    /// `envoy_grpc.authority` (the cluster name when empty).
    pub authority: String,
    /// `grpc_service.timeout` (`None`: no deadline, as Envoy's default).
    pub timeout: Option<std::time::Duration>,
    /// `grpc_service.initial_metadata`.
    pub initial_metadata: Vec<(String, String)>,
    /// `log_name`.
    pub log_name: String,
    /// `buffer_flush_interval` (Envoy's default 1 s).
    pub flush_interval: std::time::Duration,
    /// `buffer_size_bytes` (Envoy's default 16 384): a batch this big is
    /// sent at once.
    pub buffer_bytes: u64,
    /// `stat_prefix`: stats under `access_logs.<logger>.<stat_prefix>.`.
    pub stat_prefix: String,
}

/// An OpenTelemetry `AnyValue` in a format: strings are command-operator
/// formats (always rendered as strings, `-` for a missing value), nested
/// key-value lists and arrays keep their shape. Envoy accepts no other
/// kind there.
#[derive(Debug, Clone, PartialEq)]
pub enum OtelFormat {
    String(Vec<FormatPart>),
    KvList(Vec<(String, OtelFormat)>),
    Array(Vec<OtelFormat>),
}

/// A literal OpenTelemetry `AnyValue` (`resource_attributes`).
#[derive(Debug, Clone, PartialEq)]
pub enum AnyValue {
    String(String),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(Vec<u8>),
    Array(Vec<AnyValue>),
    KvList(Vec<(String, AnyValue)>),
}

impl OtelFormat {
    fn reads(&self, what: Reads) -> bool {
        match self {
            OtelFormat::String(p) => p
                .iter()
                .any(|p| matches!(p, FormatPart::Command(c) if c.reads(what))),
            OtelFormat::KvList(kv) => kv.iter().any(|(_, v)| v.reads(what)),
            OtelFormat::Array(l) => l.iter().any(|v| v.reads(what)),
        }
    }
}

impl LogSink {
    /// Whether the sink's own format (a remote logger's) reads `what`.
    fn reads(&self, what: Reads) -> bool {
        match self {
            LogSink::OpenTelemetry(o) => {
                o.body.as_ref().is_some_and(|b| b.reads(what))
                    || o.attributes.iter().any(|(_, v)| v.reads(what))
            }
            // The entry carries the request line, a few request headers,
            // header byte counts and the additional headers.
            LogSink::GrpcService(_) => what != Reads::Metadata,
            _ => false,
        }
    }
}

impl AccessLog {
    /// An entry writing `format` to `sink` when `filter` (if any) accepts.
    pub fn new(sink: LogSink, filter: Option<LogFilter>, format: BodyFormat) -> Self {
        let mut log = AccessLog {
            sink,
            filter,
            format,
            needs: Needs::default(),
        };
        fn add(names: &mut Vec<http::HeaderName>, n: http::HeaderName) {
            if !names.contains(&n) {
                names.push(n);
            }
        }
        let mut request_headers = Vec::new();
        let mut response_headers = Vec::new();
        log.format.for_each_command(&mut |c| match c {
            FormatCommand::Request {
                name, alternative, ..
            } => {
                for h in std::iter::once(name).chain(alternative) {
                    match h.key() {
                        HeaderKey::Name(n) => add(&mut request_headers, n.clone()),
                        HeaderKey::Authority => add(&mut request_headers, http::header::HOST),
                        _ => {}
                    }
                }
            }
            FormatCommand::Response {
                name, alternative, ..
            }
            | FormatCommand::Trailer {
                name, alternative, ..
            } => {
                for h in std::iter::once(name).chain(alternative) {
                    if let HeaderKey::Name(n) = h.key() {
                        add(&mut response_headers, n.clone());
                    }
                }
            }
            _ => {}
        });
        log.needs = Needs {
            request: log.reads_request_headers(),
            all_request_headers: log.sink.reads(Reads::RequestHeaders)
                || log
                    .filter
                    .as_ref()
                    .is_some_and(LogFilter::reads_request_headers),
            request_headers,
            response: log.reads_response_headers(),
            all_response_headers: log.sink.reads(Reads::ResponseHeaders),
            response_headers,
            metadata: log.reads_metadata(),
        };
        log
    }

    /// What the entry reads.
    pub fn needs(&self) -> &Needs {
        &self.needs
    }

    /// Whether formatting or filtering reads the request's headers.
    pub fn reads_request_headers(&self) -> bool {
        self.format.reads(Reads::RequestHeaders)
            || self.sink.reads(Reads::RequestHeaders)
            || self
                .filter
                .as_ref()
                .is_some_and(LogFilter::reads_request_headers)
    }

    /// Whether the format reads the response's headers or trailers.
    pub fn reads_response_headers(&self) -> bool {
        self.format.reads(Reads::ResponseHeaders) || self.sink.reads(Reads::ResponseHeaders)
    }

    /// Whether the format reads dynamic metadata.
    pub fn reads_metadata(&self) -> bool {
        self.format.reads(Reads::Metadata) || self.sink.reads(Reads::Metadata)
    }
}

/// Envoy's `AccessLogFilter`, as access logs and local reply mappers use it.
#[derive(Debug, Clone, PartialEq)]
pub enum LogFilter {
    /// `status_code_filter`: the response's status (0 when there is none).
    Status(Comparison),
    /// `duration_filter`: milliseconds since the request started.
    Duration(Comparison),
    /// `not_health_check_filter`: true unless a health check filter marked
    /// the request; Strait has no such filter, so always true.
    NotHealthCheck,
    /// `traceable_filter` where no tracing is configured: Envoy never marks
    /// such a request traceable, so it never matches.
    NeverTraceable,
    /// `traceable_filter` on a connection manager with `tracing`: the
    /// request is traced because `x-envoy-force-trace` forced it (Envoy's
    /// filter checks for that reason; sampled requests do not match).
    Traceable,
    /// `header_filter`: a condition on the request headers.
    Header(HeaderCondition),
    /// `response_flag_filter`: one of these flags is set (any flag when
    /// empty).
    ResponseFlags(Vec<String>),
    /// `runtime_filter` without a runtime layer setting its key: its
    /// `percent_sampled`, drawn from the request id unless
    /// `use_independent_randomness`.
    Runtime(RuntimeSample),
    /// `and_filter`.
    And(Vec<LogFilter>),
    /// `or_filter`.
    Or(Vec<LogFilter>),
}

/// A `runtime_filter`'s default sampling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeSample {
    pub numerator: u32,
    /// 100, 10 000 or 1 000 000.
    pub denominator: u32,
    pub independent_randomness: bool,
}

impl LogFilter {
    /// Whether evaluating it reads the request's headers.
    pub fn reads_request_headers(&self) -> bool {
        match self {
            LogFilter::Header(_) | LogFilter::Runtime(_) => true,
            LogFilter::And(v) | LogFilter::Or(v) => v.iter().any(Self::reads_request_headers),
            _ => false,
        }
    }
}

/// Envoy's `ComparisonFilter` with its `runtime_key`'s default value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Comparison {
    pub op: CompareOp,
    pub value: u64,
}

impl Comparison {
    pub fn holds(&self, actual: u64) -> bool {
        match self.op {
            CompareOp::Eq => actual == self.value,
            CompareOp::Ge => actual >= self.value,
            CompareOp::Le => actual <= self.value,
            CompareOp::Ne => actual != self.value,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ge,
    Le,
    Ne,
}

/// Envoy's `SubstitutionFormatString`, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct BodyFormat {
    pub kind: FormatKind,
    /// `content_type`; empty for the kind's default (`text/plain`,
    /// `application/json`). Local replies only.
    pub content_type: String,
    /// `omit_empty_values`: JSON keys without a value are left out (text:
    /// an empty string instead of `-`).
    pub omit_empty_values: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FormatKind {
    /// `text_format` / `text_format_source`.
    Text(Vec<FormatPart>),
    /// `json_format`: keys sorted, as Envoy prints them.
    Json(Vec<(String, JsonFormatValue)>),
}

/// What a format may read, for gathering only what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    RequestHeaders,
    ResponseHeaders,
    Metadata,
}

impl FormatCommand {
    fn reads(&self, what: Reads) -> bool {
        match what {
            Reads::RequestHeaders => matches!(self, FormatCommand::Request { .. }),
            Reads::ResponseHeaders => matches!(
                self,
                FormatCommand::Response { .. } | FormatCommand::Trailer { .. }
            ),
            Reads::Metadata => matches!(self, FormatCommand::DynamicMetadata { .. }),
        }
    }
}

impl BodyFormat {
    /// Calls `f` with every command of the format.
    pub fn for_each_command(&self, f: &mut impl FnMut(&FormatCommand)) {
        fn parts(p: &[FormatPart], f: &mut impl FnMut(&FormatCommand)) {
            for part in p {
                if let FormatPart::Command(c) = part {
                    f(c);
                }
            }
        }
        fn json(v: &JsonFormatValue, f: &mut impl FnMut(&FormatCommand)) {
            match v {
                JsonFormatValue::Format(p) => parts(p, f),
                JsonFormatValue::Struct(kv) => kv.iter().for_each(|(_, v)| json(v, f)),
                JsonFormatValue::List(l) => l.iter().for_each(|v| json(v, f)),
                JsonFormatValue::Literal(_) => {}
            }
        }
        match &self.kind {
            FormatKind::Text(p) => parts(p, f),
            FormatKind::Json(kv) => kv.iter().for_each(|(_, v)| json(v, f)),
        }
    }

    /// Whether rendering it reads the request's headers or method/path.
    pub fn reads_request_headers(&self) -> bool {
        self.reads(Reads::RequestHeaders)
    }

    /// Whether rendering it reads `what`.
    pub fn reads(&self, what: Reads) -> bool {
        fn parts(p: &[FormatPart], what: Reads) -> bool {
            p.iter()
                .any(|p| matches!(p, FormatPart::Command(c) if c.reads(what)))
        }
        fn json(v: &JsonFormatValue, what: Reads) -> bool {
            match v {
                JsonFormatValue::Format(p) => parts(p, what),
                JsonFormatValue::Struct(kv) => kv.iter().any(|(_, v)| json(v, what)),
                JsonFormatValue::List(l) => l.iter().any(|v| json(v, what)),
                JsonFormatValue::Literal(_) => false,
            }
        }
        match &self.kind {
            FormatKind::Text(p) => parts(p, what),
            FormatKind::Json(kv) => kv.iter().any(|(_, v)| json(v, what)),
        }
    }
}

/// A value of a `json_format`.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonFormatValue {
    /// A string with commands; a string that is exactly one command renders
    /// that command's typed value (a number for `%RESPONSE_CODE%`).
    Format(Vec<FormatPart>),
    /// A number, bool or null, passed through.
    Literal(serde_json::Value),
    Struct(Vec<(String, JsonFormatValue)>),
    List(Vec<JsonFormatValue>),
}

/// A piece of a format string.
#[derive(Debug, Clone, PartialEq)]
pub enum FormatPart {
    Text(String),
    Command(FormatCommand),
}

/// Which address an address operator prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressOf {
    /// `DOWNSTREAM_LOCAL_ADDRESS`: the connection's (original) destination.
    DownstreamLocal,
    /// `DOWNSTREAM_REMOTE_ADDRESS`: the client (after `x-forwarded-for`
    /// when the connection manager trusts it).
    DownstreamRemote,
    /// `DOWNSTREAM_DIRECT_REMOTE_ADDRESS`: the connection's peer.
    DownstreamDirectRemote,
    /// `UPSTREAM_LOCAL_ADDRESS`.
    UpstreamLocal,
    /// `UPSTREAM_HOST` / `UPSTREAM_REMOTE_ADDRESS`.
    UpstreamRemote,
}

/// Envoy's command operators that Strait renders.
#[derive(Debug, Clone, PartialEq)]
pub enum FormatCommand {
    /// `%LOCAL_REPLY_BODY%`: the reply's body (after mapping).
    LocalReplyBody,
    /// `%START_TIME%` or `%START_TIME(strftime)%` (UTC).
    StartTime(Option<String>),
    /// `%RESPONSE_CODE%` (0 when there is none).
    ResponseCode,
    /// `%RESPONSE_CODE_DETAILS%`.
    ResponseCodeDetails,
    /// `%RESPONSE_FLAGS%`.
    ResponseFlags,
    /// `%RESPONSE_FLAGS_LONG%`.
    ResponseFlagsLong,
    /// `%CONNECTION_TERMINATION_DETAILS%`.
    ConnectionTerminationDetails,
    /// `%UPSTREAM_TRANSPORT_FAILURE_REASON%`.
    UpstreamTransportFailureReason,
    /// `%PROTOCOL%`: `HTTP/1.1`, `HTTP/2`; none for TCP.
    Protocol,
    /// `%BYTES_RECEIVED%`: request body (TCP: downstream) bytes.
    BytesReceived,
    /// `%BYTES_SENT%`: response body (TCP: upstream) bytes.
    BytesSent,
    /// `%DURATION%` (ms).
    Duration,
    /// `%REQUEST_DURATION%`: until the last request byte was received.
    RequestDuration,
    /// `%RESPONSE_DURATION%`: until the first upstream response byte.
    ResponseDuration,
    /// `%RESPONSE_TX_DURATION%`: from the first upstream response byte to
    /// the last byte sent downstream.
    ResponseTxDuration,
    /// An address, with its port unless `without_port`.
    Address { of: AddressOf, without_port: bool },
    /// `%UPSTREAM_CLUSTER%`.
    UpstreamCluster,
    /// `%REQUESTED_SERVER_NAME%`.
    RequestedServerName,
    /// `%ROUTE_NAME%`.
    RouteName,
    /// `%UPSTREAM_REQUEST_ATTEMPT_COUNT%`.
    UpstreamRequestAttemptCount,
    /// `%DOWNSTREAM_PEER_URI_SAN%`.
    DownstreamPeerUriSan,
    /// `%DOWNSTREAM_LOCAL_URI_SAN%`.
    DownstreamLocalUriSan,
    /// `%HOSTNAME%`.
    Hostname,
    /// `%FILTER_STATE(key)%`: Strait's filters publish no filter state
    /// Envoy would serialize, so always empty.
    FilterState,
    /// `%DYNAMIC_METADATA(namespace:key:...):max%`.
    DynamicMetadata {
        namespace: String,
        path: Vec<String>,
        max_len: Option<usize>,
    },
    /// `%REQ(name?alternative):max%` (names lower-cased; `:path`,
    /// `:method`, `:authority`, `:scheme` read the request line).
    Request {
        name: HeaderRef,
        alternative: Option<HeaderRef>,
        max_len: Option<usize>,
    },
    /// `%RESP(name?alternative):max%`: the response's headers.
    Response {
        name: HeaderRef,
        alternative: Option<HeaderRef>,
        max_len: Option<usize>,
    },
    /// `%TRAILER(name?alternative):max%`: the response's trailers.
    Trailer {
        name: HeaderRef,
        alternative: Option<HeaderRef>,
        max_len: Option<usize>,
    },
}

/// A header a format reads (`%REQ(name)%`), its name (lower-cased)
/// resolved once, when the config is made: a lookup by string would parse
/// and validate the name again for every request.
#[derive(Debug, Clone)]
pub struct HeaderRef {
    name: String,
    key: HeaderKey,
}

/// What a [`HeaderRef`] names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderKey {
    /// `:path`, `:method`, `:authority`, `:scheme`: the request line's
    /// (no response header has them).
    Path,
    Method,
    Authority,
    Scheme,
    /// A header.
    Name(http::HeaderName),
    /// Not a valid header name: never has a value.
    Invalid,
}

impl HeaderRef {
    /// The header `name` (lower-cased, as Envoy's formatter matches).
    pub fn new(name: impl Into<String>) -> Self {
        let name: String = name.into();
        let key = match name.as_str() {
            ":path" => HeaderKey::Path,
            ":method" => HeaderKey::Method,
            ":authority" => HeaderKey::Authority,
            ":scheme" => HeaderKey::Scheme,
            n => http::HeaderName::from_bytes(n.as_bytes())
                .map_or(HeaderKey::Invalid, HeaderKey::Name),
        };
        HeaderRef { name, key }
    }

    /// The name as configured (lower-cased).
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// What the name resolves to.
    pub fn key(&self) -> &HeaderKey {
        &self.key
    }
}

impl PartialEq for HeaderRef {
    fn eq(&self, other: &Self) -> bool {
        // The key follows from the name.
        self.name == other.name
    }
}

impl From<&str> for HeaderRef {
    fn from(name: &str) -> Self {
        HeaderRef::new(name)
    }
}

impl From<String> for HeaderRef {
    fn from(name: String) -> Self {
        HeaderRef::new(name)
    }
}

/// The `strftime` conversions `%START_TIME(...)%` may use: the common
/// ones, and Envoy's own `%s` (epoch seconds), `%f`/`%Nf` (fraction of a
/// second, `N` digits, 9 by default) and `%ENS` (seconds with `N`
/// fraction digits). Anything else is refused at config time.
pub const START_TIME_CONVERSIONS: &str = "YmdHMSTFDzZsjyeaAbBhpIRn%";

#[cfg(test)]
mod tests {
    use super::*;

    fn req(name: &str, alternative: Option<&str>) -> FormatPart {
        FormatPart::Command(FormatCommand::Request {
            name: name.into(),
            alternative: alternative.map(HeaderRef::from),
            max_len: None,
        })
    }

    fn text(parts: Vec<FormatPart>) -> BodyFormat {
        BodyFormat {
            kind: FormatKind::Text(parts),
            content_type: String::new(),
            omit_empty_values: false,
        }
    }

    #[test]
    fn needs_name_the_headers_formats_read() {
        let log = AccessLog::new(
            LogSink::Stdout,
            None,
            text(vec![
                req(":method", None),
                req("x-envoy-original-path", Some(":path")),
                req(":authority", None),
                req("user-agent", None),
                req("user-agent", None),
                FormatPart::Command(FormatCommand::Response {
                    name: "x-envoy-upstream-service-time".into(),
                    alternative: None,
                    max_len: None,
                }),
            ]),
        );
        let n = log.needs();
        assert!(n.request && !n.all_request_headers);
        let names: Vec<&str> = n.request_headers.iter().map(|h| h.as_str()).collect();
        // `:authority` falls back to `Host`; pseudo-headers are the
        // request line's; each name once.
        assert_eq!(names, ["x-envoy-original-path", "host", "user-agent"]);
        assert!(n.response && !n.all_response_headers);
        assert_eq!(n.response_headers, ["x-envoy-upstream-service-time"]);
        assert!(!n.metadata);
    }

    #[test]
    fn a_filter_reading_headers_keeps_them_all() {
        let log = AccessLog::new(
            LogSink::Stdout,
            Some(LogFilter::Runtime(RuntimeSample {
                numerator: 1,
                denominator: 100,
                independent_randomness: false,
            })),
            text(vec![FormatPart::Command(FormatCommand::ResponseCode)]),
        );
        assert!(log.needs().request && log.needs().all_request_headers);
        assert!(!log.needs().response);
    }

    #[test]
    fn header_refs_resolve_once() {
        assert_eq!(HeaderRef::new(":path").key(), &HeaderKey::Path);
        assert_eq!(
            HeaderRef::new("x-a").key(),
            &HeaderKey::Name(http::HeaderName::from_static("x-a"))
        );
        assert_eq!(HeaderRef::new("bad name").key(), &HeaderKey::Invalid);
        assert_eq!(HeaderRef::new("x-a"), HeaderRef::from("x-a"));
    }
}
