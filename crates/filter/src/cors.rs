//! `envoy.filters.http.cors`: preflights answered locally, and the
//! `access-control-*` headers on responses to allowed origins.

use http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use strait_model::filter::CorsPolicy;

static REQUEST_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-request-private-network");
static ALLOW_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-allow-private-network");

/// What CORS makes of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsDecision {
    /// Not a cross-origin request the policy allows: nothing to do.
    Pass,
    /// A preflight to answer locally with 200 and these headers.
    Preflight(HeaderMap),
    /// An allowed cross-origin request: forward it, then call
    /// [`decorate_response`] with this origin.
    Actual(HeaderValue),
}

/// Decides for a request. `enabled` is the result of rolling the policy's
/// `filter_enabled` fraction. Allocates only for a preflight's headers.
pub fn decide(
    policy: &CorsPolicy,
    method: &Method,
    headers: &HeaderMap,
    enabled: bool,
) -> CorsDecision {
    if !enabled {
        return CorsDecision::Pass;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return CorsDecision::Pass;
    };
    let allowed = origin
        .to_str()
        .is_ok_and(|o| policy.allow_origins.iter().any(|m| m.matches(o)));
    let preflight = method == Method::OPTIONS
        && headers
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .is_some_and(|m| !m.is_empty());
    match (preflight, allowed) {
        (true, true) => CorsDecision::Preflight(preflight_headers(policy, origin, headers)),
        // Envoy answers a non-matching preflight itself, without CORS
        // headers, unless told to forward it.
        (true, false) if !policy.forward_not_matching_preflights => {
            CorsDecision::Preflight(HeaderMap::new())
        }
        (false, true) => CorsDecision::Actual(origin.clone()),
        _ => CorsDecision::Pass,
    }
}

fn preflight_headers(policy: &CorsPolicy, origin: &HeaderValue, req: &HeaderMap) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    if policy.allow_credentials {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    let mut put = |name: HeaderName, v: &Option<String>| {
        if let Some(v) = v
            && let Ok(v) = HeaderValue::from_str(v)
        {
            h.insert(name, v);
        }
    };
    put(header::ACCESS_CONTROL_ALLOW_METHODS, &policy.allow_methods);
    put(header::ACCESS_CONTROL_ALLOW_HEADERS, &policy.allow_headers);
    put(header::ACCESS_CONTROL_MAX_AGE, &policy.max_age);
    if policy.allow_private_network_access
        && req
            .get(&REQUEST_PRIVATE_NETWORK)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"))
    {
        h.insert(
            ALLOW_PRIVATE_NETWORK.clone(),
            HeaderValue::from_static("true"),
        );
    }
    h
}

/// Adds the response headers for an allowed actual request.
pub fn decorate_response(policy: &CorsPolicy, origin: &HeaderValue, resp: &mut HeaderMap) {
    resp.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    if policy.allow_credentials {
        resp.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    if let Some(v) = &policy.expose_headers
        && let Ok(v) = HeaderValue::from_str(v)
    {
        resp.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
    }
}

#[cfg(test)]
mod tests {
    use strait_model::policy::{Fraction, ValueMatch, ValueMatcher};

    use super::*;

    fn policy() -> CorsPolicy {
        CorsPolicy {
            allow_origins: vec![ValueMatcher {
                kind: ValueMatch::Suffix(".example.com".into()),
                ignore_case: false,
            }],
            allow_methods: Some("GET, PUT".into()),
            allow_headers: Some("x-a".into()),
            expose_headers: Some("x-b".into()),
            max_age: Some("60".into()),
            allow_credentials: true,
            allow_private_network_access: false,
            enabled: Fraction::ALL,
            forward_not_matching_preflights: true,
        }
    }

    fn req(origin: &'static str, preflight: bool) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, HeaderValue::from_static(origin));
        if preflight {
            h.insert(
                header::ACCESS_CONTROL_REQUEST_METHOD,
                HeaderValue::from_static("PUT"),
            );
        }
        h
    }

    #[test]
    fn preflight_and_actual() {
        let p = policy();
        let CorsDecision::Preflight(h) = decide(
            &p,
            &Method::OPTIONS,
            &req("https://a.example.com", true),
            true,
        ) else {
            panic!("not a preflight");
        };
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://a.example.com"
        );
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_METHODS], "GET, PUT");
        assert_eq!(h[header::ACCESS_CONTROL_MAX_AGE], "60");
        assert_eq!(
            decide(&p, &Method::OPTIONS, &req("https://evil.org", true), true),
            CorsDecision::Pass
        );
        assert!(matches!(
            decide(&p, &Method::GET, &req("https://a.example.com", false), true),
            CorsDecision::Actual(_)
        ));
        assert_eq!(
            decide(
                &p,
                &Method::GET,
                &req("https://a.example.com", false),
                false
            ),
            CorsDecision::Pass
        );
    }
}
