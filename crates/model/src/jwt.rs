//! JWT authentication (`envoy.filters.http.jwt_authn`) and Istio's legacy
//! `istio_authn` HTTP filter, as validated data. `strait-jwt` runs them.

use std::{path::PathBuf, time::Duration};

use crate::RouteMatch;

/// The type URLs of the JWT filters' configs.
pub mod type_url {
    /// `envoy.filters.http.jwt_authn`: [`super::JwtAuthentication`].
    pub const JWT_AUTHN: &str =
        "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication";
    /// Its per-route config: [`super::JwtPerRoute`].
    pub const JWT_PER_ROUTE: &str =
        "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig";
    /// Istio's `istio_authn` HTTP filter (Istio <= 1.10): [`super::IstioAuthn`].
    pub const ISTIO_AUTHN: &str =
        "type.googleapis.com/istio.envoy.config.filter.http.authn.v2alpha1.FilterConfig";
}

/// The dynamic-metadata namespace the JWT filter writes payloads under.
pub const JWT_METADATA_NAMESPACE: &str = "envoy.filters.http.jwt_authn";
/// The namespace Istio's `istio_authn` filter writes its result under.
pub const ISTIO_AUTHN_NAMESPACE: &str = "istio_authn";

/// `JwtAuthentication`.
#[derive(Debug, Clone, PartialEq)]
pub struct JwtAuthentication {
    /// `providers`, sorted by name (the proto's map has no order).
    pub providers: Vec<(String, JwtProvider)>,
    /// `rules`, in order: the first whose match fits the request decides.
    pub rules: Vec<RequirementRule>,
    /// `requirement_map`, sorted by name: what rules and per-route configs
    /// name.
    pub requirement_map: Vec<(String, JwtRequirement)>,
    /// `bypass_cors_preflight`.
    pub bypass_cors_preflight: bool,
    /// `strip_failure_response`: failures answer without body or
    /// `www-authenticate`.
    pub strip_failure_response: bool,
}

impl JwtAuthentication {
    pub fn provider(&self, name: &str) -> Option<&JwtProvider> {
        self.providers
            .iter()
            .find_map(|(n, p)| (n == name).then_some(p))
    }

    pub fn requirement(&self, name: &str) -> Option<&JwtRequirement> {
        self.requirement_map
            .iter()
            .find_map(|(n, r)| (n == name).then_some(r))
    }
}

/// `JwtProvider`.
#[derive(Debug, Clone, PartialEq)]
pub struct JwtProvider {
    /// `issuer`; empty allows any `iss`.
    pub issuer: String,
    /// `audiences`; empty allows any `aud`.
    pub audiences: Vec<String>,
    pub jwks: JwksSource,
    /// `forward`: keep the token in the request.
    pub forward: bool,
    /// `from_headers`, `from_params`, `from_cookies`; all empty means
    /// Envoy's defaults (`Authorization: Bearer` and `access_token`).
    pub from_headers: Vec<JwtHeader>,
    pub from_params: Vec<String>,
    pub from_cookies: Vec<String>,
    /// `forward_payload_header`; empty for none.
    pub forward_payload_header: String,
    pub pad_forward_payload_header: bool,
    /// `payload_in_metadata`; empty for none.
    pub payload_in_metadata: String,
    /// `normalize_payload_in_metadata.space_delimited_claims`: top-level
    /// string claims written to the metadata as lists of their
    /// space-separated words (RFC 8693's `scope`).
    pub space_delimited_claims: Vec<String>,
    /// `header_in_metadata`; empty for none.
    pub header_in_metadata: String,
    /// `clock_skew_seconds` (0 in the config means Envoy's 60).
    pub clock_skew_seconds: u64,
    /// `claim_to_headers`.
    pub claim_to_headers: Vec<ClaimToHeader>,
    /// `jwt_cache_config` given: cache verified tokens (its size).
    pub jwt_cache_size: Option<u32>,
}

/// `JwtHeader`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtHeader {
    /// Lower-cased.
    pub name: String,
    pub value_prefix: String,
}

/// `JwtClaimToHeader`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimToHeader {
    /// Lower-cased.
    pub header_name: String,
    /// Dotted path into the payload (`a.b`).
    pub claim_name: String,
}

/// Where a provider's keys come from.
#[derive(Debug, Clone, PartialEq)]
pub enum JwksSource {
    /// `local_jwks` given inline.
    Inline(String),
    /// `local_jwks.filename`: read when the config is applied.
    File(PathBuf),
    /// `remote_jwks`.
    Remote(RemoteJwks),
}

/// `RemoteJwks`.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteJwks {
    /// `http_uri.uri`.
    pub uri: String,
    /// `http_uri.cluster`.
    pub cluster: String,
    /// `http_uri.timeout`.
    pub timeout: Duration,
    /// `cache_duration` (default 10 minutes).
    pub cache_duration: Duration,
    /// `async_fetch`.
    pub async_fetch: Option<JwksAsyncFetch>,
    /// `retry_policy`.
    pub retry: Option<JwksRetry>,
}

/// `JwksAsyncFetch`.
#[derive(Debug, Clone, PartialEq)]
pub struct JwksAsyncFetch {
    pub fast_listener: bool,
    /// `failed_refetch_duration` (default 1 s).
    pub failed_refetch: Duration,
}

/// `RetryPolicy` of a remote JWKS fetch.
#[derive(Debug, Clone, PartialEq)]
pub struct JwksRetry {
    /// `num_retries` (default 1).
    pub num_retries: u32,
    /// `retry_back_off.base_interval` (default 1 s, as Envoy's JWKS fetcher).
    pub base_interval: Duration,
    /// `retry_back_off.max_interval` (default 10 × base).
    pub max_interval: Duration,
}

/// `JwtRequirement`.
#[derive(Debug, Clone, PartialEq)]
pub enum JwtRequirement {
    /// `provider_name`, or `provider_and_audiences` (audiences replacing
    /// the provider's).
    Provider {
        name: String,
        audiences: Option<Vec<String>>,
    },
    RequiresAny(Vec<JwtRequirement>),
    RequiresAll(Vec<JwtRequirement>),
    AllowMissingOrFailed,
    AllowMissing,
    /// No requirement type set: everything passes.
    AllowAll,
}

/// `RequirementRule`.
#[derive(Debug, Clone, PartialEq)]
pub struct RequirementRule {
    pub route_match: RouteMatch,
    /// `None`: the rule matches and nothing is verified.
    pub requirement: Option<RuleRequirement>,
}

/// What a rule requires.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleRequirement {
    Inline(JwtRequirement),
    /// `requirement_name`, a key of `requirement_map`.
    Named(String),
}

/// `PerRouteConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtPerRoute {
    /// `disabled: true`.
    Disabled,
    /// `requirement_name`.
    RequirementName(String),
}

/// Istio's `istio.envoy.config.filter.http.authn.v2alpha1.FilterConfig`
/// (`istio_authn`, Istio <= 1.10): turns the JWT filter's verified
/// payloads into the `istio_authn` metadata Istio's RBAC rules read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IstioAuthn {
    /// `policy.origins[].jwt.issuer`, in order.
    pub origins: Vec<String>,
    /// `policy.origin_is_optional`.
    pub origin_is_optional: bool,
    /// `policy.principal_binding` is `USE_ORIGIN` (else `USE_PEER`).
    pub principal_from_origin: bool,
    /// `policy.peers` has an mTLS method (PERMISSIVE: it never refuses,
    /// it records the peer's principal).
    pub peer_mtls: bool,
}
