//! `envoy.filters.http.ext_authz`: ask an authorization service (gRPC
//! `envoy.service.auth.v3.Authorization/Check`, or plain HTTP) before a
//! request goes on. Istio's AuthorizationPolicy CUSTOM action renders it.

use std::{collections::BTreeMap, time::Duration};

use crate::{
    HeaderToAdd,
    policy::{Fraction, MetadataMatcher, ValueMatcher},
};

/// The filter's config.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtAuthz {
    pub service: AuthzService,
    /// The call's timeout (`grpc_service.timeout` or
    /// `http_service.server_uri.timeout`; Envoy's default 200 ms).
    pub timeout: Duration,
    /// `failure_mode_allow`: a failed call lets the request through.
    pub failure_mode_allow: bool,
    /// `failure_mode_allow_header_add`: such a request carries
    /// `x-envoy-auth-failure-mode-allowed: true`.
    pub failure_mode_allow_header_add: bool,
    /// `status_on_error` (default 403).
    pub status_on_error: u16,
    /// `with_request_body`.
    pub with_request_body: Option<BufferSettings>,
    /// `stat_prefix`: stats are `ext_authz.<prefix>.*` instead of `ext_authz.*`.
    pub stat_prefix: String,
    /// `filter_enabled`'s default value (the share of requests checked).
    pub filter_enabled: Fraction,
    /// `filter_enabled_metadata`: check only requests whose dynamic
    /// metadata matches.
    pub filter_enabled_metadata: Option<MetadataMatcher>,
    /// `deny_at_disable`'s default value: a request the filter is disabled
    /// for is denied instead of let through.
    pub deny_at_disable: bool,
    /// `metadata_context_namespaces`: dynamic metadata sent along.
    pub metadata_context_namespaces: Vec<String>,
    /// `allowed_headers` / `disallowed_headers`: which request headers the
    /// check carries (all but `disallowed` when `allowed` is empty).
    pub allowed_headers: Vec<ValueMatcher>,
    pub disallowed_headers: Vec<ValueMatcher>,
}

/// `with_request_body`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferSettings {
    pub max_request_bytes: u32,
    pub allow_partial_message: bool,
    /// `pack_as_bytes`: the body goes in `raw_body` rather than `body`.
    pub pack_as_bytes: bool,
}

/// Where the check goes.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthzService {
    /// `grpc_service.envoy_grpc`: `Authorization/Check` on `cluster`.
    Grpc {
        cluster: String,
        /// `:authority` of the call (the cluster name when empty).
        authority: String,
        /// `grpc_service.initial_metadata`.
        initial_metadata: Vec<(String, String)>,
    },
    /// `http_service`.
    Http(HttpService),
}

/// `http_service`: the request's method, path (after `path_prefix`) and
/// allowed headers go to `cluster`; a 200 allows, anything else denies
/// with that answer.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpService {
    pub cluster: String,
    pub path_prefix: String,
    /// `authorization_request.allowed_headers` (besides `authorization`,
    /// `:method`, `:path` and `:authority`, always sent).
    pub allowed_request_headers: Vec<ValueMatcher>,
    /// `authorization_request.headers_to_add` (literal values).
    pub request_headers_to_add: Vec<HeaderToAdd>,
    /// `authorization_response.allowed_upstream_headers`: set on the request.
    pub allowed_upstream_headers: Vec<ValueMatcher>,
    /// `authorization_response.allowed_upstream_headers_to_append`.
    pub allowed_upstream_headers_to_append: Vec<ValueMatcher>,
    /// `authorization_response.allowed_client_headers`: on a denial's
    /// answer (every header but `host` when empty).
    pub allowed_client_headers: Vec<ValueMatcher>,
    /// `authorization_response.allowed_client_headers_on_success`: added
    /// to the upstream's response.
    pub allowed_client_headers_on_success: Vec<ValueMatcher>,
    /// `authorization_response.dynamic_metadata_from_headers`.
    pub dynamic_metadata_from_headers: Vec<ValueMatcher>,
}

/// `ExtAuthzPerRoute`.
#[derive(Debug, Clone, PartialEq)]
pub enum ExtAuthzPerRoute {
    Disabled,
    CheckSettings {
        /// `context_extensions`, merged from the least to the most specific
        /// level.
        context_extensions: BTreeMap<String, String>,
        /// `disable_request_body_buffering`.
        disable_request_body_buffering: bool,
        /// `with_request_body`, replacing the filter's.
        with_request_body: Option<BufferSettings>,
    },
}

/// `envoy.filters.network.ext_authz`: a new connection is checked once
/// (its addresses and, over mutual TLS, the peer's principal) before the
/// terminal filter sees it; a denial or a failed call closes it.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkExtAuthz {
    /// `grpc_service.envoy_grpc.cluster_name`.
    pub cluster: String,
    /// `:authority` of the call (the cluster name when empty).
    pub authority: String,
    pub initial_metadata: Vec<(String, String)>,
    /// `grpc_service.timeout` (Envoy's default 200 ms).
    pub timeout: Duration,
    pub failure_mode_allow: bool,
    /// Stats are `ext_authz.<stat_prefix>.*`.
    pub stat_prefix: String,
    /// Check only connections whose dynamic metadata (written by earlier
    /// read filters: Istio's CUSTOM action keys on network RBAC's shadow
    /// verdict) matches.
    pub filter_enabled_metadata: Option<MetadataMatcher>,
    /// `metadata_context_namespaces`: the connection's dynamic metadata sent along.
    pub metadata_context_namespaces: Vec<String>,
}
