//! The connection manager's `local_reply_config`: mappers that rewrite the
//! status, body and headers of locally generated responses (no route, no
//! healthy upstream, a filter's answer, ...), and the body format every
//! local reply takes. Envoy's semantics: the first mapper whose filter
//! matches applies; then its body format (or the config's) renders the
//! body. Responses from upstreams are never touched.

use crate::HeaderMutations;

// The filters and formats are the access log's; local replies use them too.
pub use crate::access_log::{
    BodyFormat, CompareOp, Comparison, FormatCommand, FormatKind, FormatPart, JsonFormatValue,
    LogFilter as ReplyFilter,
};

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
