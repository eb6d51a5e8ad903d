//! The filter: decides whether a request is checked, pauses it for the
//! call, and applies the verdict.

use std::{collections::HashMap, sync::Arc};

use envoy_types::pb::envoy::config::core::v3::Metadata;
use http::{HeaderName, HeaderValue, StatusCode, header};
use strait_envoy::pbjson;
use strait_http::{
    BodyBuffering, Decision, HttpFilter, Reply, RequestHead, ResponseHead,
    metadata::{dynamic_metadata, dynamic_metadata_mut},
};
use strait_model::ext_authz::{AuthzService, BufferSettings, ExtAuthz, ExtAuthzPerRoute};

use crate::{
    check::{self, Allow, Facts, Verdict},
    client,
    stats::{FilterStats, Outcome},
};

/// The namespace of the metadata an allowing answer publishes.
const NAMESPACE: &str = "envoy.filters.http.ext_authz";

static FAILURE_MODE_ALLOWED: HeaderName =
    HeaderName::from_static("x-envoy-auth-failure-mode-allowed");

/// One configured ext_authz filter, shared by every request of its chain.
pub(crate) struct ExtAuthzFilter {
    config: Arc<ExtAuthz>,
    stats: FilterStats,
}

/// Response headers an allowing answer asked for, kept for `on_response`.
#[derive(Clone)]
struct AddToResponse(Vec<(HeaderName, HeaderValue)>);

impl ExtAuthzFilter {
    pub(crate) fn new(config: ExtAuthz, hcm_stat_prefix: &str) -> Self {
        let stats = FilterStats::new(hcm_stat_prefix, &config.stat_prefix);
        ExtAuthzFilter {
            config: Arc::new(config),
            stats,
        }
    }

    /// `with_request_body` for this route: the route's check settings may
    /// replace or turn off the filter's.
    fn buffering(&self, req: &RequestHead<'_>) -> Option<BufferSettings> {
        let mut settings = self.config.with_request_body;
        for level in req.route_configs::<ExtAuthzPerRoute>().rev() {
            if let ExtAuthzPerRoute::CheckSettings {
                disable_request_body_buffering,
                with_request_body,
                ..
            } = level
            {
                if *disable_request_body_buffering {
                    settings = None;
                } else if with_request_body.is_some() {
                    settings = *with_request_body;
                }
            }
        }
        settings
    }

    fn disabled_for_route(req: &RequestHead<'_>) -> bool {
        matches!(
            req.route_config::<ExtAuthzPerRoute>(),
            Some(ExtAuthzPerRoute::Disabled)
        )
    }

    /// `filter_enabled` and `filter_enabled_metadata`.
    fn enabled(&self, req: &RequestHead<'_>) -> bool {
        let c = &self.config;
        if let Some(m) = &c.filter_enabled_metadata {
            let path: Vec<&str> = m.path.iter().map(String::as_str).collect();
            let value = dynamic_metadata(req.state).and_then(|md| md.get(&m.filter, &path));
            if !m.matches(value) {
                return false;
            }
        }
        c.filter_enabled.per_million >= 1_000_000
            || strait_codec::headers::random_u64() % 1_000_000
                < u64::from(c.filter_enabled.per_million)
    }

    /// The request as the service will see it, and the call.
    async fn check(&self, req: &RequestHead<'_>, buffer: Option<BufferSettings>) -> Verdict {
        let c = &self.config;
        let mut context_extensions = HashMap::new();
        for level in req.route_configs::<ExtAuthzPerRoute>().rev() {
            if let ExtAuthzPerRoute::CheckSettings {
                context_extensions: ext,
                ..
            } = level
            {
                context_extensions.extend(ext.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        let metadata_context = dynamic_metadata(req.state).and_then(|md| {
            let filter_metadata: HashMap<_, _> = c
                .metadata_context_namespaces
                .iter()
                .filter_map(|ns| Some((ns.clone(), pbjson::json_to_struct(md.namespace(ns)?))))
                .collect();
            (!filter_metadata.is_empty()).then(|| Metadata {
                filter_metadata,
                ..Default::default()
            })
        });
        let facts = Facts {
            head: req.head,
            peer: req.info.peer,
            local: req.info.local,
            tls: req.info.tls,
            principal: check::principal(req.info.peer_cert),
            body: req.body,
            buffer,
            context_extensions,
            metadata_context,
        };
        let upstreams = req.info.upstreams;
        match &c.service {
            AuthzService::Grpc {
                cluster,
                authority,
                initial_metadata,
            } => {
                let body = check::grpc_request(c, &facts);
                let call = client::GrpcCall {
                    cluster,
                    authority,
                    initial_metadata,
                    timeout: c.timeout,
                };
                call.check(upstreams, body).await
            }
            AuthzService::Http(service) => {
                let call = check::http_request(service, &facts);
                let authority = check::authority(req.head);
                match client::call_cluster(
                    upstreams,
                    &service.cluster,
                    &authority,
                    call,
                    c.timeout,
                    false,
                )
                .await
                {
                    Ok(a) => check::http_verdict(service, a.head.status, &a.head.headers, a.body),
                    Err(e) => client::failed(&service.cluster, &e),
                }
            }
        }
    }

    /// The verdict applied: the request goes on (changed) or is answered.
    fn apply<'x>(&self, req: &mut RequestHead<'_>, verdict: Verdict) -> Decision<'x> {
        let c = &self.config;
        let stats = &self.stats;
        let outcome = match &verdict {
            Verdict::Allow(_) => Outcome::Ok,
            Verdict::Deny { .. } => Outcome::Denied,
            Verdict::Error => Outcome::Error,
        };
        stats.cluster(req.info.cluster, req.info.upstreams, outcome);
        match verdict {
            Verdict::Allow(allow) => {
                stats.ok.increment(1);
                allowed(req, allow);
                Decision::Continue
            }
            Verdict::Deny {
                status,
                headers,
                body,
            } => {
                stats.denied.increment(1);
                Decision::Respond(
                    Reply::new(status)
                        .body(body)
                        .headers(headers)
                        .flag("UAEX")
                        .details("ext_authz_denied"),
                )
            }
            Verdict::Error if c.failure_mode_allow => {
                stats.error.increment(1);
                stats.failure_mode_allowed.increment(1);
                stats.cluster(
                    req.info.cluster,
                    req.info.upstreams,
                    Outcome::FailureModeAllowed,
                );
                if c.failure_mode_allow_header_add {
                    req.head.headers.insert(
                        FAILURE_MODE_ALLOWED.clone(),
                        HeaderValue::from_static("true"),
                    );
                }
                Decision::Continue
            }
            Verdict::Error => {
                stats.error.increment(1);
                Decision::Respond(
                    Reply::new(status(c.status_on_error))
                        .flag("UAEX")
                        .details("ext_authz_error"),
                )
            }
        }
    }
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::FORBIDDEN)
}

/// An allowing answer's changes to the request (and, later, the response).
fn allowed(req: &mut RequestHead<'_>, allow: Allow) {
    let h = &mut req.head.headers;
    for (n, v) in allow.set {
        h.insert(n, v);
    }
    for (n, v) in allow.append {
        // Comma-joined to a header the request has; an absent one is added
        // only where Envoy adds it (see `Allow::append_adds_missing`).
        match h.get(&n).and_then(|old| old.to_str().ok()) {
            Some(old) => {
                let joined = format!("{old},{}", v.to_str().unwrap_or_default());
                if let Ok(j) = HeaderValue::from_str(&joined) {
                    h.insert(n, j);
                }
            }
            None if allow.append_adds_missing => {
                h.insert(n, v);
            }
            None => {}
        }
    }
    for n in allow.remove {
        // Pseudo-headers and Host cannot be removed.
        if n != header::HOST {
            h.remove(n);
        }
    }
    if !allow.query_set.is_empty() || !allow.query_remove.is_empty() {
        set_query(&mut req.head.uri, &allow.query_set, &allow.query_remove);
    }
    if let Some(md) = allow.metadata {
        let out = dynamic_metadata_mut(req.state);
        for (k, v) in md {
            out.set(NAMESPACE, k, v);
        }
    }
    if !allow.response_add.is_empty() {
        req.state.insert(AddToResponse(allow.response_add));
    }
}

/// Sets and removes query parameters (by exact key) of `uri`.
fn set_query(uri: &mut http::Uri, set: &[(String, String)], remove: &[String]) {
    let path = uri.path().to_owned();
    let mut params: Vec<(String, String)> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (p.to_owned(), String::new()),
        })
        .filter(|(k, _)| !remove.contains(k))
        .collect();
    for (k, v) in set {
        match params.iter_mut().find(|(pk, _)| pk == k) {
            Some(p) => p.1.clone_from(v),
            None => params.push((k.clone(), v.clone())),
        }
    }
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let pq = if query.is_empty() {
        path
    } else {
        format!("{path}?{}", query.join("&"))
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = pq.parse().ok();
    if let Ok(u) = http::Uri::from_parts(parts) {
        *uri = u;
    }
}

impl HttpFilter for ExtAuthzFilter {
    fn request_body(&self, req: &RequestHead<'_>) -> Option<BodyBuffering> {
        if Self::disabled_for_route(req) || !self.enabled(req) {
            return None;
        }
        // An upgrade's body is a tunnel: nothing to buffer (as Envoy).
        if req.head.headers.contains_key(header::UPGRADE) {
            return None;
        }
        self.buffering(req).map(|b| BodyBuffering {
            max_bytes: b.max_request_bytes as usize,
            allow_partial: b.allow_partial_message,
        })
    }

    fn on_request<'a>(&'a self, req: &'a mut RequestHead<'_>) -> Decision<'a> {
        if Self::disabled_for_route(req) {
            return Decision::Continue;
        }
        if !self.enabled(req) {
            self.stats.disabled.increment(1);
            if self.config.deny_at_disable {
                return Decision::Respond(
                    Reply::new(status(self.config.status_on_error))
                        .flag("UAEX")
                        .details("ext_authz_disabled"),
                );
            }
            return Decision::Continue;
        }
        let buffer = self.buffering(req);
        Decision::Pause(Box::pin(async move {
            let verdict = self.check(req, buffer).await;
            self.apply(req, verdict)
        }))
    }

    fn on_response(&self, resp: &mut ResponseHead<'_>) {
        if let Some(AddToResponse(add)) = resp.state.get::<AddToResponse>() {
            for (n, v) in add {
                resp.headers.append(n.clone(), v.clone());
            }
        }
    }
}
