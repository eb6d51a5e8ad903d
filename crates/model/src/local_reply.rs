//! The connection manager's `local_reply_config`: mappers that rewrite the
//! status, body and headers of locally generated responses (no route, no
//! healthy upstream, a filter's answer, ...), and the body format every
//! local reply takes. Envoy's semantics: the first mapper whose filter
//! matches applies; then its body format (or the config's) renders the
//! body. Responses from upstreams are never touched.

use crate::{HeaderMutations, policy::HeaderCondition};

/// `local_reply_config`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LocalReplyConfig {
    pub mappers: Vec<ResponseMapper>,
    /// `body_format`: `None` keeps the reply's own body and content type.
    pub body_format: Option<BodyFormat>,
}

/// One `mappers[]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseMapper {
    pub filter: ReplyFilter,
    /// `status_code`: the status the reply gets instead.
    pub status: Option<u16>,
    /// `body`: the body the reply gets instead (before formatting).
    pub body: Option<String>,
    /// `body_format_override`: used instead of the config's `body_format`.
    pub body_format: Option<BodyFormat>,
    /// `headers_to_add`, as response additions (literal values).
    pub headers: HeaderMutations,
}

/// The subset of Envoy's `AccessLogFilter` a mapper matches with.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyFilter {
    /// `status_code_filter`: the reply's status (before any mapping).
    Status(Comparison),
    /// `duration_filter`: milliseconds since the request started.
    Duration(Comparison),
    /// `not_health_check_filter`: true unless a health check filter marked
    /// the request; Strait has no such filter, so always true.
    NotHealthCheck,
    /// `header_filter`: a condition on the request headers.
    Header(HeaderCondition),
    /// `response_flag_filter`: the reply has one of these flags (any flag
    /// when empty).
    ResponseFlags(Vec<String>),
    /// `and_filter`.
    And(Vec<ReplyFilter>),
    /// `or_filter`.
    Or(Vec<ReplyFilter>),
}

impl ReplyFilter {
    /// Whether evaluating it reads the request's headers.
    pub fn reads_request_headers(&self) -> bool {
        match self {
            ReplyFilter::Header(_) => true,
            ReplyFilter::And(v) | ReplyFilter::Or(v) => v.iter().any(Self::reads_request_headers),
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
    /// `application/json`).
    pub content_type: String,
    /// `omit_empty_values`: JSON keys without a value are left out (text:
    /// an empty string instead of `-`).
    pub omit_empty_values: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FormatKind {
    /// `text_format` / `text_format_source`.
    Text(Vec<FormatPart>),
    /// `json_format`: keys in the config's order.
    Json(Vec<(String, JsonFormatValue)>),
}

impl BodyFormat {
    /// Whether rendering it reads the request's headers or method/path.
    pub fn reads_request_headers(&self) -> bool {
        fn parts(p: &[FormatPart]) -> bool {
            p.iter()
                .any(|p| matches!(p, FormatPart::Command(FormatCommand::Request { .. })))
        }
        fn json(v: &JsonFormatValue) -> bool {
            match v {
                JsonFormatValue::Format(p) => parts(p),
                JsonFormatValue::Struct(kv) => kv.iter().any(|(_, v)| json(v)),
                JsonFormatValue::List(l) => l.iter().any(json),
                JsonFormatValue::Literal(_) => false,
            }
        }
        match &self.kind {
            FormatKind::Text(p) => parts(p),
            FormatKind::Json(kv) => kv.iter().any(|(_, v)| json(v)),
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

/// The format commands local replies support.
#[derive(Debug, Clone, PartialEq)]
pub enum FormatCommand {
    /// `%LOCAL_REPLY_BODY%`: the reply's body (after mapping).
    LocalReplyBody,
    /// `%RESPONSE_CODE%`.
    ResponseCode,
    /// `%RESPONSE_CODE_DETAILS%`.
    ResponseCodeDetails,
    /// `%RESPONSE_FLAGS%`.
    ResponseFlags,
    /// `%PROTOCOL%`: `HTTP/1.1`, `HTTP/2`.
    Protocol,
    /// `%REQ(name?alternative):max%` (names lower-cased; `:path`,
    /// `:method`, `:authority`, `:scheme` read the request line).
    Request {
        name: String,
        alternative: Option<String>,
        max_len: Option<usize>,
    },
    /// `%RESP(name?alternative):max%`: the reply's headers.
    Response {
        name: String,
        alternative: Option<String>,
        max_len: Option<usize>,
    },
}
