//! Compiled `HeaderMatcher`s, `QueryParameterMatcher`s and the gRPC check.

use std::borrow::Cow;

use http::{HeaderMap, HeaderName, header::CONTENT_TYPE};
use strait_model::{HeaderMatcher, HeaderRule, QueryParameterMatcher};

use super::{RequestView, value::ValueMatcher};
use crate::RouteError;

/// Where a header matcher reads its value.
#[derive(Debug, Clone)]
enum Source {
    Method,
    Authority,
    Path,
    Scheme,
    /// A pseudo-header routing cannot see (e.g. `:protocol`): always absent.
    Unknown,
    Header(HeaderName),
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledHeaderMatcher {
    source: Source,
    rule: Rule,
    invert: bool,
    treat_missing_as_empty: bool,
}

#[derive(Debug, Clone)]
enum Rule {
    Present(bool),
    Value(ValueMatcher),
    Range { start: i64, end: i64 },
}

impl CompiledHeaderMatcher {
    pub(crate) fn compile(
        config: &HeaderMatcher,
        at: &dyn Fn() -> String,
    ) -> Result<Self, RouteError> {
        let source = match config.name.as_str() {
            ":method" => Source::Method,
            ":authority" => Source::Authority,
            // Envoy keeps HTTP/1's Host only as `:authority`, so a matcher on
            // `host` never sees a value there either.
            "host" => Source::Unknown,
            ":path" => Source::Path,
            ":scheme" => Source::Scheme,
            other if other.starts_with(':') => Source::Unknown,
            other => Source::Header(header_name(other, at)?),
        };
        let rule = match &config.rule {
            HeaderRule::Present(present) => Rule::Present(*present),
            HeaderRule::String(s) => Rule::Value(ValueMatcher::compile(s, at)?),
            HeaderRule::Range { start, end } => Rule::Range {
                start: *start,
                end: *end,
            },
        };
        Ok(Self {
            source,
            rule,
            invert: config.invert,
            treat_missing_as_empty: config.treat_missing_as_empty,
        })
    }

    /// Envoy's semantics: a `present` rule sees absence (and `invert` flips
    /// it); any other rule fails on a missing header, inverted or not,
    /// unless `treat_missing_as_empty` makes it an empty value.
    ///
    /// Allocates only when the header has several values (joined with `,`,
    /// as Envoy matches them) or is not UTF-8.
    pub(crate) fn matches(&self, request: &RequestView<'_>) -> bool {
        let value = self.value(request);
        if let Rule::Present(present) = self.rule {
            return (value.is_some() == present) != self.invert;
        }
        let value = match value {
            Some(v) => v,
            None if self.treat_missing_as_empty => Cow::Borrowed(""),
            None => return false,
        };
        let hit = match &self.rule {
            Rule::Value(m) => m.matches(&value),
            // Envoy accepts an optional sign and decimal digits, nothing else.
            Rule::Range { start, end } => {
                value.parse::<i64>().is_ok_and(|n| *start <= n && n < *end)
            }
            Rule::Present(_) => false,
        };
        hit != self.invert
    }

    fn value<'a>(&self, request: &RequestView<'a>) -> Option<Cow<'a, str>> {
        match &self.source {
            Source::Method => Some(Cow::Borrowed(request.method.as_str())),
            Source::Authority => Some(Cow::Borrowed(request.authority)),
            Source::Path => (!request.path.is_empty()).then_some(Cow::Borrowed(request.path)),
            Source::Scheme => Some(Cow::Borrowed(request.scheme)),
            Source::Unknown => None,
            Source::Header(name) => joined(request.headers, name),
        }
    }
}

/// Every value of `name`, joined with `,` when there are several.
fn joined<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<Cow<'a, str>> {
    let mut values = headers.get_all(name).iter();
    let first = text(values.next()?.as_bytes());
    match values.next() {
        None => Some(first),
        Some(second) => {
            let mut all = first.into_owned();
            for v in std::iter::once(second).chain(values) {
                all.push(',');
                all.push_str(&text(v.as_bytes()));
            }
            Some(Cow::Owned(all))
        }
    }
}

/// The first value of `name`, as text.
pub(crate) fn first<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<Cow<'a, str>> {
    headers.get(name).map(|v| text(v.as_bytes()))
}

/// Header bytes as text: UTF-8 as is, anything else lossily (such values
/// cannot equal a configured pattern, which is UTF-8, byte for byte anyway).
fn text(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

pub(crate) fn header_name(name: &str, at: &dyn Fn() -> String) -> Result<HeaderName, RouteError> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| RouteError::InvalidHeader {
        at: at(),
        name: name.to_owned(),
    })
}

/// A compiled `QueryParameterMatcher`.
#[derive(Debug, Clone)]
pub(crate) struct CompiledQueryMatcher {
    name: Box<str>,
    value: Option<ValueMatcher>,
}

impl CompiledQueryMatcher {
    pub(crate) fn compile(
        config: &QueryParameterMatcher,
        at: &dyn Fn() -> String,
    ) -> Result<Self, RouteError> {
        Ok(Self {
            name: config.name.as_str().into(),
            value: config
                .value
                .as_ref()
                .map(|v| ValueMatcher::compile(v, at))
                .transpose()?,
        })
    }

    /// `query` is what follows the `?` of `:path` (fragment excluded). Only
    /// the first occurrence of the key counts; values are compared raw.
    pub(crate) fn matches(&self, query: &str) -> bool {
        let Some(value) = first_query_value(query, &self.name) else {
            return false;
        };
        self.value.as_ref().is_none_or(|m| m.matches(value))
    }
}

/// The value of the first `key` or `key=value` element of `query`; a key
/// without `=` has the empty value. Does not allocate.
fn first_query_value<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query.split('&').find_map(|element| {
        let (k, v) = element.split_once('=').unwrap_or((element, ""));
        (k == key).then_some(v)
    })
}

/// Envoy's gRPC request test: `content-type` is `application/grpc`, or
/// starts with `application/grpc+` (e.g. `+proto`) or `application/grpc;`.
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_some_and(|ct| {
        let ct = ct.as_bytes();
        match ct.strip_prefix(b"application/grpc") {
            Some(rest) => rest.is_empty() || rest[0] == b'+' || rest[0] == b';',
            None => false,
        }
    })
}
