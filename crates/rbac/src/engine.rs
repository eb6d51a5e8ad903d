//! Envoy's RBAC engine over the model's [`Rules`]: pure matching, no I/O,
//! no allocation (a header sent several times is joined with `,` as Envoy
//! matches it, the only allocation, and only then).
//!
//! The model's rules are already the compiled form: policies sorted by name
//! (the order Envoy's ordered map tries them in), header names lower-cased,
//! regexes compiled, CIDR ranges parsed. Evaluation walks them once.

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, header, request};
use serde_json::Value;
use strait_http::DynamicMetadata;
use strait_model::{
    policy::{HeaderCondition, HeaderConditionKind, ValueMatcher},
    rbac::{Action, MetadataMatcher, MetadataValue, Permission, Policy, Principal, Rules},
};
use strait_tls::PeerIdentity;

/// What a request or connection offers the matchers.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The request head; `None` for a connection (header and path
    /// matchers then see an empty request, as in Envoy's network filter).
    pub request: Option<&'a request::Parts>,
    /// The downstream peer: `source_ip` and `direct_remote_ip`.
    pub peer: SocketAddr,
    /// The (original) destination: `destination_ip`, `destination_port`.
    pub local: SocketAddr,
    /// The client after `x-forwarded-for` handling: `remote_ip`.
    pub remote: IpAddr,
    /// TLS-terminated: required by `authenticated`.
    pub tls: bool,
    pub server_name: Option<&'a str>,
    pub peer_cert: Option<&'a PeerIdentity>,
    /// The request's dynamic metadata (JWT payloads and the like).
    pub metadata: Option<&'a DynamicMetadata>,
}

/// The engine's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict<'r> {
    pub allowed: bool,
    /// The first policy (by name) that matched.
    pub policy: Option<&'r str>,
    /// LOG rules: whether the request is to be logged (a policy matched).
    pub log: Option<bool>,
}

/// Evaluates `rules` on `input`.
pub fn evaluate<'r>(rules: &'r Rules, input: &Input<'_>) -> Verdict<'r> {
    let policy = rules
        .policies
        .iter()
        .find(|p| policy_matches(p, input))
        .map(|p| p.name.as_str());
    let matched = policy.is_some();
    let (allowed, log) = match rules.action {
        Action::Allow => (matched, None),
        Action::Deny => (!matched, None),
        Action::Log => (true, Some(matched)),
    };
    Verdict {
        allowed,
        policy,
        log,
    }
}

/// Whether one policy matches: a permission and a principal.
pub(crate) fn policy_matches(p: &Policy, input: &Input<'_>) -> bool {
    p.permissions.iter().any(|x| permission(x, input))
        && p.principals.iter().any(|x| principal(x, input))
}

fn permission(p: &Permission, input: &Input<'_>) -> bool {
    match p {
        Permission::And(all) => all.iter().all(|x| permission(x, input)),
        Permission::Or(any) => any.iter().any(|x| permission(x, input)),
        Permission::Not(inner) => !permission(inner, input),
        Permission::Any => true,
        Permission::Header(h) => header_matches(h, input),
        Permission::UrlPath(m) => url_path(m, input),
        Permission::DestinationIp(r) => r.contains(input.local.ip().to_canonical()),
        Permission::DestinationPort(port) => input.local.port() == *port,
        Permission::DestinationPortRange { start, end } => {
            (*start..*end).contains(&u32::from(input.local.port()))
        }
        Permission::RequestedServerName(m) => m.matches(input.server_name.unwrap_or("")),
        Permission::Metadata(m) => metadata(m, input),
    }
}

fn principal(p: &Principal, input: &Input<'_>) -> bool {
    match p {
        Principal::And(all) => all.iter().all(|x| principal(x, input)),
        Principal::Or(any) => any.iter().any(|x| principal(x, input)),
        Principal::Not(inner) => !principal(inner, input),
        Principal::Any => true,
        Principal::Authenticated(name) => authenticated(name.as_ref(), input),
        // Without the PROXY protocol (refused) the connection's remote
        // address is its peer.
        Principal::SourceIp(r) | Principal::DirectRemoteIp(r) => {
            r.contains(input.peer.ip().to_canonical())
        }
        Principal::RemoteIp(r) => r.contains(input.remote.to_canonical()),
        Principal::Header(h) => header_matches(h, input),
        Principal::UrlPath(m) => url_path(m, input),
        Principal::Metadata(m) => metadata(m, input),
        Principal::IstioPeerPrincipal(m) => {
            istio_peer_principal(input).is_some_and(|p| m.matches(p))
        }
    }
}

/// What Istio's network authn filter records as the peer principal: the
/// peer certificate's first SPIFFE URI SAN (else its first URI SAN); none
/// without a client certificate.
fn istio_peer_principal<'a>(input: &Input<'a>) -> Option<&'a str> {
    let cert = input.peer_cert?;
    cert.uri_sans
        .iter()
        .find(|u| u.starts_with("spiffe://"))
        .or_else(|| cert.uri_sans.first())
        .map(|u| &**u)
}

/// Envoy's `authenticated`: any TLS connection when no name is given;
/// else a URI SAN, then a DNS SAN, then the subject must match.
fn authenticated(name: Option<&ValueMatcher>, input: &Input<'_>) -> bool {
    if !input.tls {
        return false;
    }
    let Some(m) = name else { return true };
    let Some(cert) = input.peer_cert else {
        // TLS without a client certificate: no SANs, an empty subject.
        return m.matches("");
    };
    cert.uri_sans.iter().any(|u| m.matches(u))
        || cert.dns_sans.iter().any(|d| m.matches(d))
        || m.matches(&cert.subject)
}

/// The path without query (Envoy strips query and fragment); a connection
/// has none, so nothing matches.
fn url_path(m: &ValueMatcher, input: &Input<'_>) -> bool {
    input.request.is_some_and(|r| m.matches(r.uri.path()))
}

/// Envoy's header matcher, pseudo-headers included.
fn header_matches(h: &HeaderCondition, input: &Input<'_>) -> bool {
    let joined;
    let value: Option<&str> = match input.request {
        None => None,
        Some(r) => match h.name.as_str() {
            ":method" => Some(r.method.as_str()),
            ":path" => r.uri.path_and_query().map(|p| p.as_str()),
            ":authority" => r
                .uri
                .authority()
                .map(|a| a.as_str())
                .or_else(|| r.headers.get(header::HOST).and_then(|v| v.to_str().ok())),
            ":scheme" => Some(r.uri.scheme_str().unwrap_or("http")),
            // Envoy keeps HTTP/1's Host only as `:authority`.
            "host" => None,
            name if name.starts_with(':') => None,
            name => {
                let (one, many) = values(&r.headers, name);
                if many {
                    joined = join(&r.headers, name);
                    Some(joined.as_str())
                } else {
                    one
                }
            }
        },
    };
    let value = match value {
        Some(v) => v,
        None if h.missing_as_empty => "",
        // A missing header never matches, inverted or not (Envoy).
        None => return false,
    };
    let hit = match &h.kind {
        HeaderConditionKind::Present => true,
        HeaderConditionKind::String(m) => m.matches(value),
        HeaderConditionKind::Range { start, end } => value
            .parse::<i64>()
            .is_ok_and(|n| (*start..*end).contains(&n)),
    };
    hit != h.invert
}

/// The first value of `name` (if UTF-8) and whether there are several.
fn values<'h>(headers: &'h HeaderMap, name: &str) -> (Option<&'h str>, bool) {
    let mut all = headers.get_all(name).iter();
    match (all.next(), all.next()) {
        (None, _) => (None, false),
        (Some(v), None) => (v.to_str().ok(), false),
        (Some(_), Some(_)) => (None, true),
    }
}

fn join(headers: &HeaderMap, name: &str) -> String {
    let mut out = String::new();
    for (i, v) in headers.get_all(name).iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(v.to_str().unwrap_or_default());
    }
    out
}

/// Envoy's `MetadataMatcher`: the value at `path` under `filter`; a missing
/// value matches nothing (and so matches when inverted).
fn metadata(m: &MetadataMatcher, input: &Input<'_>) -> bool {
    let value = input.metadata.and_then(|md| {
        let (first, rest) = m.path.split_first()?;
        let mut v = md.namespace(&m.filter)?.get(first)?;
        for key in rest {
            v = v.as_object()?.get(key)?;
        }
        Some(v)
    });
    value_matches(&m.value, value) != m.invert
}

fn value_matches(m: &MetadataValue, value: Option<&Value>) -> bool {
    let Some(value) = value else {
        return false;
    };
    match m {
        MetadataValue::Null => value.is_null(),
        MetadataValue::DoubleExact(x) => value.as_f64() == Some(*x),
        MetadataValue::DoubleRange { start, end } => {
            value.as_f64().is_some_and(|v| *start <= v && v < *end)
        }
        MetadataValue::String(s) => value.as_str().is_some_and(|v| s.matches(v)),
        MetadataValue::Bool(b) => value.as_bool() == Some(*b),
        MetadataValue::Present(p) => *p,
        MetadataValue::ListOneOf(one) => value
            .as_array()
            .is_some_and(|items| items.iter().any(|i| value_matches(one, Some(i)))),
        MetadataValue::Or(any) => any.iter().any(|x| value_matches(x, Some(value))),
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
