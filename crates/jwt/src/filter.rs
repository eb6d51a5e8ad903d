//! `envoy.filters.http.jwt_authn` as a chain member: picks the request's
//! requirement (per-route config, else the first matching rule), evaluates
//! it against the providers' key sets, and either lets the request on (with
//! the token removed, the payload forwarded and published as metadata) or
//! answers 401/403 through the one local-reply path.
//!
//! Key sets: local ones are parsed when the filter is built; remote ones
//! are cached per filter (a lock-free `ArcSwap` per provider) for
//! `cache_duration`. A request that needs a remote set that is missing or
//! expired pauses (never blocking its worker) while it is fetched.

use std::{
    sync::{Arc, Weak},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use arc_swap::ArcSwapOption;
use http::{HeaderValue, Method, StatusCode, header};
use strait_http::{
    Decision, FilterScope, HttpFilter, HttpFilterFactory, Reply, RequestHead,
    metadata::dynamic_metadata_mut,
};
use strait_model::{
    extension::Extension,
    jwt::{
        JWT_METADATA_NAMESPACE, JwksSource, JwtAuthentication, JwtPerRoute, RemoteJwks, type_url,
    },
};
use strait_upstream::ClusterRegistry;

use crate::{
    authn::{Authn, Edit, KeySource, Keys, NeedFetch, Outcome},
    fetch,
    jwks::Jwks,
    stats::JwtStats,
    status::Status,
};

/// Builds [`JwtFilter`]s from the model's [`JwtAuthentication`].
#[derive(Debug, Default, Clone, Copy)]
pub struct JwtFactory;

impl HttpFilterFactory for JwtFactory {
    fn type_url(&self) -> &str {
        type_url::JWT_AUTHN
    }

    fn per_route_type_url(&self) -> Option<&str> {
        Some(type_url::JWT_PER_ROUTE)
    }

    fn create(&self, config: &Extension) -> Result<Arc<dyn HttpFilter>, String> {
        build(config, None, "")
    }

    fn create_in(
        &self,
        config: &Extension,
        scope: &FilterScope<'_>,
    ) -> Result<Arc<dyn HttpFilter>, String> {
        build(config, scope.clusters.cloned(), scope.hcm_stat_prefix)
    }
}

/// The filter, with the clusters its remote key sets are fetched through.
fn build(
    config: &Extension,
    clusters: Option<Arc<strait_upstream::ClusterRegistry>>,
    hcm_stat_prefix: &str,
) -> Result<Arc<dyn HttpFilter>, String> {
    let config = config
        .get::<JwtAuthentication>()
        .ok_or("jwt_authn config of the wrong type")?;
    let filter = JwtFilter::new_in(config, clusters, hcm_stat_prefix)?;
    filter.start_async_fetches();
    Ok(Arc::new(filter))
}

/// A provider's keys as the filter keeps them.
enum ProviderKeys {
    Local(Result<Arc<Jwks>, Status>),
    Remote {
        config: RemoteJwks,
        cached: ArcSwapOption<Cached>,
    },
}

struct Cached {
    jwks: Arc<Jwks>,
    /// `None`: kept until the async fetcher replaces it.
    expires: Option<Instant>,
}

struct Inner {
    authn: Authn,
    keys: Vec<ProviderKeys>,
    clusters: Option<Arc<ClusterRegistry>>,
    stats: JwtStats,
}

/// The JWT authentication filter of one config version.
pub struct JwtFilter {
    inner: Arc<Inner>,
}

impl JwtFilter {
    /// Compiles `config`, reading local key files. `clusters`: where remote
    /// key sets are fetched (none: every remote fetch fails).
    pub fn new(
        config: &JwtAuthentication,
        clusters: Option<Arc<ClusterRegistry>>,
    ) -> Result<JwtFilter, String> {
        Self::new_in(config, clusters, "")
    }

    /// [`JwtFilter::new`] for a connection manager whose `stat_prefix` is
    /// `hcm_stat_prefix` (the label of the filter's counters).
    pub fn new_in(
        config: &JwtAuthentication,
        clusters: Option<Arc<ClusterRegistry>>,
        hcm_stat_prefix: &str,
    ) -> Result<JwtFilter, String> {
        let authn = Authn::compile(config)?;
        let keys = authn
            .providers
            .iter()
            .map(|p| {
                Ok(match &p.config.jwks {
                    // An unusable local set is accepted, as Envoy accepts
                    // it: its tokens then fail with the set's status.
                    JwksSource::Inline(text) => {
                        ProviderKeys::Local(Jwks::parse(text).map(Arc::new))
                    }
                    JwksSource::File(path) => {
                        let text = std::fs::read_to_string(path).map_err(|e| {
                            format!(
                                "providers[{}].local_jwks.filename {}: {e}",
                                p.name,
                                path.display()
                            )
                        })?;
                        ProviderKeys::Local(Jwks::parse(&text).map(Arc::new))
                    }
                    JwksSource::Remote(r) => ProviderKeys::Remote {
                        config: r.clone(),
                        cached: ArcSwapOption::empty(),
                    },
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(JwtFilter {
            inner: Arc::new(Inner {
                authn,
                keys,
                clusters,
                stats: JwtStats::new(hcm_stat_prefix),
            }),
        })
    }

    /// Starts the `async_fetch` fetchers: each fetches at once, then again
    /// every `cache_duration` (after a failure, `failed_refetch_duration`),
    /// and stops when the filter is dropped. Only with clusters and inside
    /// a runtime (not when configs are merely checked).
    fn start_async_fetches(&self) {
        let (Some(_), Ok(rt)) = (&self.inner.clusters, tokio::runtime::Handle::try_current())
        else {
            return;
        };
        for (i, k) in self.inner.keys.iter().enumerate() {
            let ProviderKeys::Remote { config, .. } = k else {
                continue;
            };
            let Some(async_fetch) = config.async_fetch.clone() else {
                continue;
            };
            let weak: Weak<Inner> = Arc::downgrade(&self.inner);
            let every = config.cache_duration;
            rt.spawn(async move {
                loop {
                    let Some(inner) = weak.upgrade() else { return };
                    let ok = inner.fetch(i, false).await.is_ok();
                    drop(inner);
                    let wait = if ok {
                        every
                    } else {
                        async_fetch.failed_refetch
                    };
                    tokio::time::sleep(wait).await;
                }
            });
        }
    }
}

impl Inner {
    /// Fetches provider `i`'s remote key set and caches it.
    async fn fetch(&self, i: usize, expires: bool) -> Result<Arc<Jwks>, ()> {
        let Some(ProviderKeys::Remote { config, cached }) = self.keys.get(i) else {
            return Err(());
        };
        let Some(clusters) = &self.clusters else {
            return Err(());
        };
        match fetch::fetch(clusters, config).await {
            Ok(jwks) => {
                self.stats.jwks_fetch_success.increment(1);
                let jwks = Arc::new(jwks);
                let expires = (expires && config.async_fetch.is_none())
                    .then(|| Instant::now() + config.cache_duration);
                cached.store(Some(Arc::new(Cached {
                    jwks: Arc::clone(&jwks),
                    expires,
                })));
                Ok(jwks)
            }
            Err(e) => {
                self.stats.jwks_fetch_failed.increment(1);
                tracing::warn!(error = %e, uri = %config.uri, "JWKS fetch failed");
                Err(())
            }
        }
    }
}

/// The key sets one request sees: the filter's, and what this request
/// fetched itself.
struct RequestKeys<'a> {
    inner: &'a Inner,
    fetched: &'a [(usize, Result<Arc<Jwks>, ()>)],
}

impl KeySource for RequestKeys<'_> {
    fn keys(&self, provider: usize) -> Keys {
        if let Some((_, r)) = self.fetched.iter().find(|(i, _)| *i == provider) {
            return match r {
                Ok(j) => Keys::Ready(Arc::clone(j)),
                Err(()) => Keys::FetchFailed,
            };
        }
        match self.inner.keys.get(provider) {
            Some(ProviderKeys::Local(Ok(j))) => Keys::Ready(Arc::clone(j)),
            Some(ProviderKeys::Local(Err(_))) | None => Keys::NoValidKeys,
            Some(ProviderKeys::Remote { cached, .. }) => match &*cached.load() {
                Some(c) if c.expires.is_none_or(|e| Instant::now() < e) => {
                    Keys::Ready(Arc::clone(&c.jwks))
                }
                _ => Keys::Fetch,
            },
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn is_cors_preflight(head: &http::request::Parts) -> bool {
    let nonempty = |h: header::HeaderName| head.headers.get(h).is_some_and(|v| !v.is_empty());
    head.method == Method::OPTIONS
        && nonempty(header::ORIGIN)
        && nonempty(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// `scheme://host/path` as Envoy's `buildOriginalUri` makes it for the
/// realm: `x-forwarded-proto`, the host, and the path cut at 256 bytes.
fn original_uri(head: &http::request::Parts) -> String {
    let proto = head
        .headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let host = head
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| head.headers.get(header::HOST).and_then(|v| v.to_str().ok()))
        .unwrap_or("");
    let path = head.uri.path_and_query().map_or("", |p| p.as_str());
    let mut cut = path.len().min(256);
    while !path.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{proto}://{host}{}", &path[..cut])
}

impl JwtFilter {
    fn finish<'a>(&self, req: &mut RequestHead<'_>, outcome: Outcome) -> Decision<'a> {
        let Outcome {
            result,
            edits,
            metadata,
            cache_lookups,
        } = outcome;
        let stats = &self.inner.stats;
        stats.jwt_cache_hit.increment(u64::from(cache_lookups.hits));
        stats
            .jwt_cache_miss
            .increment(u64::from(cache_lookups.misses));
        match &result {
            Ok(()) => stats.allowed.increment(1),
            Err(_) => stats.denied.increment(1),
        }
        for e in edits {
            match e {
                Edit::Remove(h) => {
                    req.head.headers.remove(h);
                }
                Edit::Append(h, v) => {
                    req.head.headers.append(h, v);
                }
                Edit::RemoveParam(key) => {
                    let pq = req.head.uri.path_and_query().map_or("/", |p| p.as_str());
                    let stripped = crate::authn::without_param(pq, &key);
                    let mut parts = req.head.uri.clone().into_parts();
                    if let Ok(p) = stripped.parse() {
                        parts.path_and_query = Some(p);
                        if let Ok(uri) = http::Uri::from_parts(parts) {
                            req.head.uri = uri;
                        }
                    }
                }
            }
        }
        if !metadata.is_empty() {
            let md = dynamic_metadata_mut(req.state);
            for (k, v) in metadata {
                md.set(JWT_METADATA_NAMESPACE, k, v);
            }
        }
        match result {
            Ok(()) => Decision::Continue,
            Err(status) => {
                let status = status.unwrap_or(Status::JwtVerificationFail);
                Decision::Respond(self.refusal(req.head, status))
            }
        }
    }

    /// Envoy's answer for a failed verification.
    fn refusal(&self, head: &http::request::Parts, status: Status) -> Reply {
        let reply = Reply::new(status.http_status()).details(status.details());
        if self.inner.authn.strip_failure_response {
            return reply;
        }
        let mut realm = format!("Bearer realm=\"{}\"", original_uri(head));
        if status != Status::JwtMissed {
            realm.push_str(", error=\"invalid_token\"");
        }
        let reply = reply.body(status.message());
        match HeaderValue::from_str(&realm) {
            Ok(v) => reply.header(header::WWW_AUTHENTICATE, v),
            Err(_) => reply,
        }
    }
}

impl HttpFilter for JwtFilter {
    fn on_request<'a>(&'a self, req: &'a mut RequestHead<'_>) -> Decision<'a> {
        let authn = &self.inner.authn;
        if authn.bypass_cors_preflight && is_cors_preflight(req.head) {
            self.inner.stats.cors_preflight_bypassed.increment(1);
            return Decision::Continue;
        }
        let requirement = match req.route_config::<JwtPerRoute>() {
            Some(JwtPerRoute::Disabled) => return Decision::Continue,
            Some(JwtPerRoute::RequirementName(name)) => match authn.named(name) {
                Some(r) => r,
                None => {
                    let known: Vec<&str> = authn.requirement_names().collect();
                    let msg = format!(
                        "Wrong requirement_name: {name}. It should be one of [{}]",
                        known.join(",")
                    );
                    let reply = Reply::new(StatusCode::FORBIDDEN)
                        .details("jwt_authn_access_denied{Wrong_requirement_name}");
                    return Decision::Respond(if authn.strip_failure_response {
                        reply
                    } else {
                        reply.body(format!("Failed JWT authentication: {msg}"))
                    });
                }
            },
            None => {
                let view = strait_route::RequestView::from_parts(req.head);
                match authn.select(&view) {
                    Some(r) => r,
                    // No rule: Envoy completes without a verifier, and
                    // counts the request as allowed.
                    None => {
                        self.inner.stats.allowed.increment(1);
                        return Decision::Continue;
                    }
                }
            }
        };
        let now = unix_now();
        let keys = RequestKeys {
            inner: &self.inner,
            fetched: &[],
        };
        let path = req.head.uri.path_and_query().map_or("", |p| p.as_str());
        match authn.evaluate(requirement, &req.head.headers, path, now, &keys) {
            Ok(outcome) => self.finish(req, outcome),
            Err(NeedFetch(first)) => Decision::Pause(Box::pin(async move {
                let mut fetched: Vec<(usize, Result<Arc<Jwks>, ()>)> = Vec::new();
                let mut need = first;
                loop {
                    let got = self.inner.fetch(need, true).await;
                    fetched.push((need, got));
                    let keys = RequestKeys {
                        inner: &self.inner,
                        fetched: &fetched,
                    };
                    let path = req.head.uri.path_and_query().map_or("", |p| p.as_str());
                    match authn.evaluate(requirement, &req.head.headers, path, now, &keys) {
                        Ok(outcome) => return self.finish(req, outcome),
                        // Each provider is fetched at most once per request:
                        // a second need is answered from `fetched`.
                        Err(NeedFetch(next)) => need = next,
                    }
                }
            })),
        }
    }
}
