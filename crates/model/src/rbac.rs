//! Role-based access control: Envoy's `config.rbac.v3.RBAC` and the HTTP and
//! network RBAC filters that carry it. Pure data; `strait-rbac` compiles it
//! into its engine and runs the filters.
//!
//! Envoy's semantics, which the engine keeps: a policy matches when any of
//! its permissions and any of its principals match; policies are tried in
//! name order (Envoy keeps them in an ordered map) and the first that
//! matches is the "effective policy". ALLOW lets a request through when a
//! policy matched, DENY when none did, LOG always (it only marks the
//! request for the access log).

use std::time::Duration;

use crate::{
    policy::{HeaderCondition, ValueMatcher},
    tls::CidrRange,
};

/// The RBAC filters' type URLs.
pub mod type_url {
    /// `envoy.filters.http.rbac`: [`super::HttpRbac`].
    pub const HTTP: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
    /// Its per-route config: [`super::HttpRbacPerRoute`].
    pub const HTTP_PER_ROUTE: &str =
        "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute";
    /// `envoy.filters.network.rbac`: [`super::NetworkRbac`].
    pub const NETWORK: &str = "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC";
}

/// `config.rbac.v3.RBAC.Action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Action {
    #[default]
    Allow,
    Deny,
    /// Allows everything; a matching policy marks the request for the
    /// access log (`envoy.common` `access_log_hint`).
    Log,
}

/// `config.rbac.v3.RBAC`: an action and its policies.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rules {
    pub action: Action,
    /// Sorted by name: the order Envoy tries them in.
    pub policies: Vec<Policy>,
}

/// `config.rbac.v3.Policy` (without CEL conditions, which are refused).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    /// Any of them must match (an empty list matches nothing).
    pub permissions: Vec<Permission>,
    /// Any of them must match (an empty list matches nothing).
    pub principals: Vec<Principal>,
}

/// `config.rbac.v3.Permission`: what the request or connection is for.
#[derive(Debug, Clone, PartialEq)]
pub enum Permission {
    And(Vec<Permission>),
    Or(Vec<Permission>),
    Not(Box<Permission>),
    Any,
    /// A request header (pseudo-headers `:method`, `:path`, `:authority`,
    /// `:scheme` included); a connection has none.
    Header(HeaderCondition),
    /// The request path without its query and fragment.
    UrlPath(ValueMatcher),
    /// The connection's (original) destination address.
    DestinationIp(CidrRange),
    DestinationPort(u16),
    /// `[start, end)`.
    DestinationPortRange {
        start: u32,
        end: u32,
    },
    /// The TLS server name the client asked for (empty without SNI).
    RequestedServerName(ValueMatcher),
    /// Dynamic metadata (`metadata`, or `sourced_metadata` from DYNAMIC).
    Metadata(MetadataMatcher),
}

/// `config.rbac.v3.Principal`: who is asking.
#[derive(Debug, Clone, PartialEq)]
pub enum Principal {
    And(Vec<Principal>),
    Or(Vec<Principal>),
    Not(Box<Principal>),
    Any,
    /// A TLS connection; with a name, one the peer certificate's URI SANs,
    /// then DNS SANs, then subject match.
    Authenticated(Option<ValueMatcher>),
    /// The connection's remote address (`source_ip`, deprecated in Envoy
    /// but still rendered).
    SourceIp(CidrRange),
    /// The peer address of the socket.
    DirectRemoteIp(CidrRange),
    /// The client address after `x-forwarded-for` handling (the peer for a
    /// connection).
    RemoteIp(CidrRange),
    Header(HeaderCondition),
    UrlPath(ValueMatcher),
    Metadata(MetadataMatcher),
    /// `filter_state` with key `io.istio.peer_principal` (Istio >= 1.18's
    /// source principals): the value Istio's network `istio_authn` filter
    /// records, the peer certificate's SPIFFE URI SAN. No other filter
    /// state key is supported.
    IstioPeerPrincipal(ValueMatcher),
}

/// `type.matcher.v3.MetadataMatcher` over the request's dynamic metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataMatcher {
    /// The namespace (`filter`), e.g. `envoy.filters.http.jwt_authn`.
    pub filter: String,
    /// Keys into nested structs; at least one.
    pub path: Vec<String>,
    pub value: MetadataValue,
    /// `invert`: also true when the value is missing and the matcher would
    /// not match it.
    pub invert: bool,
}

/// `type.matcher.v3.ValueMatcher`, over a `google.protobuf.Value`.
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataValue {
    /// `null_match`: the value is null.
    Null,
    /// `double_match` `exact`.
    DoubleExact(f64),
    /// `double_match` `range`: `[start, end)`.
    DoubleRange {
        start: f64,
        end: f64,
    },
    String(ValueMatcher),
    Bool(bool),
    /// `present_match`: true matches any value that is set; false nothing.
    Present(bool),
    /// `list_match` `one_of`: the value is a list with a matching element.
    ListOneOf(Box<MetadataValue>),
    /// `or_match`: any of them.
    Or(Vec<MetadataValue>),
}

/// `envoy.extensions.filters.http.rbac.v3.RBAC`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HttpRbac {
    /// `rules`: `None` enforces nothing; present but without policies, an
    /// ALLOW denies everything.
    pub rules: Option<Rules>,
    /// `shadow_rules`: evaluated for stats and dynamic metadata only.
    pub shadow_rules: Option<Rules>,
    /// `rules_stat_prefix`: inserted after `rbac.` in the stat names.
    pub rules_stat_prefix: String,
    /// `shadow_rules_stat_prefix`: prefixes the shadow stats and the shadow
    /// dynamic metadata keys.
    pub shadow_rules_stat_prefix: String,
}

/// `envoy.extensions.filters.http.rbac.v3.RBACPerRoute`: the route's own
/// rules in place of the filter's; `None` turns RBAC off for the route.
/// Stats stay the filter's (Envoy counts per filter, not per route).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HttpRbacPerRoute {
    pub rbac: Option<HttpRbac>,
}

/// `envoy.extensions.filters.network.rbac.v3.RBAC`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NetworkRbac {
    pub rules: Option<Rules>,
    pub shadow_rules: Option<Rules>,
    /// `stat_prefix`: the stats are `<stat_prefix>rbac.allowed`, ...
    pub stat_prefix: String,
    pub shadow_rules_stat_prefix: String,
    /// `delay_deny`: how long a denied connection is held (reading
    /// nothing) before it is closed.
    pub delay_deny: Option<Duration>,
}
