//! The requirement tree of a `JwtAuthentication`, compiled once, and its
//! evaluation for one request: where tokens are looked for (Envoy's
//! extractor), how each is checked (Envoy's authenticator) and how
//! `requires_any` / `requires_all` / `allow_missing` combine the results
//! (Envoy's verifiers).
//!
//! Evaluation is pure: it reads the request head, the clock it is given and
//! the key sets it can see, and returns the header edits and metadata to
//! apply. When a remote key set must be fetched first it says so
//! ([`NeedFetch`]) and is run again once the fetch is done.

use std::{collections::BTreeMap, sync::Arc};

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};
use strait_model::jwt::{
    JwtAuthentication, JwtProvider, JwtRequirement, RequirementRule, RuleRequirement,
};
use strait_route::RequestMatcher;

use crate::{
    jwks::Jwks,
    status::Status,
    token::{Jwt, audiences_allowed},
    verify::verify_signature,
};

/// Envoy's default clock skew.
const DEFAULT_SKEW: u64 = 60;

/// The key set of one provider, as a request sees it.
pub enum Keys {
    Ready(Arc<Jwks>),
    /// A local set without one usable key.
    NoValidKeys,
    /// A remote set not fetched yet or expired.
    Fetch,
    /// This request's fetch failed.
    FetchFailed,
}

/// Where evaluation finds key sets, by provider index.
pub trait KeySource {
    fn keys(&self, provider: usize) -> Keys;
}

/// A remote key set must be fetched before evaluation can finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeedFetch(pub usize);

/// A change to the request head, applied in order once evaluation is done.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    Remove(HeaderName),
    /// Remove every occurrence of this query parameter from the path.
    RemoveParam(String),
    Append(HeaderName, HeaderValue),
}

/// What evaluation decided.
#[derive(Debug)]
pub struct Outcome {
    /// `Err`: refuse with this status.
    pub result: Result<(), Option<Status>>,
    pub edits: Vec<Edit>,
    /// Entries for the `envoy.filters.http.jwt_authn` metadata namespace.
    pub metadata: Map<String, Value>,
    /// Token cache lookups, for the filter's stats.
    pub cache_lookups: CacheLookups,
}

/// Envoy's token cache lookups during one evaluation: one per token checked
/// against a named provider, a hit only where the provider has
/// `jwt_cache_config` and the token verified before.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheLookups {
    pub hits: u32,
    pub misses: u32,
}

/// One provider's settings as the authenticator uses them.
#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub config: JwtProvider,
    forward_payload_header: Option<HeaderName>,
    claim_headers: Vec<(HeaderName, String)>,
}

/// Which issuers a token location was configured for.
#[derive(Debug, Clone, Default)]
struct IssuerCheck {
    any: bool,
    issuers: Vec<String>,
}

impl IssuerCheck {
    fn add(&mut self, issuer: &str) {
        if issuer.is_empty() {
            self.any = true;
        } else if !self.issuers.iter().any(|i| i == issuer) {
            self.issuers.push(issuer.to_owned());
        }
    }

    fn allows(&self, issuer: &str) -> bool {
        self.any || self.issuers.iter().any(|i| i == issuer)
    }
}

/// Envoy's extractor: token locations of a set of providers, each with
/// the issuers that named it, in Envoy's (sorted) order.
#[derive(Debug, Default)]
struct Extractor {
    headers: Vec<(HeaderName, String, IssuerCheck)>,
    params: Vec<(String, IssuerCheck)>,
    cookies: Vec<(String, IssuerCheck)>,
    sanitize: Vec<HeaderName>,
}

/// A token found in a request.
struct Found<'e> {
    token: String,
    /// The header it came from (removed unless `forward`).
    header: Option<&'e HeaderName>,
    /// The query parameter it came from (removed unless `forward`).
    param: Option<&'e str>,
    issuers: &'e IssuerCheck,
}

/// The base64url characters and `.`: what a token may contain.
fn token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

impl Extractor {
    fn new<'p>(providers: impl IntoIterator<Item = &'p Provider>) -> Self {
        let mut headers: BTreeMap<String, (HeaderName, String, IssuerCheck)> = BTreeMap::new();
        let mut params: BTreeMap<String, IssuerCheck> = BTreeMap::new();
        let mut cookies: BTreeMap<String, IssuerCheck> = BTreeMap::new();
        let mut sanitize = Vec::new();
        for p in providers {
            let c = &p.config;
            let mut header = |name: &str, prefix: &str| {
                if let Ok(h) = HeaderName::from_bytes(name.as_bytes()) {
                    headers
                        .entry(format!("{name}{prefix}"))
                        .or_insert_with(|| (h, prefix.to_owned(), IssuerCheck::default()))
                        .2
                        .add(&c.issuer);
                }
            };
            for h in &c.from_headers {
                header(&h.name, &h.value_prefix);
            }
            for q in &c.from_params {
                params.entry(q.clone()).or_default().add(&c.issuer);
            }
            for k in &c.from_cookies {
                cookies.entry(k.clone()).or_default().add(&c.issuer);
            }
            if c.from_headers.is_empty() && c.from_params.is_empty() && c.from_cookies.is_empty() {
                header("authorization", "Bearer ");
                params
                    .entry("access_token".to_owned())
                    .or_default()
                    .add(&c.issuer);
            }
            sanitize.extend(p.forward_payload_header.iter().cloned());
            sanitize.extend(p.claim_headers.iter().map(|(h, _)| h.clone()));
        }
        Extractor {
            headers: headers.into_values().collect(),
            params: params.into_iter().collect(),
            cookies: cookies.into_iter().collect(),
            sanitize,
        }
    }

    fn extract(&self, headers: &HeaderMap, path: &str) -> Vec<Found<'_>> {
        let mut out = Vec::new();
        for (name, prefix, issuers) in &self.headers {
            let mut values = headers.get_all(name).iter();
            let Some(first) = values.next() else { continue };
            // Several values are read joined with `,`, as Envoy reads them.
            let mut value = String::from_utf8_lossy(first.as_bytes()).into_owned();
            for v in values {
                value.push(',');
                value.push_str(&String::from_utf8_lossy(v.as_bytes()));
            }
            let token = if prefix.is_empty() {
                value
            } else {
                let Some(pos) = value.find(prefix.as_str()) else {
                    continue;
                };
                let rest = &value[pos + prefix.len()..];
                match rest.find(token_char) {
                    None => value.clone(),
                    Some(start) => {
                        let rest = &rest[start..];
                        let end = rest.find(|c| !token_char(c)).unwrap_or(rest.len());
                        rest[..end].to_owned()
                    }
                }
            };
            out.push(Found {
                token,
                header: Some(name),
                param: None,
                issuers,
            });
        }
        if !self.params.is_empty() {
            let query = path.split_once('?').map_or("", |(_, q)| q);
            let query = query.split('#').next().unwrap_or("");
            for (key, issuers) in &self.params {
                if let Some(v) = query_param(query, key) {
                    out.push(Found {
                        token: v,
                        header: None,
                        param: Some(key),
                        issuers,
                    });
                }
            }
        }
        if !self.cookies.is_empty() {
            for (key, issuers) in &self.cookies {
                if let Some(v) = cookie(headers, key) {
                    out.push(Found {
                        token: v,
                        header: None,
                        param: None,
                        issuers,
                    });
                }
            }
        }
        out
    }
}

/// `path_and_query` without the parameters named `key` (and without `?`
/// when none is left).
pub fn without_param(path_and_query: &str, key: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query.to_owned();
    };
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let k = pair.split_once('=').map_or(*pair, |(k, _)| k);
            !pair.is_empty() && percent_decode(k) != key
        })
        .collect();
    let mut out = path.to_owned();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// The first value of `key` in a query string, percent-decoded.
fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of cookie `key` (quotes removed), from every `cookie` header.
fn cookie(headers: &HeaderMap, key: &str) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim_start().split_once('=')?;
            (k == key).then(|| {
                v.strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v)
                    .to_owned()
            })
        })
}

/// A compiled requirement.
#[derive(Debug)]
enum Node {
    Provider {
        index: usize,
        audiences: Option<Vec<String>>,
        extractor: Extractor,
    },
    Any {
        children: Vec<Node>,
        allow_missing: bool,
        allow_failed: bool,
    },
    All(Vec<Node>),
    AllowMissing(Extractor),
    AllowFailed(Extractor),
    AllowAll,
}

/// A `JwtAuthentication`, compiled.
#[derive(Debug)]
pub struct Authn {
    pub providers: Vec<Provider>,
    rules: Vec<(RequestMatcher, Option<Arc<Node>>)>,
    requirements: Vec<(String, Arc<Node>)>,
    pub bypass_cors_preflight: bool,
    pub strip_failure_response: bool,
    signatures: crate::cache::SignatureCache,
}

impl Authn {
    /// Compiles `config`; `Err` names what cannot be compiled.
    pub fn compile(config: &JwtAuthentication) -> Result<Authn, String> {
        let providers: Vec<Provider> = config
            .providers
            .iter()
            .map(|(name, p)| Provider {
                name: name.clone(),
                forward_payload_header: (!p.forward_payload_header.is_empty())
                    .then(|| HeaderName::from_bytes(p.forward_payload_header.as_bytes()).ok())
                    .flatten(),
                claim_headers: p
                    .claim_to_headers
                    .iter()
                    .filter_map(|c| {
                        HeaderName::from_bytes(c.header_name.as_bytes())
                            .ok()
                            .map(|h| (h, c.claim_name.clone()))
                    })
                    .collect(),
                config: p.clone(),
            })
            .collect();
        let mut me = Authn {
            providers,
            rules: Vec::new(),
            requirements: Vec::new(),
            bypass_cors_preflight: config.bypass_cors_preflight,
            strip_failure_response: config.strip_failure_response,
            signatures: crate::cache::SignatureCache::default(),
        };
        me.requirements = config
            .requirement_map
            .iter()
            .map(|(name, r)| Ok((name.clone(), Arc::new(me.node(r)?))))
            .collect::<Result<_, String>>()?;
        me.rules = config
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| me.rule(i, r))
            .collect::<Result<_, String>>()?;
        Ok(me)
    }

    fn rule(
        &self,
        i: usize,
        r: &RequirementRule,
    ) -> Result<(RequestMatcher, Option<Arc<Node>>), String> {
        let m = RequestMatcher::compile(&r.route_match, &|| format!("rules[{i}].match"))
            .map_err(|e| e.to_string())?;
        let node = match &r.requirement {
            None => None,
            Some(RuleRequirement::Inline(req)) => Some(Arc::new(self.node(req)?)),
            Some(RuleRequirement::Named(name)) => {
                Some(Arc::clone(self.requirement(name).ok_or_else(|| {
                    format!("rules[{i}]: unknown requirement_name {name}")
                })?))
            }
        };
        Ok((m, node))
    }

    fn requirement(&self, name: &str) -> Option<&Arc<Node>> {
        self.requirements
            .iter()
            .find_map(|(n, r)| (n == name).then_some(r))
    }

    fn node(&self, r: &JwtRequirement) -> Result<Node, String> {
        Ok(match r {
            JwtRequirement::Provider { name, audiences } => {
                let index = self
                    .providers
                    .iter()
                    .position(|p| p.name == *name)
                    .ok_or_else(|| format!("Required provider ['{name}'] is not configured."))?;
                Node::Provider {
                    index,
                    audiences: audiences.clone(),
                    extractor: Extractor::new([&self.providers[index]]),
                }
            }
            JwtRequirement::RequiresAny(list) => {
                let (mut allow_missing, mut allow_failed) = (false, false);
                let mut children = Vec::new();
                for r in list {
                    match r {
                        JwtRequirement::AllowMissing => allow_missing = true,
                        JwtRequirement::AllowMissingOrFailed => allow_failed = true,
                        other => children.push(self.node(other)?),
                    }
                }
                if children.is_empty() && (allow_missing || allow_failed) {
                    children.push(if allow_failed {
                        Node::AllowFailed(Extractor::new(&self.providers))
                    } else {
                        Node::AllowMissing(Extractor::new(&self.providers))
                    });
                }
                Node::Any {
                    children,
                    allow_missing,
                    allow_failed,
                }
            }
            JwtRequirement::RequiresAll(list) => Node::All(
                list.iter()
                    .map(|r| self.node(r))
                    .collect::<Result<_, _>>()?,
            ),
            JwtRequirement::AllowMissing => Node::AllowMissing(Extractor::new(&self.providers)),
            JwtRequirement::AllowMissingOrFailed => {
                Node::AllowFailed(Extractor::new(&self.providers))
            }
            JwtRequirement::AllowAll => Node::AllowAll,
        })
    }

    /// The requirement the filter's `rules` give a request (the first rule
    /// whose match fits); `None` to let it through unverified.
    pub fn select(&self, view: &strait_route::RequestView<'_>) -> Option<Requirement<'_>> {
        self.rules
            .iter()
            .find(|(m, _)| m.matches(view))
            .and_then(|(_, n)| n.as_deref())
            .map(Requirement)
    }

    /// The requirement named in `requirement_map` (a per-route config's).
    pub fn named(&self, name: &str) -> Option<Requirement<'_>> {
        self.requirement(name).map(|n| Requirement(n))
    }

    /// The names of `requirement_map`, for error messages.
    pub fn requirement_names(&self) -> impl Iterator<Item = &str> {
        self.requirements.iter().map(|(n, _)| n.as_str())
    }

    /// Evaluates `req` for a request head. `now` is Unix seconds.
    pub fn evaluate(
        &self,
        req: Requirement<'_>,
        headers: &HeaderMap,
        path: &str,
        now: u64,
        keys: &dyn KeySource,
    ) -> Result<Outcome, NeedFetch> {
        let mut out = Outcome {
            result: Ok(()),
            edits: Vec::new(),
            metadata: Map::new(),
            cache_lookups: CacheLookups::default(),
        };
        let status = self.run(req.0, headers, path, now, keys, &mut out)?;
        out.result = match status {
            None => Ok(()),
            Some(s) => Err(Some(s)),
        };
        Ok(out)
    }

    /// One node; `None` is success.
    fn run(
        &self,
        node: &Node,
        headers: &HeaderMap,
        path: &str,
        now: u64,
        keys: &dyn KeySource,
        out: &mut Outcome,
    ) -> Result<Option<Status>, NeedFetch> {
        let cx = Cx {
            headers,
            path,
            now,
            keys,
        };
        match node {
            Node::Provider {
                index,
                audiences,
                extractor,
            } => self.authenticate(
                &cx,
                extractor,
                Some((*index, audiences.as_deref())),
                (false, false),
                out,
            ),
            Node::AllowMissing(e) => self.authenticate(&cx, e, None, (false, true), out),
            Node::AllowFailed(e) => self.authenticate(&cx, e, None, (true, true), out),
            Node::AllowAll => Ok(None),
            Node::All(children) => {
                for c in children {
                    if let Some(s) = self.run(c, headers, path, now, keys, out)? {
                        return Ok(Some(s));
                    }
                }
                Ok(None)
            }
            Node::Any {
                children,
                allow_missing,
                allow_failed,
            } => {
                let mut statuses = Vec::with_capacity(children.len());
                for c in children {
                    match self.run(c, headers, path, now, keys, out)? {
                        None => return Ok(None),
                        Some(s) => statuses.push(s),
                    }
                }
                // Errors other than a missing token or an unknown issuer
                // win; an unknown issuer wins over a missing token.
                let mut last = Status::JwtMissed;
                for s in statuses {
                    if !matches!(s, Status::JwtMissed | Status::JwtUnknownIssuer)
                        || last == Status::JwtMissed
                    {
                        last = s;
                    }
                }
                if *allow_failed || (*allow_missing && last == Status::JwtMissed) {
                    Ok(None)
                } else {
                    Ok(Some(last))
                }
            }
        }
    }

    /// Envoy's authenticator over the tokens `extractor` finds: every token
    /// must verify unless missing or failed tokens are allowed.
    fn authenticate(
        &self,
        cx: &Cx<'_>,
        extractor: &Extractor,
        provider: Option<(usize, Option<&[String]>)>,
        (allow_failed, allow_missing): (bool, bool),
        out: &mut Outcome,
    ) -> Result<Option<Status>, NeedFetch> {
        for h in &extractor.sanitize {
            out.edits.push(Edit::Remove(h.clone()));
        }
        let mut tokens = extractor.extract(cx.headers, cx.path);
        let mut status = if tokens.is_empty() {
            Some(Status::JwtMissed)
        } else {
            None
        };
        while let Some(found) = tokens.pop() {
            status = self.check(cx, &found, provider, out)?;
            if status.is_some() && !allow_failed && !allow_missing {
                break;
            }
        }
        Ok(match status {
            _ if allow_failed => None,
            Some(Status::JwtMissed) if allow_missing => None,
            s => s,
        })
    }

    /// One token: `None` when it verified (and its effects are recorded).
    fn check(
        &self,
        cx: &Cx<'_>,
        found: &Found<'_>,
        provider: Option<(usize, Option<&[String]>)>,
        out: &mut Outcome,
    ) -> Result<Option<Status>, NeedFetch> {
        if let Some((index, _)) = provider {
            // Before parsing, as Envoy looks the token up.
            let cached = self.providers[index].config.jwt_cache_size.is_some()
                && matches!(cx.keys.keys(index), Keys::Ready(jwks) if self.signatures.verified(&found.token, &jwks));
            if cached {
                out.cache_lookups.hits += 1;
            } else {
                out.cache_lookups.misses += 1;
            }
        }
        let jwt = match Jwt::parse(&found.token) {
            Ok(j) => j,
            Err(s) => return Ok(Some(s)),
        };
        if !found.issuers.allows(&jwt.iss) {
            return Ok(Some(Status::JwtUnknownIssuer));
        }
        let (index, audiences) = match provider {
            Some(p) => p,
            None => match self.by_issuer(&jwt.iss) {
                Some(i) => (i, None),
                None => return Ok(Some(Status::JwtUnknownIssuer)),
            },
        };
        let p = &self.providers[index];
        let skew = match p.config.clock_skew_seconds {
            0 => DEFAULT_SKEW,
            s => s,
        };
        if let Err(s) = jwt.check_time(cx.now, skew) {
            return Ok(Some(s));
        }
        if !audiences_allowed(audiences.unwrap_or(&p.config.audiences), &jwt.audiences) {
            return Ok(Some(Status::JwtAudienceNotAllowed));
        }
        let verified = match cx.keys.keys(index) {
            Keys::Ready(jwks) if self.signatures.verified(&found.token, &jwks) => Ok(()),
            Keys::Ready(jwks) => {
                let r = verify_signature(&jwt, &jwks);
                if r.is_ok() {
                    self.signatures.insert(&found.token, &jwks);
                }
                r
            }
            Keys::NoValidKeys => Err(Status::JwksNoValidKeys),
            Keys::Fetch => return Err(NeedFetch(index)),
            Keys::FetchFailed => Err(Status::JwksFetchFail),
        };
        if let Err(s) = verified {
            return Ok(Some(s));
        }
        self.accept(p, &jwt, found, out);
        Ok(None)
    }

    /// Envoy's `findByIssuer`: the first provider of that issuer, else the
    /// first without one.
    fn by_issuer(&self, iss: &str) -> Option<usize> {
        self.providers
            .iter()
            .position(|p| p.config.issuer == iss)
            .or_else(|| {
                self.providers
                    .iter()
                    .position(|p| p.config.issuer.is_empty())
            })
    }

    /// A verified token's effects: the payload header, claims as headers,
    /// the token removed, the payload (and header) as metadata.
    fn accept(&self, p: &Provider, jwt: &Jwt<'_>, found: &Found<'_>, out: &mut Outcome) {
        if let Some(h) = &p.forward_payload_header {
            let mut value = jwt.payload_b64.to_owned();
            if p.config.pad_forward_payload_header {
                while !value.len().is_multiple_of(4) {
                    value.push('=');
                }
            }
            if let Ok(v) = HeaderValue::from_str(&value) {
                out.edits.push(Edit::Append(h.clone(), v));
            }
        }
        for (header, claim) in &p.claim_headers {
            if let Some(v) = claim_value(&jwt.payload, claim)
                && let Ok(v) = HeaderValue::from_str(&v)
            {
                out.edits.push(Edit::Append(header.clone(), v));
            }
        }
        if !p.config.forward {
            if let Some(h) = found.header {
                out.edits.push(Edit::Remove(h.clone()));
            }
            if let Some(q) = found.param {
                out.edits.push(Edit::RemoveParam(q.to_owned()));
            }
        }
        if !p.config.header_in_metadata.is_empty() {
            out.metadata.insert(
                p.config.header_in_metadata.clone(),
                Value::Object(jwt.header.clone()),
            );
        }
        if !p.config.payload_in_metadata.is_empty() {
            let mut payload = jwt.payload.clone();
            normalize(&mut payload, &p.config.space_delimited_claims);
            out.metadata
                .insert(p.config.payload_in_metadata.clone(), Value::Object(payload));
        }
    }
}

/// Envoy's `normalize_payload_in_metadata`: each named top-level claim
/// holding a string becomes the list of its space-separated words (empty
/// words skipped); other claims and other types are left as they are.
fn normalize(payload: &mut serde_json::Map<String, Value>, claims: &[String]) {
    for claim in claims {
        if let Some(v) = payload.get_mut(claim)
            && let Value::String(s) = v
        {
            let words = s
                .split(' ')
                .filter(|w| !w.is_empty())
                .map(|w| Value::String(w.to_owned()))
                .collect();
            *v = Value::Array(words);
        }
    }
}

/// A requirement to evaluate, borrowed from its [`Authn`].
#[derive(Debug, Clone, Copy)]
pub struct Requirement<'a>(&'a Node);

struct Cx<'a> {
    headers: &'a HeaderMap,
    path: &'a str,
    now: u64,
    keys: &'a dyn KeySource,
}

/// A claim at a dotted path, as a header value: strings as they are,
/// whole numbers without a fraction, booleans as `true`/`false`; other
/// kinds give nothing.
fn claim_value(payload: &Map<String, Value>, path: &str) -> Option<String> {
    let mut parts = path.split('.');
    let mut v = payload.get(parts.next()?)?;
    for p in parts {
        v = v.as_object()?.get(p)?;
    }
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => {
            let f = n.as_f64()?;
            Some(if f >= 0.0 && f < u64::MAX as f64 && f.fract() == 0.0 {
                format!("{}", f as u64)
            } else {
                format!("{f:.6}")
            })
        }
        _ => None,
    }
}

#[cfg(test)]
#[path = "authn/tests.rs"]
mod tests;
