//! `jwt_authn` and `istio_authn` translation: the model they make, and
//! refusals by name.

use serde_json::{Value, json};

use crate::{
    load,
    model::{
        Listener, NetworkFilter,
        jwt::{JwksSource, JwtAuthentication, JwtPerRoute, JwtRequirement, RuleRequirement},
    },
    translate::tests::{HCM, HCM_PATH, edited, load_ok, render},
};

fn with_jwt(config: Value) -> String {
    edited(&[
        (
            &format!("{HCM}/http_filters/0"),
            json!({"name": "jwt", "typed_config": config}),
        ),
        (
            &format!("{HCM}/http_filters/1"),
            json!({"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}),
        ),
    ])
}

fn jwt_config(provider_extra: Value, top_extra: Value) -> Value {
    let mut provider = json!({
        "issuer": "https://issuer",
        "audiences": ["a"],
        "local_jwks": {"inline_string": "{\"keys\":[]}"},
    });
    for (k, v) in provider_extra.as_object().cloned().unwrap_or_default() {
        provider[k] = v;
    }
    let mut top = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {"p": provider},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}],
    });
    for (k, v) in top_extra.as_object().cloned().unwrap_or_default() {
        top[k] = v;
    }
    top
}

fn filter_of(l: &Listener) -> &JwtAuthentication {
    let NetworkFilter::Http(hcm) = &l.filter_chains[0].terminal else {
        panic!("expected an HCM");
    };
    hcm.http_filters[0]
        .config
        .get::<JwtAuthentication>()
        .expect("a JWT config")
}

fn errors(text: &str) -> String {
    match load(text) {
        Ok(_) => panic!("expected errors"),
        Err(e) => render(&e),
    }
}

#[test]
fn providers_rules_and_remote_jwks_translate() {
    let c = load_ok(&with_jwt(jwt_config(
        json!({
            "from_headers": [{"name": "X-Jwt", "value_prefix": "Bearer "}],
            "from_params": ["tok"],
            "forward_payload_header": "X-Payload",
            "claim_to_headers": [{"header_name": "X-Sub", "claim_name": "sub"}],
            "payload_in_metadata": "payload",
            "clock_skew_seconds": 5,
            "jwt_cache_config": {},
        }),
        json!({
            "providers": {"r": {
                "issuer": "remote",
                "remote_jwks": {
                    "http_uri": {"uri": "http://jwks/keys", "cluster": "backend", "timeout": "2s"},
                    "cache_duration": "30s",
                    "async_fetch": {"fast_listener": true},
                    "retry_policy": {"num_retries": 3, "retry_back_off": {"base_interval": "0.1s"}},
                },
            }, "p": {
                "issuer": "https://issuer",
                "local_jwks": {"filename": "/etc/jwks.json"},
            }},
            "requirement_map": {"any": {"requires_any": {"requirements": [
                {"provider_name": "p"}, {"allow_missing": {}},
            ]}}},
            "rules": [
                {"match": {"prefix": "/any"}, "requirement_name": "any"},
                {"match": {"path": "/open"}},
                {"match": {"prefix": "/"}, "requires": {"provider_and_audiences": {"provider_name": "r", "audiences": ["x"]}}},
            ],
        }),
    )));
    let j = filter_of(&c.listeners[0]);
    assert_eq!(j.providers.len(), 2);
    let p = j.provider("p").expect("p");
    assert_eq!(p.jwks, JwksSource::File("/etc/jwks.json".into()));
    let r = j.provider("r").expect("r");
    let JwksSource::Remote(remote) = &r.jwks else {
        panic!("remote");
    };
    assert_eq!(remote.cluster, "backend");
    assert_eq!(remote.timeout, std::time::Duration::from_secs(2));
    assert_eq!(remote.cache_duration, std::time::Duration::from_secs(30));
    assert!(remote.async_fetch.as_ref().is_some_and(|a| a.fast_listener));
    let retry = remote.retry.as_ref().expect("retry");
    assert_eq!(retry.num_retries, 3);
    assert_eq!(retry.max_interval, std::time::Duration::from_secs(1));
    assert_eq!(
        j.requirement("any"),
        Some(&JwtRequirement::RequiresAny(vec![
            JwtRequirement::Provider {
                name: "p".into(),
                audiences: None
            },
            JwtRequirement::AllowMissing,
        ]))
    );
    assert_eq!(j.rules.len(), 3);
    assert_eq!(
        j.rules[0].requirement,
        Some(RuleRequirement::Named("any".into()))
    );
    assert_eq!(j.rules[1].requirement, None);
    assert_eq!(
        j.rules[2].requirement,
        Some(RuleRequirement::Inline(JwtRequirement::Provider {
            name: "r".into(),
            audiences: Some(vec!["x".into()])
        }))
    );
}

#[test]
fn provider_options_translate() {
    let c = load_ok(&with_jwt(jwt_config(
        json!({
            "from_headers": [{"name": "X-Jwt", "value_prefix": "Bearer "}],
            "from_cookies": ["c"],
            "forward": true,
            "forward_payload_header": "X-Payload",
            "pad_forward_payload_header": true,
            "claim_to_headers": [{"header_name": "X-Sub", "claim_name": "sub"}],
            "payload_in_metadata": "payload",
            "clock_skew_seconds": 5,
        }),
        json!({"bypass_cors_preflight": true, "strip_failure_response": true}),
    )));
    let j = filter_of(&c.listeners[0]);
    let p = j.provider("p").expect("p");
    assert_eq!(p.from_headers[0].name, "x-jwt");
    assert_eq!(p.from_cookies, vec!["c".to_owned()]);
    assert!(p.forward && p.pad_forward_payload_header);
    assert_eq!(p.forward_payload_header, "x-payload");
    assert_eq!(p.claim_to_headers[0].header_name, "x-sub");
    assert_eq!(p.payload_in_metadata, "payload");
    assert_eq!(p.clock_skew_seconds, 5);
    assert!(j.bypass_cors_preflight && j.strip_failure_response);
}

#[test]
fn unsupported_fields_are_refused_by_name() {
    let f = format!("{HCM_PATH}.http_filters[0].typed_config");
    for (provider, top, expect) in [
        (
            json!({"subjects": {"prefix": "spiffe://"}}),
            json!({}),
            format!("{f}.providers[p].subjects"),
        ),
        (
            json!({"require_expiration": true}),
            json!({}),
            format!("{f}.providers[p].require_expiration"),
        ),
        (
            json!({"max_lifetime": "10s"}),
            json!({}),
            format!("{f}.providers[p].max_lifetime"),
        ),
        (
            json!({"clear_route_cache": true}),
            json!({}),
            format!("{f}.providers[p].clear_route_cache"),
        ),
        (
            json!({"failed_status_in_metadata": "x"}),
            json!({}),
            format!("{f}.providers[p].failed_status_in_metadata"),
        ),
        (
            json!({"claim_to_headers": [{"header_name": "x", "claim_path": [{"key": "a"}]}]}),
            json!({}),
            format!("{f}.providers[p].claim_to_headers[0].claim_path"),
        ),
        (
            json!({"local_jwks": {"environment_variable": "JWKS"}}),
            json!({}),
            format!("{f}.providers[p].local_jwks.environment_variable"),
        ),
        (
            json!({}),
            json!({"filter_state_rules": {"name": "x"}}),
            format!("{f}.filter_state_rules"),
        ),
        (
            json!({}),
            json!({"rules": [{"match": {"prefix": "/"}, "requires": {"extract_only_without_validation": {}}}]}),
            format!("{f}.rules[0].requires.extract_only_without_validation"),
        ),
        (
            json!({"local_jwks": null, "remote_jwks": {"http_uri": {"uri": "http://x/k", "cluster": "c", "timeout": "1s"}, "retry_policy": {"retry_on": "5xx"}}}),
            json!({}),
            format!("{f}.providers[p].remote_jwks.retry_policy.retry_on"),
        ),
    ] {
        let text = errors(&with_jwt(jwt_config(provider, top)));
        assert!(text.contains(&expect), "{expect} not in:\n{text}");
    }
}

#[test]
fn unknown_providers_and_requirement_names_are_invalid() {
    let text = errors(&with_jwt(jwt_config(
        json!({}),
        json!({"rules": [
            {"match": {"prefix": "/"}, "requires": {"provider_name": "nope"}},
            {"match": {"prefix": "/"}, "requirement_name": "missing"},
        ]}),
    )));
    assert!(
        text.contains("Required provider ['nope'] is not configured."),
        "{text}"
    );
    assert!(text.contains("rules[1].requirement_name"), "{text}");
    let text = errors(&with_jwt(jwt_config(
        json!({"local_jwks": null, "remote_jwks": {"http_uri": {"uri": "http://x/k", "cluster": "c"}}}),
        json!({}),
    )));
    assert!(text.contains("remote_jwks.http_uri.timeout"), "{text}");
}

#[test]
fn per_route_config_translates() {
    let route = "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/route_config/virtual_hosts/0/routes/0/typed_per_filter_config";
    let mut root: Value = serde_json::from_str(&with_jwt(jwt_config(
        json!({}),
        json!({"requirement_map": {"r": {"provider_name": "p"}}}),
    )))
    .expect("json");
    let (parent, last) = route.rsplit_once('/').expect("parent");
    root.pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .expect("route")
        .insert(
            last.into(),
            json!({"jwt": {"@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig", "requirement_name": "r"}}),
        );
    let c = load_ok(&root.to_string());
    let NetworkFilter::Http(hcm) = &c.listeners[0].filter_chains[0].terminal else {
        panic!("hcm");
    };
    let crate::model::RouteSource::Inline(rc) = &hcm.route_config else {
        panic!("inline routes");
    };
    let overrides = &rc.virtual_hosts[0].routes[0].per_filter_config;
    let found = crate::model::filter::find_override(overrides, "jwt")
        .and_then(crate::model::filter::FilterOverrideConfig::get::<JwtPerRoute>);
    assert_eq!(found, Some(&JwtPerRoute::RequirementName("r".into())));
}

#[test]
fn istio_authn_is_translated_not_inert() {
    use prost::Message;

    use super::{AuthnFilterConfig, AuthnPolicy, IstioJwt, MutualTls, OriginMethod, PeerMethod};
    let config = AuthnFilterConfig {
        policy: Some(AuthnPolicy {
            peers: vec![PeerMethod {
                mtls: Some(MutualTls {
                    allow_tls: false,
                    mode: 1,
                }),
                jwt: None,
            }],
            origins: vec![OriginMethod {
                jwt: Some(IstioJwt {
                    issuer: "https://issuer".into(),
                    ..Default::default()
                }),
            }],
            origin_is_optional: true,
            principal_binding: 1,
            ..Default::default()
        }),
        skip_validate_trust_domain: true,
        ..Default::default()
    };
    let any = envoy_types::pb::google::protobuf::Any {
        type_url: format!("type.googleapis.com/{}", super::ISTIO_AUTHN),
        value: config.encode_to_vec(),
    };
    let mut cx = super::Context::default();
    let ext = super::istio_authn(&mut cx, &any, "f").expect("translated");
    let authn = ext.get::<crate::model::jwt::IstioAuthn>().expect("typed");
    assert_eq!(authn.origins, vec!["https://issuer".to_owned()]);
    assert!(authn.origin_is_optional && authn.principal_from_origin && authn.peer_mtls);
    // STRICT mTLS is refused by name.
    let strict = AuthnFilterConfig {
        policy: Some(AuthnPolicy {
            peers: vec![PeerMethod {
                mtls: Some(MutualTls::default()),
                jwt: None,
            }],
            ..Default::default()
        }),
        skip_validate_trust_domain: true,
        ..Default::default()
    };
    let any = envoy_types::pb::google::protobuf::Any {
        type_url: any.type_url.clone(),
        value: strict.encode_to_vec(),
    };
    let mut cx = super::Context::default();
    assert!(super::istio_authn(&mut cx, &any, "f").is_none());
    assert!(
        render(&cx.problems).contains("f.policy.peers[0].mtls.mode"),
        "{}",
        render(&cx.problems)
    );
}
