//! A cached JWT verification: the key set is already in memory (local, or
//! a remote one in its cache), so the cost is taking the token apart,
//! checking time, issuer and audience, and the signature. Per algorithm,
//! plus the whole requirement evaluation (extraction, verification,
//! header edits and metadata) as the filter runs it.

use std::{hint::black_box, sync::Arc};

use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderMap;
use serde_json::json;
use strait_jwt::{
    authn::{Authn, KeySource, Keys},
    jwks::Jwks,
    testing::{RSA_PKCS8, TestKey, jwks},
    token::Jwt,
    verify::verify_signature,
};
use strait_model::{
    PathMatch, RouteMatch,
    jwt::{
        JwksSource, JwtAuthentication, JwtProvider, JwtRequirement, RequirementRule,
        RuleRequirement,
    },
};

const NOW: u64 = 1_700_000_000;

struct Cached(Arc<Jwks>);

impl KeySource for Cached {
    fn keys(&self, _: usize) -> Keys {
        Keys::Ready(Arc::clone(&self.0))
    }
}

fn bench(c: &mut Criterion) {
    let claims = json!({"iss": "https://issuer", "sub": "alice", "aud": "api", "exp": NOW + 600,
        "groups": ["a", "b"]});
    let keys = [
        TestKey::rsa(RSA_PKCS8, "rsa", "RS256"),
        TestKey::rsa(RSA_PKCS8, "ps", "PS256"),
        TestKey::ec("es256", "ES256"),
        TestKey::ec("es384", "ES384"),
        TestKey::ed25519("ed"),
    ];
    let refs: Vec<&TestKey> = keys.iter().collect();
    let set = Jwks::parse(&jwks(&refs)).expect("jwks");
    for key in &keys {
        let token = key.sign(&claims);
        c.bench_function(&format!("verify {}", key.alg), |b| {
            b.iter(|| {
                let jwt = Jwt::parse(black_box(&token)).expect("parses");
                jwt.check_time(NOW, 60).expect("in time");
                verify_signature(&jwt, &set).expect("verifies");
            })
        });
    }
    // The filter's whole evaluation for an RS256 token in `Authorization`.
    let key = &keys[0];
    let config = JwtAuthentication {
        providers: vec![(
            "p".into(),
            JwtProvider {
                issuer: "https://issuer".into(),
                audiences: vec!["api".into()],
                jwks: JwksSource::Inline(jwks(&refs)),
                forward: false,
                from_headers: Vec::new(),
                from_params: Vec::new(),
                from_cookies: Vec::new(),
                forward_payload_header: "x-payload".into(),
                pad_forward_payload_header: false,
                payload_in_metadata: "p".into(),
                space_delimited_claims: Vec::new(),
                header_in_metadata: String::new(),
                clock_skew_seconds: 0,
                claim_to_headers: Vec::new(),
                jwt_cache_size: None,
            },
        )],
        rules: vec![RequirementRule {
            route_match: RouteMatch::path(PathMatch::Prefix("/".into())),
            requirement: Some(RuleRequirement::Inline(JwtRequirement::Provider {
                name: "p".into(),
                audiences: None,
            })),
        }],
        requirement_map: Vec::new(),
        bypass_cors_preflight: false,
        strip_failure_response: false,
    };
    let authn = Authn::compile(&config).expect("compiles");
    let cached = Cached(Arc::new(set));
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        format!("Bearer {}", key.sign(&claims))
            .parse()
            .expect("header"),
    );
    let method = http::Method::GET;
    c.bench_function(
        "evaluate RS256 requirement (cached JWKS, token seen before)",
        |b| {
            b.iter(|| {
                let view = strait_route::RequestView::new("h", "/api", &method, &headers);
                let req = authn.select(&view).expect("rule");
                let out = authn
                    .evaluate(req, black_box(&headers), "/api", NOW, &cached)
                    .expect("no fetch");
                assert!(out.result.is_ok());
                out
            })
        },
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
