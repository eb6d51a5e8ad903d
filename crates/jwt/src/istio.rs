//! Istio's `istio_authn` HTTP filter (Istio <= 1.10,
//! `istio.envoy.config.filter.http.authn.v2alpha1.FilterConfig`): after the
//! JWT filter, it turns the payload verified for one of the policy's origin
//! issuers into the `istio_authn` dynamic metadata Istio's RBAC rules of
//! those versions read: `request.auth.principal` (`iss/sub`),
//! `request.auth.audiences`, `request.auth.presenter`,
//! `request.auth.claims` (every string claim as a list, strings split at
//! spaces, nested objects kept) and `request.auth.raw_claims`. Without a
//! payload for any origin it refuses the request (401 `Origin
//! authentication failed.`) unless `origin_is_optional`, which is what
//! Istio >= 1.6 renders (the JWT filter refuses bad tokens itself).

use std::sync::Arc;

use http::{Method, StatusCode, header};
use serde_json::{Map, Value};
use strait_http::{
    Decision, HttpFilter, HttpFilterFactory, Reply, RequestHead,
    metadata::{dynamic_metadata, dynamic_metadata_mut},
};
use strait_model::{
    extension::Extension,
    jwt::{ISTIO_AUTHN_NAMESPACE, IstioAuthn, JWT_METADATA_NAMESPACE, type_url},
};

/// Builds [`IstioAuthnFilter`]s.
#[derive(Debug, Default, Clone, Copy)]
pub struct IstioAuthnFactory;

impl HttpFilterFactory for IstioAuthnFactory {
    fn type_url(&self) -> &str {
        type_url::ISTIO_AUTHN
    }

    fn create(&self, config: &Extension) -> Result<Arc<dyn HttpFilter>, String> {
        let config = config
            .get::<IstioAuthn>()
            .ok_or("istio_authn config of the wrong type")?;
        Ok(Arc::new(IstioAuthnFilter(config.clone())))
    }
}

/// The `istio_authn` filter of one config version.
#[derive(Debug)]
pub struct IstioAuthnFilter(IstioAuthn);

/// What the origin authenticator found.
struct Origin {
    user: String,
    audiences: Vec<String>,
    presenter: String,
    claims: Map<String, Value>,
    raw: String,
}

impl HttpFilter for IstioAuthnFilter {
    fn on_request<'a>(&'a self, req: &'a mut RequestHead<'_>) -> Decision<'a> {
        let config = &self.0;
        let origin = match self.origin(req) {
            Ok(o) => o,
            Err(()) => {
                return Decision::Respond(
                    Reply::new(StatusCode::UNAUTHORIZED)
                        .body("Origin authentication failed.")
                        .details("istio_authn_access_denied"),
                );
            }
        };
        let mut attrs: Vec<(&str, Value)> = Vec::new();
        // The peer's identity (USE_PEER) is not recorded: Istio's RBAC of
        // these versions reads the connection's certificate for it.
        if config.principal_from_origin
            && let Some(o) = &origin
            && !o.user.is_empty()
        {
            attrs.push(("request.auth.principal", Value::String(o.user.clone())));
        }
        if let Some(o) = origin {
            if let Some(a) = o.audiences.first() {
                attrs.push(("request.auth.audiences", Value::String(a.clone())));
            }
            if !o.presenter.is_empty() {
                attrs.push(("request.auth.presenter", Value::String(o.presenter)));
            }
            if !o.claims.is_empty() {
                attrs.push(("request.auth.claims", Value::Object(o.claims)));
            }
            attrs.push(("request.auth.raw_claims", Value::String(o.raw)));
        }
        if !attrs.is_empty() {
            let md = dynamic_metadata_mut(req.state);
            for (k, v) in attrs {
                md.set(ISTIO_AUTHN_NAMESPACE, k, v);
            }
        }
        Decision::Continue
    }
}

impl IstioAuthnFilter {
    /// Istio's origin authenticator: `Ok(None)` when it passes without an
    /// origin, `Err` when the request must be refused.
    fn origin(&self, req: &RequestHead<'_>) -> Result<Option<Origin>, ()> {
        let config = &self.0;
        if config.origins.is_empty() && config.principal_from_origin {
            return if config.origin_is_optional {
                Ok(None)
            } else {
                Err(())
            };
        }
        if is_cors_preflight(req.head) || config.origins.is_empty() {
            return Ok(None);
        }
        let jwt = dynamic_metadata(req.state).and_then(|m| m.namespace(JWT_METADATA_NAMESPACE));
        let found = config.origins.iter().find_map(|issuer| {
            jwt?.get(issuer)?
                .as_object()
                .filter(|p| !p.is_empty())
                .map(process)
        });
        match found {
            Some(o) => Ok(Some(o)),
            None if config.origin_is_optional => Ok(None),
            None => Err(()),
        }
    }
}

fn is_cors_preflight(head: &http::request::Parts) -> bool {
    let nonempty = |h: header::HeaderName| head.headers.get(h).is_some_and(|v| !v.is_empty());
    head.method == Method::OPTIONS
        && nonempty(header::ORIGIN)
        && nonempty(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Istio's `ProcessJwtPayload`.
fn process(payload: &Map<String, Value>) -> Origin {
    let claims = claims(payload);
    let first = |k: &str| {
        claims
            .get(k)
            .and_then(Value::as_array)
            .and_then(|l| l.first())
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let user = match (first("iss"), first("sub")) {
        (Some(iss), Some(sub)) => format!("{iss}/{sub}"),
        _ => String::new(),
    };
    let audiences = claims
        .get("aud")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Origin {
        user,
        audiences,
        presenter: first("azp").unwrap_or_default(),
        raw: Value::Object(payload.clone()).to_string(),
        claims,
    }
}

/// Strings become lists of their space-separated words, lists of strings
/// stay lists, objects are processed in turn; other values are dropped.
fn claims(obj: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in obj {
        match v {
            Value::String(s) => {
                let words: Vec<Value> = s
                    .split(' ')
                    .filter(|w| !w.is_empty())
                    .map(|w| Value::String(w.to_owned()))
                    .collect();
                if !words.is_empty() {
                    out.insert(k.clone(), Value::Array(words));
                }
            }
            Value::Array(list) if !list.is_empty() && list.iter().all(Value::is_string) => {
                out.insert(k.clone(), Value::Array(list.clone()));
            }
            Value::Object(inner) => {
                out.insert(k.clone(), Value::Object(claims(inner)));
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn payloads_become_istio_claims() {
        let payload = json!({
            "iss": "https://issuer", "sub": "alice", "aud": ["a", "b"], "azp": "web",
            "scope": "read write", "exp": 1, "groups": ["g1", "g2"], "nested": {"k": "v w"},
        });
        let o = process(payload.as_object().expect("object"));
        assert_eq!(o.user, "https://issuer/alice");
        assert_eq!(o.audiences, vec!["a".to_owned(), "b".to_owned()]);
        assert_eq!(o.presenter, "web");
        assert_eq!(o.claims["scope"], json!(["read", "write"]));
        assert_eq!(o.claims["groups"], json!(["g1", "g2"]));
        assert_eq!(o.claims["nested"], json!({"k": ["v", "w"]}));
        assert!(o.claims.get("exp").is_none());
        assert_eq!(
            serde_json::from_str::<Value>(&o.raw).expect("raw claims are JSON"),
            payload
        );
    }
}
