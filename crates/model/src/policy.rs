//! Per-route forwarding policies: retries, request hashing for the load
//! balancer, request mirroring, and the small matchers they share with the
//! HTTP filters.

use std::time::Duration;

/// A compiled regular expression (Envoy's `safe_regex`, RE2 syntax), anchored
/// so that it must match the whole input as Envoy's string matchers require.
/// Compared by its source so the model keeps `PartialEq`.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    regex: regex::Regex,
}

impl Pattern {
    /// Compiles `source`, anchored at both ends.
    pub fn new(source: &str) -> Result<Pattern, regex::Error> {
        let regex = regex::Regex::new(&format!("^(?:{source})$"))?;
        Ok(Pattern {
            source: source.to_owned(),
            regex,
        })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the whole of `s` matches. Does not allocate.
    pub fn is_match(&self, s: &str) -> bool {
        self.regex.is_match(s)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// Envoy `type.matcher.v3.ValueMatcher`.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueMatch {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    Regex(Pattern),
}

/// A [`ValueMatch`] with Envoy's `ignore_case`.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueMatcher {
    pub kind: ValueMatch,
    /// Only for exact, prefix, suffix and contains (Envoy ignores it for
    /// regexes); the needle is stored lower-cased when set.
    pub ignore_case: bool,
}

impl ValueMatcher {
    /// Whether `value` matches. Allocation-free.
    pub fn matches(&self, value: &str) -> bool {
        let ic = self.ignore_case;
        match &self.kind {
            ValueMatch::Exact(s) if ic => value.eq_ignore_ascii_case(s),
            ValueMatch::Exact(s) => value == s,
            ValueMatch::Prefix(s) if ic => value
                .get(..s.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(s)),
            ValueMatch::Prefix(s) => value.starts_with(s.as_str()),
            ValueMatch::Suffix(s) if ic => value
                .len()
                .checked_sub(s.len())
                .and_then(|at| value.get(at..))
                .is_some_and(|p| p.eq_ignore_ascii_case(s)),
            ValueMatch::Suffix(s) => value.ends_with(s.as_str()),
            ValueMatch::Contains(s) if ic => value
                .as_bytes()
                .windows(s.len().max(1))
                .any(|w| w.eq_ignore_ascii_case(s.as_bytes())),
            ValueMatch::Contains(s) => value.contains(s.as_str()),
            ValueMatch::Regex(p) => p.is_match(value),
        }
    }
}

/// Envoy `config.route.v3.HeaderMatcher`, as retry policies and the fault
/// filter use it.
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderCondition {
    /// Lower-cased header name.
    pub name: String,
    pub kind: HeaderConditionKind,
    pub invert: bool,
    /// `treat_missing_header_as_empty`.
    pub missing_as_empty: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HeaderConditionKind {
    /// `present_match: true` (or no match specifier at all).
    Present,
    String(ValueMatcher),
    /// `range_match`: `[start, end)`.
    Range {
        start: i64,
        end: i64,
    },
}

impl HeaderCondition {
    /// Whether `headers` satisfy the condition. Several values of one header
    /// are joined with `,` as Envoy does; that is the only allocation, and it
    /// happens only for repeated headers.
    pub fn matches(&self, headers: &http::HeaderMap) -> bool {
        let mut values = headers.get_all(self.name.as_str()).iter();
        let joined;
        let value: Option<&str> = match (values.next(), values.next()) {
            (None, _) => None,
            (Some(v), None) => v.to_str().ok(),
            (Some(_), Some(_)) => {
                joined = headers
                    .get_all(self.name.as_str())
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect::<Vec<_>>()
                    .join(",");
                Some(joined.as_str())
            }
        };
        let value = match value {
            Some(v) => v,
            None if self.missing_as_empty => "",
            // A missing header never matches, inverted or not (Envoy).
            None => return false,
        };
        let hit = match &self.kind {
            HeaderConditionKind::Present => true,
            HeaderConditionKind::String(m) => m.matches(value),
            HeaderConditionKind::Range { start, end } => value
                .parse::<i64>()
                .is_ok_and(|n| (*start..*end).contains(&n)),
        };
        hit != self.invert
    }
}

/// Envoy `type.v3.FractionalPercent`, normalised to parts per million.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fraction {
    pub per_million: u32,
}

impl Fraction {
    pub const ALL: Fraction = Fraction {
        per_million: 1_000_000,
    };

    /// Whether a uniformly random `roll` in `0..1_000_000` falls inside.
    pub fn hits(self, roll: u32) -> bool {
        roll < self.per_million
    }
}

/// The conditions of `retry_on` / `x-envoy-retry-on` / `x-envoy-retry-grpc-on`,
/// as a bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryOn(u32);

impl RetryOn {
    pub const FIVE_XX: RetryOn = RetryOn(1);
    pub const GATEWAY_ERROR: RetryOn = RetryOn(1 << 1);
    pub const RESET: RetryOn = RetryOn(1 << 2);
    pub const CONNECT_FAILURE: RetryOn = RetryOn(1 << 3);
    pub const RETRIABLE_4XX: RetryOn = RetryOn(1 << 4);
    pub const REFUSED_STREAM: RetryOn = RetryOn(1 << 5);
    pub const RETRIABLE_STATUS_CODES: RetryOn = RetryOn(1 << 6);
    pub const RETRIABLE_HEADERS: RetryOn = RetryOn(1 << 7);
    pub const GRPC_CANCELLED: RetryOn = RetryOn(1 << 8);
    pub const GRPC_DEADLINE_EXCEEDED: RetryOn = RetryOn(1 << 9);
    pub const GRPC_RESOURCE_EXHAUSTED: RetryOn = RetryOn(1 << 10);
    pub const GRPC_UNAVAILABLE: RetryOn = RetryOn(1 << 11);
    pub const GRPC_INTERNAL: RetryOn = RetryOn(1 << 12);
    /// The upstream reset or closed before the request was sent (a pooled
    /// connection closing as it is reused, or a connect failure): safe to
    /// retry even for a non-idempotent request.
    pub const RESET_BEFORE_REQUEST: RetryOn = RetryOn(1 << 13);

    /// The condition an Envoy `retry_on` token names, `None` for tokens
    /// Strait does not know (Envoy ignores those in request headers).
    pub fn token(name: &str) -> Option<RetryOn> {
        Some(match name {
            "5xx" => Self::FIVE_XX,
            "gateway-error" => Self::GATEWAY_ERROR,
            "reset" => Self::RESET,
            "connect-failure" => Self::CONNECT_FAILURE,
            "reset-before-request" => Self::RESET_BEFORE_REQUEST,
            "retriable-4xx" => Self::RETRIABLE_4XX,
            "refused-stream" => Self::REFUSED_STREAM,
            "retriable-status-codes" => Self::RETRIABLE_STATUS_CODES,
            "retriable-headers" => Self::RETRIABLE_HEADERS,
            "cancelled" => Self::GRPC_CANCELLED,
            "deadline-exceeded" => Self::GRPC_DEADLINE_EXCEEDED,
            "resource-exhausted" => Self::GRPC_RESOURCE_EXHAUSTED,
            "unavailable" => Self::GRPC_UNAVAILABLE,
            "internal" => Self::GRPC_INTERNAL,
            _ => return None,
        })
    }

    /// Parses a comma-separated list leniently (unknown tokens and spaces
    /// are skipped), as Envoy reads the request headers.
    pub fn parse_lenient(list: &str) -> RetryOn {
        list.split(',')
            .filter_map(|t| Self::token(t.trim()))
            .fold(RetryOn::default(), RetryOn::union)
    }

    pub const fn union(self, other: RetryOn) -> RetryOn {
        RetryOn(self.0 | other.0)
    }

    pub const fn contains(self, other: RetryOn) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// Envoy `config.route.v3.RetryPolicy`, with defaults applied. A virtual
/// host's policy is copied onto its routes that have none.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub retry_on: RetryOn,
    /// `num_retries` (default 1).
    pub num_retries: u32,
    /// `per_try_timeout`; `None` means only the route timeout applies.
    pub per_try_timeout: Option<Duration>,
    /// `retry_back_off.base_interval` (default 25 ms).
    pub base_interval: Duration,
    /// `retry_back_off.max_interval` (default 10 × base).
    pub max_interval: Duration,
    pub retriable_status_codes: Vec<u16>,
    /// `retriable_headers`: a response matching any is retried under
    /// `retriable-headers`.
    pub retriable_headers: Vec<HeaderCondition>,
    /// `retry_host_predicate` `envoy.retry_host_predicates.previous_hosts`.
    pub avoid_previous_hosts: bool,
    /// `host_selection_retry_max_attempts` (default 1).
    pub host_selection_max_attempts: u32,
}

impl RetryPolicy {
    /// Envoy's defaults for `retry_on` conditions given only in request
    /// headers (no configured policy).
    pub fn from_header(retry_on: RetryOn) -> RetryPolicy {
        RetryPolicy {
            retry_on,
            num_retries: 1,
            per_try_timeout: None,
            base_interval: Duration::from_millis(25),
            max_interval: Duration::from_millis(250),
            retriable_status_codes: Vec::new(),
            retriable_headers: Vec::new(),
            avoid_previous_hosts: false,
            host_selection_max_attempts: 1,
        }
    }
}

/// One `hash_policy` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct HashPolicy {
    pub source: HashSource,
    /// `terminal`: when this entry produced a hash, later ones are skipped.
    pub terminal: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HashSource {
    /// `header.header_name` (lower-cased).
    Header(String),
    /// `cookie.name` (without `ttl`: cookie generation is not supported).
    Cookie(String),
    /// `connection_properties.source_ip: true`.
    SourceIp,
    /// `query_parameter.name`.
    QueryParameter(String),
}

/// One `request_mirror_policies` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorPolicy {
    pub cluster: String,
    /// `runtime_fraction`'s default value (runtime overrides are not
    /// supported); all requests when unset.
    pub fraction: Fraction,
}

/// Envoy `type.matcher.v3.MetadataMatcher` over a request's dynamic
/// metadata: the value at `path` under namespace `filter`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataMatcher {
    pub filter: String,
    pub path: Vec<String>,
    pub value: MetadataValue,
    /// `invert`.
    pub invert: bool,
}

/// The `value` of a [`MetadataMatcher`] (Envoy's `ValueMatcher`).
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataValue {
    /// `null_match`: the value is null or absent.
    Null,
    /// `double_match` with `exact`.
    Number(f64),
    /// `double_match` with `range`: `[start, end)`.
    Range {
        start: f64,
        end: f64,
    },
    String(ValueMatcher),
    Bool(bool),
    /// `present_match`: present (or, `false`, absent).
    Present(bool),
    /// `list_match.one_of`: a list with an element that matches.
    ListOneOf(Box<MetadataValue>),
    /// `or_match`.
    Or(Vec<MetadataValue>),
}

impl MetadataMatcher {
    /// Whether `value` (the metadata at the matcher's path, if any)
    /// matches, `invert` applied.
    pub fn matches(&self, value: Option<&serde_json::Value>) -> bool {
        self.value.matches(value) != self.invert
    }
}

impl MetadataValue {
    pub fn matches(&self, value: Option<&serde_json::Value>) -> bool {
        use serde_json::Value as V;
        match (self, value) {
            (MetadataValue::Present(want), v) => v.is_some() == *want,
            (MetadataValue::Null, None | Some(V::Null)) => true,
            (MetadataValue::Or(all), v) => all.iter().any(|m| m.matches(v)),
            (_, None) => false,
            (MetadataValue::Number(n), Some(V::Number(x))) => x.as_f64() == Some(*n),
            (MetadataValue::Range { start, end }, Some(V::Number(x))) => {
                x.as_f64().is_some_and(|x| x >= *start && x < *end)
            }
            (MetadataValue::String(m), Some(V::String(s))) => m.matches(s),
            (MetadataValue::Bool(b), Some(V::Bool(x))) => b == x,
            (MetadataValue::ListOneOf(m), Some(V::Array(items))) => {
                items.iter().any(|i| m.matches(Some(i)))
            }
            _ => false,
        }
    }
}
