//! The route model: Envoy's `RouteConfiguration` language (virtual hosts,
//! routes, matches, actions, header mutations), validated and with Envoy's
//! defaults applied. Regexes are kept as source text, already checked to
//! compile; `strait-route` compiles them again, once, into its table.
//!
//! Plain structs with public fields: other parts of the route language
//! (retry, hash and mirror policies, per-filter config) join them as fields.

use std::time::Duration;

/// Envoy `RouteConfiguration`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RouteConfig {
    pub name: String,
    pub virtual_hosts: Vec<VirtualHost>,
    /// `ignore_port_in_host_matching`: a port in `:authority` is ignored when
    /// picking the virtual host (ports in `domains` are not stripped).
    pub ignore_port_in_host_matching: bool,
    /// `request_headers_to_add/remove`, `response_headers_to_add/remove`.
    pub headers: HeaderMutations,
    /// `most_specific_header_mutations_wins`: apply route-configuration,
    /// then virtual-host, then route mutations (so the most specific level
    /// wins a conflict) instead of Envoy's default, the reverse.
    pub most_specific_header_mutations_wins: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct VirtualHost {
    pub name: String,
    /// As written: exact names, `*.suffix`, `prefix.*` or `*`. Lower-cased.
    pub domains: Vec<String>,
    pub routes: Vec<Route>,
    pub headers: HeaderMutations,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub name: String,
    pub matcher: RouteMatch,
    pub action: RouteAction,
    pub headers: HeaderMutations,
    /// `typed_per_filter_config` (and the deprecated `cors`) of the route
    /// configuration, virtual host and route, merged: most specific wins.
    pub per_filter_config: Vec<super::filter::FilterOverride>,
    /// The route's and its virtual host's `rate_limits`, read by the
    /// rate-limit filters.
    pub rate_limits: super::ratelimit::RouteRateLimits,
}

/// One level's `request_headers_to_add/remove` and
/// `response_headers_to_add/remove`. Within a level removals run first, as
/// in Envoy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderMutations {
    pub request_add: Vec<HeaderToAdd>,
    /// Lower-cased header names.
    pub request_remove: Vec<String>,
    pub response_add: Vec<HeaderToAdd>,
    /// Lower-cased header names.
    pub response_remove: Vec<String>,
}

impl HeaderMutations {
    pub fn is_empty(&self) -> bool {
        self.request_add.is_empty()
            && self.request_remove.is_empty()
            && self.response_add.is_empty()
            && self.response_remove.is_empty()
    }
}

/// Envoy `HeaderValueOption` with a literal value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderToAdd {
    /// Lower-cased; never a pseudo-header nor `host`.
    pub name: String,
    /// The literal value (`%%` already unescaped to `%`).
    pub value: String,
    pub action: AppendAction,
    /// `keep_empty_value`: an empty value is added rather than skipped.
    pub keep_empty_value: bool,
}

/// Envoy `HeaderValueOption.HeaderAppendAction` (the deprecated `append:
/// true` is `AppendIfExistsOrAdd`, `append: false` is
/// `OverwriteIfExistsOrAdd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AppendAction {
    /// Add another value, whether or not the header exists.
    #[default]
    AppendIfExistsOrAdd,
    /// Add only when the header is absent.
    AddIfAbsent,
    /// Replace every existing value, or add.
    OverwriteIfExistsOrAdd,
    /// Replace every existing value; do nothing when absent.
    OverwriteIfExists,
}

/// Envoy `RouteMatch`: every condition must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteMatch {
    pub path: PathMatch,
    /// `case_sensitive` (default true); applies to `prefix`, `path` and
    /// `path_separated_prefix`, not to `safe_regex`.
    pub case_sensitive: bool,
    pub headers: Vec<HeaderMatcher>,
    pub query_parameters: Vec<QueryParameterMatcher>,
    /// `grpc: {}`: only requests whose `content-type` is gRPC's.
    pub grpc: bool,
    /// `runtime_fraction.default_value` (the runtime key is not consulted).
    pub runtime_fraction: Option<FractionalPercent>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// `prefix`.
    Prefix(String),
    /// `path`: the whole path, query excluded.
    Exact(String),
    /// `safe_regex`: must match the whole path, query excluded.
    Regex(String),
    /// `path_separated_prefix`: the path equals it, or continues with `/`.
    SeparatedPrefix(String),
}

impl RouteMatch {
    /// A match on `path` alone, case-sensitive (Envoy's default).
    pub fn path(path: PathMatch) -> Self {
        RouteMatch {
            path,
            case_sensitive: true,
            headers: Vec::new(),
            query_parameters: Vec::new(),
            grpc: false,
            runtime_fraction: None,
        }
    }
}

/// `prefix: ""`, case-sensitive: matches every request with a path.
impl Default for RouteMatch {
    fn default() -> Self {
        RouteMatch::path(PathMatch::default())
    }
}

impl Route {
    /// A route without header mutations or per-filter config.
    pub fn new(name: impl Into<String>, matcher: RouteMatch, action: RouteAction) -> Self {
        Route {
            name: name.into(),
            matcher,
            action,
            headers: HeaderMutations::default(),
            per_filter_config: Vec::new(),
            rate_limits: super::ratelimit::RouteRateLimits::default(),
        }
    }
}

impl ForwardAction {
    /// Forwarding to one cluster with Envoy's defaults (15 s timeout, 503
    /// when the cluster is missing, no rewrites, retries or mirrors).
    pub fn to_cluster(name: impl Into<String>) -> Self {
        ForwardAction {
            cluster: ClusterSpecifier::Name(name.into()),
            cluster_not_found_status: 503,
            timeout: Some(Duration::from_secs(15)),
            idle_timeout: None,
            prefix_rewrite: None,
            regex_rewrite: None,
            host_rewrite: None,
            grpc_timeout: None,
            max_stream_duration: None,
            retry_policy: None,
            hash_policy: Vec::new(),
            request_mirror_policies: Vec::new(),
            include_attempt_count: false,
        }
    }
}

impl Default for PathMatch {
    fn default() -> Self {
        PathMatch::Prefix(String::new())
    }
}

/// Envoy `HeaderMatcher`.
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderMatcher {
    /// Lower-cased; may be a pseudo-header (`:method`, `:authority`,
    /// `:path`, `:scheme`).
    pub name: String,
    pub rule: HeaderRule,
    /// `invert_match`. A missing header still fails (unless
    /// `treat_missing_as_empty`): only `present` rules see absence.
    pub invert: bool,
    /// `treat_missing_header_as_empty`.
    pub treat_missing_as_empty: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HeaderRule {
    /// `present_match` (or no specifier: present): true requires the header,
    /// false requires its absence.
    Present(bool),
    /// `string_match` or one of the deprecated `*_match` fields.
    String(StringMatch),
    /// `range_match`: a base-10 integer in `[start, end)`.
    Range { start: i64, end: i64 },
}

/// Envoy `StringMatcher` (without `custom`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StringMatch {
    pub pattern: StringPattern,
    /// `ignore_case` (ASCII); ignored for `Regex`, as in Envoy.
    pub ignore_case: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StringPattern {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    /// RE2 syntax; must match the whole value.
    Regex(String),
}

/// Envoy `QueryParameterMatcher`. Only the first occurrence of a repeated
/// key is considered, and values are compared as sent (not percent-decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryParameterMatcher {
    pub name: String,
    /// `None`: the key must be present (`present_match`, or no specifier).
    pub value: Option<StringMatch>,
}

/// Envoy `FractionalPercent`, `numerator / denominator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FractionalPercent {
    pub numerator: u32,
    /// 100, 10 000 or 1 000 000.
    pub denominator: u32,
}

// Built once per config; the size of a variant costs nothing per request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum RouteAction {
    /// Forward to a cluster.
    Forward(ForwardAction),
    /// Answer with a redirect.
    Redirect(RedirectAction),
    /// Answer locally.
    DirectResponse { status: u16, body: Option<String> },
}

/// Envoy `RouteAction`.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardAction {
    pub cluster: ClusterSpecifier,
    /// `cluster_not_found_response_code` (default 503).
    pub cluster_not_found_status: u16,
    /// `timeout` (default 15 s); `None` (written as 0s) disables.
    pub timeout: Option<Duration>,
    /// `idle_timeout`: `None` when unset (the connection manager's
    /// `stream_idle_timeout` applies), `Some(ZERO)` disables it for the route.
    pub idle_timeout: Option<Duration>,
    /// `prefix_rewrite`, if any.
    pub prefix_rewrite: Option<String>,
    /// `regex_rewrite`, if any (exclusive with `prefix_rewrite`).
    pub regex_rewrite: Option<RegexRewrite>,
    pub host_rewrite: Option<HostRewrite>,
    /// The deprecated `max_grpc_timeout`/`grpc_timeout_offset`: gRPC
    /// requests take their route timeout from `grpc-timeout`.
    pub grpc_timeout: Option<GrpcTimeout>,
    /// `max_stream_duration`.
    pub max_stream_duration: Option<MaxStreamDuration>,
    /// `retry_policy` (the virtual host's when the route has none); `None`
    /// means no retries unless the request asks with `x-envoy-retry-on`.
    pub retry_policy: Option<super::policy::RetryPolicy>,
    /// `hash_policy`, in order; empty when the route has none.
    pub hash_policy: Vec<super::policy::HashPolicy>,
    /// `request_mirror_policies` (the virtual host's when the route has none).
    pub request_mirror_policies: Vec<super::policy::MirrorPolicy>,
    /// The virtual host's `include_request_attempt_count`.
    pub include_attempt_count: bool,
}

/// Where a forwarded request goes.
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterSpecifier {
    /// `cluster`.
    Name(String),
    /// `cluster_header`: the first value of this (lower-cased) header.
    Header(String),
    /// `weighted_clusters`.
    Weighted(WeightedClusters),
}

/// Envoy `WeightedCluster`.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightedClusters {
    /// At least one; weights sum to more than 0 and fit in a `u32`.
    pub clusters: Vec<ClusterWeight>,
    /// `random_value_specifier.header_name`: a request header carrying the
    /// `u64` random value used to pick (else the request's own).
    pub random_value_header: Option<String>,
}

/// Envoy `WeightedCluster.ClusterWeight`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterWeight {
    /// `name`, or `cluster_header`.
    pub target: ClusterTarget,
    pub weight: u32,
    /// Applied before (default order) the route's own mutations.
    pub headers: HeaderMutations,
    /// `host_rewrite_literal`.
    pub host_rewrite_literal: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterTarget {
    Name(String),
    /// Lower-cased header name.
    Header(String),
}

/// Envoy `RegexMatchAndSubstitute`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegexRewrite {
    /// RE2 syntax; every non-overlapping match is replaced.
    pub pattern: String,
    /// RE2 rewrite syntax: `\0`..`\9` are capture groups, `\\` a backslash.
    pub substitution: String,
}

/// Envoy `RouteAction.host_rewrite_specifier`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRewrite {
    /// `host_rewrite_literal`.
    Literal(String),
    /// `auto_host_rewrite: true`: the chosen upstream host's name.
    Auto,
    /// `host_rewrite_header`: the first value of this header, when not empty.
    Header(String),
    /// `host_rewrite_path_regex`: a substitution over the path (no query).
    PathRegex(RegexRewrite),
}

/// `max_grpc_timeout` and `grpc_timeout_offset` (deprecated route fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcTimeout {
    /// `None` (written as 0s): the header's value is not capped.
    pub max: Option<Duration>,
    /// Subtracted when smaller than the header's value.
    pub offset: Option<Duration>,
}

/// Envoy `RouteAction.MaxStreamDuration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MaxStreamDuration {
    /// `None` when unset (the connection manager's applies); `Some(ZERO)`
    /// disables it for the route.
    pub max_stream_duration: Option<Duration>,
    /// When set, `grpc-timeout` gives the stream duration, capped by this
    /// (`ZERO`: uncapped).
    pub grpc_timeout_header_max: Option<Duration>,
    /// Subtracted from `grpc-timeout`; reaching zero times out at once.
    pub grpc_timeout_header_offset: Option<Duration>,
}

/// Envoy `RedirectAction`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectAction {
    /// `https_redirect` ("https") or `scheme_redirect` (lower-cased).
    pub scheme: Option<String>,
    /// `host_redirect`.
    pub host: Option<String>,
    /// `port_redirect`.
    pub port: Option<u16>,
    pub path: PathRedirect,
    /// `strip_query`.
    pub strip_query: bool,
    /// `response_code`: 301 (default), 302, 303, 307 or 308.
    pub status: u16,
}

/// Envoy `RedirectAction.path_rewrite_specifier`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PathRedirect {
    /// The request's path.
    #[default]
    Keep,
    /// `path_redirect`; a `?query` in it replaces the request's.
    Path(String),
    /// `prefix_rewrite`: the matched prefix is replaced.
    Prefix(String),
    /// `regex_rewrite`, on the path without its query.
    Regex(RegexRewrite),
}
