//! Verification (every algorithm, key choice, clock skew, issuer and
//! audience) and Envoy's requirement semantics, with a fixed clock.

use std::sync::Arc;

use http::HeaderMap;
use serde_json::{Value, json};
use strait_model::{
    PathMatch, RouteMatch,
    jwt::{
        JwksSource, JwtAuthentication, JwtHeader, JwtProvider, JwtRequirement, RequirementRule,
        RuleRequirement,
    },
};

use super::*;
use crate::{
    jwks::Jwks,
    testing::{RSA_PKCS8, TestKey, jwks},
    token::Jwt,
    verify::verify_signature,
};

const NOW: u64 = 1_700_000_000;

fn claims(extra: Value) -> Value {
    let mut c = json!({"iss": "https://issuer", "sub": "alice", "aud": "api", "exp": NOW + 600});
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        c[k] = v;
    }
    c
}

fn check(_key: &TestKey, set: &str, token: &str) -> Result<(), Status> {
    let set = Jwks::parse(set)?;
    let jwt = Jwt::parse(token)?;
    verify_signature(&jwt, &set)
}

#[test]
fn every_algorithm_verifies_and_rejects_a_forgery() {
    let keys = [
        TestKey::rsa(RSA_PKCS8, "r1", "RS256"),
        TestKey::rsa(RSA_PKCS8, "r3", "RS384"),
        TestKey::rsa(RSA_PKCS8, "r5", "RS512"),
        TestKey::rsa(RSA_PKCS8, "p1", "PS256"),
        TestKey::rsa(RSA_PKCS8, "p3", "PS384"),
        TestKey::rsa(RSA_PKCS8, "p5", "PS512"),
        TestKey::ec("e2", "ES256"),
        TestKey::ec("e3", "ES384"),
        TestKey::ed25519("ed"),
        TestKey::hmac("h", "HS256", b"a shared secret of some length"),
    ];
    let other_ec = TestKey::ec("e2", "ES256");
    for key in &keys {
        let set = jwks(&[key]);
        let token = key.sign(&claims(json!({})));
        assert_eq!(check(key, &set, &token), Ok(()), "{}", key.alg);
        // Same header and payload, signature of a different payload.
        let forged = {
            let other = key.sign(&claims(json!({"sub": "mallory"})));
            let sig = other.rsplit('.').next().unwrap_or("");
            let (signed, _) = token.rsplit_once('.').unwrap_or(("", ""));
            format!("{signed}.{sig}")
        };
        assert_eq!(
            check(key, &set, &forged),
            Err(Status::JwtVerificationFail),
            "{}",
            key.alg
        );
    }
    // An ES256 token signed by another key with the same kid.
    let token = other_ec.sign(&claims(json!({})));
    assert_eq!(
        check(&keys[6], &jwks(&[&keys[6]]), &token),
        Err(Status::JwtVerificationFail)
    );
}

#[test]
fn keys_are_chosen_by_kid_and_alg_and_tried_in_turn_without_kid() {
    let a = TestKey::ec("a", "ES256");
    let b = TestKey::ec("b", "ES256");
    let set = jwks(&[&a, &b]);
    assert_eq!(check(&b, &set, &b.sign(&claims(json!({})))), Ok(()));
    // A kid no key has: nothing to try.
    let mut c = TestKey::ec("c", "ES256");
    assert_eq!(
        check(&c, &set, &c.sign(&claims(json!({})))),
        Err(Status::JwksKidAlgMismatch)
    );
    // Without a kid, every key is tried: b's token verifies with b.
    let token = b.sign_with_header(&json!({"alg": "ES256"}), &claims(json!({})));
    assert_eq!(check(&b, &set, &token), Ok(()));
    // A key without a kid is tried for any kid.
    c.kid.clear();
    let set = jwks(&[&a, &c]);
    let c_token = c.sign_with_header(&json!({"alg": "ES256", "kid": "zzz"}), &claims(json!({})));
    assert_eq!(check(&c, &set, &c_token), Ok(()));
    // A key whose alg differs from the token's is skipped.
    let rs = TestKey::rsa(RSA_PKCS8, "r", "RS256");
    let set = jwks(&[&rs]);
    let ps_token = TestKey::rsa(RSA_PKCS8, "r", "PS256").sign(&claims(json!({})));
    assert_eq!(check(&rs, &set, &ps_token), Err(Status::JwksKidAlgMismatch));
}

#[test]
fn malformed_tokens_and_key_sets_get_envoys_statuses() {
    assert_eq!(Jwt::parse("a.b").err(), Some(Status::JwtBadFormat));
    assert_eq!(
        Jwt::parse("!!.b.c").err(),
        Some(Status::JwtHeaderParseErrorBadBase64)
    );
    let none = TestKey::hmac("", "none", b"x");
    let token = none.sign_with_header(&json!({"alg": "none"}), &claims(json!({})));
    assert_eq!(
        Jwt::parse(&token).err(),
        Some(Status::JwtHeaderNotImplementedAlg)
    );
    let k = TestKey::ec("", "ES256");
    let bad_exp = k.sign(&claims(json!({"exp": "soon"})));
    assert_eq!(
        Jwt::parse(&bad_exp).err(),
        Some(Status::JwtPayloadParseErrorExpNotInteger)
    );
    let bad_aud = k.sign(&claims(json!({"aud": [1]})));
    assert_eq!(
        Jwt::parse(&bad_aud).err(),
        Some(Status::JwtPayloadParseErrorAudNotString)
    );
    assert_eq!(Jwks::parse("nope").err(), Some(Status::JwksParseError));
    assert_eq!(Jwks::parse("{}").err(), Some(Status::JwksNoKeys));
    assert_eq!(
        Jwks::parse(r#"{"keys": 1}"#).err(),
        Some(Status::JwksBadKeys)
    );
    assert_eq!(
        Jwks::parse(r#"{"keys": [{"kty": "RSA", "n": "AQAB", "e": "Aw", "alg": "ES256"}]}"#).err(),
        Some(Status::JwksNoValidKeys)
    );
}

#[test]
fn time_checks_use_the_skew() {
    let k = TestKey::ec("", "ES256");
    let t = k.sign(&claims(json!({"exp": NOW - 30, "nbf": NOW - 100})));
    let jwt = Jwt::parse(&t).expect("parses");
    assert_eq!(jwt.check_time(NOW, 60), Ok(()));
    assert_eq!(jwt.check_time(NOW, 10), Err(Status::JwtExpired));
    let t = k.sign(&claims(json!({"nbf": NOW + 30})));
    let jwt = Jwt::parse(&t).expect("parses");
    assert_eq!(jwt.check_time(NOW, 60), Ok(()));
    assert_eq!(jwt.check_time(NOW, 10), Err(Status::JwtNotYetValid));
}

#[test]
fn audiences_ignore_scheme_and_trailing_slash() {
    let allowed = vec!["https://api.example.com/".to_owned()];
    assert!(audiences_allowed(&allowed, &["api.example.com".to_owned()]));
    assert!(audiences_allowed(
        &allowed,
        &["http://api.example.com".to_owned()]
    ));
    assert!(!audiences_allowed(&allowed, &["other".to_owned()]));
    assert!(audiences_allowed(&[], &[]));
}

struct Fixed(Vec<Arc<Jwks>>);

impl KeySource for Fixed {
    fn keys(&self, provider: usize) -> Keys {
        Keys::Ready(Arc::clone(&self.0[provider]))
    }
}

fn provider(issuer: &str, key: &TestKey, extra: impl FnOnce(&mut JwtProvider)) -> JwtProvider {
    let mut p = JwtProvider {
        issuer: issuer.to_owned(),
        audiences: vec!["api".into()],
        jwks: JwksSource::Inline(jwks(&[key])),
        forward: false,
        from_headers: Vec::new(),
        from_params: Vec::new(),
        from_cookies: Vec::new(),
        forward_payload_header: String::new(),
        pad_forward_payload_header: false,
        payload_in_metadata: String::new(),
        space_delimited_claims: Vec::new(),
        header_in_metadata: String::new(),
        clock_skew_seconds: 0,
        claim_to_headers: Vec::new(),
        jwt_cache_size: None,
    };
    extra(&mut p);
    p
}

fn config(providers: Vec<(&str, JwtProvider)>, requirement: JwtRequirement) -> JwtAuthentication {
    JwtAuthentication {
        providers: providers
            .into_iter()
            .map(|(n, p)| (n.to_owned(), p))
            .collect(),
        rules: vec![RequirementRule {
            route_match: RouteMatch::path(PathMatch::Prefix("/".into())),
            requirement: Some(RuleRequirement::Inline(requirement)),
        }],
        requirement_map: Vec::new(),
        bypass_cors_preflight: false,
        strip_failure_response: false,
    }
}

fn run(c: &JwtAuthentication, headers: &HeaderMap, path: &str) -> Outcome {
    let authn = Authn::compile(c).expect("compiles");
    let keys = Fixed(
        c.providers
            .iter()
            .map(|(_, p)| match &p.jwks {
                JwksSource::Inline(t) => Arc::new(Jwks::parse(t).expect("jwks")),
                _ => Arc::new(Jwks::default()),
            })
            .collect(),
    );
    let method = http::Method::GET;
    let view = strait_route::RequestView::new("host", path, &method, headers);
    let req = authn.select(&view).expect("a rule matches");
    authn
        .evaluate(req, headers, path, NOW, &keys)
        .expect("no fetch")
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    h
}

fn provider_req(name: &str) -> JwtRequirement {
    JwtRequirement::Provider {
        name: name.into(),
        audiences: None,
    }
}

#[test]
fn a_good_token_is_removed_forwarded_and_published() {
    let k = TestKey::ec("k", "ES256");
    let c = config(
        vec![(
            "p",
            provider("https://issuer", &k, |p| {
                p.forward_payload_header = "x-payload".into();
                p.payload_in_metadata = "payload".into();
                p.space_delimited_claims = vec!["scope".into(), "permission".into(), "sub".into()];
                p.claim_to_headers = vec![strait_model::jwt::ClaimToHeader {
                    header_name: "x-sub".into(),
                    claim_name: "sub".into(),
                }];
            }),
        )],
        provider_req("p"),
    );
    let token = k.sign(&claims(
        json!({"scope": " read  write ", "permission": ["x y"]}),
    ));
    let out = run(&c, &bearer(&token), "/");
    assert_eq!(out.result, Ok(()));
    let payload_b64 = token.split('.').nth(1).expect("payload");
    assert!(out.edits.contains(&Edit::Append(
        HeaderName::from_static("x-payload"),
        HeaderValue::from_str(payload_b64).expect("value")
    )));
    assert!(out.edits.contains(&Edit::Append(
        HeaderName::from_static("x-sub"),
        HeaderValue::from_static("alice")
    )));
    assert!(
        out.edits
            .contains(&Edit::Remove(http::header::AUTHORIZATION))
    );
    // Space-delimited claims become lists in the metadata (not in the
    // forwarded payload); a claim that is not a string is left alone.
    assert_eq!(out.metadata["payload"]["sub"], json!(["alice"]));
    assert_eq!(out.metadata["payload"]["scope"], json!(["read", "write"]));
    assert_eq!(out.metadata["payload"]["permission"], json!(["x y"]));
}

#[test]
fn issuer_audience_and_missing_tokens_fail_as_envoy_says() {
    let k = TestKey::ec("k", "ES256");
    let c = config(
        vec![("p", provider("https://issuer", &k, |_| {}))],
        provider_req("p"),
    );
    let wrong_iss = k.sign(&claims(json!({"iss": "other"})));
    assert_eq!(
        run(&c, &bearer(&wrong_iss), "/").result,
        Err(Some(Status::JwtUnknownIssuer))
    );
    let wrong_aud = k.sign(&claims(json!({"aud": "elsewhere"})));
    assert_eq!(
        run(&c, &bearer(&wrong_aud), "/").result,
        Err(Some(Status::JwtAudienceNotAllowed))
    );
    assert_eq!(
        run(&c, &HeaderMap::new(), "/").result,
        Err(Some(Status::JwtMissed))
    );
    // The default locations include `access_token`.
    let good = k.sign(&claims(json!({})));
    assert_eq!(
        run(&c, &HeaderMap::new(), &format!("/x?access_token={good}")).result,
        Ok(())
    );
}

#[test]
fn allow_missing_and_requires_any_combine_as_envoy() {
    let a = TestKey::ec("a", "ES256");
    let b = TestKey::ed25519("b");
    let pa = provider("iss-a", &a, |p| {
        p.from_headers = vec![JwtHeader {
            name: "x-a".into(),
            value_prefix: String::new(),
        }];
    });
    let pb = provider("iss-b", &b, |_| {});
    let providers = || vec![("a", pa.clone()), ("b", pb.clone())];
    let any = |list: Vec<JwtRequirement>| config(providers(), JwtRequirement::RequiresAny(list));
    let mut h = HeaderMap::new();
    // allow_missing: no token passes, a bad one fails.
    let c = config(providers(), JwtRequirement::AllowMissing);
    assert_eq!(run(&c, &h, "/").result, Ok(()));
    let expired = b.sign(&claims(json!({"iss": "iss-b", "exp": NOW - 3600})));
    assert_eq!(
        run(&c, &bearer(&expired), "/").result,
        Err(Some(Status::JwtExpired))
    );
    // allow_missing_or_failed: even a bad one passes.
    let c = config(providers(), JwtRequirement::AllowMissingOrFailed);
    assert_eq!(run(&c, &bearer(&expired), "/").result, Ok(()));
    // requires_any of a, b: b's token suffices.
    let c = any(vec![provider_req("a"), provider_req("b")]);
    let good_b = b.sign(&claims(json!({"iss": "iss-b"})));
    assert_eq!(run(&c, &bearer(&good_b), "/").result, Ok(()));
    // Nothing at all: missing.
    assert_eq!(run(&c, &h, "/").result, Err(Some(Status::JwtMissed)));
    // With allow_missing in the list, missing passes but a bad token fails
    // with its own error rather than "missing".
    let c = any(vec![provider_req("a"), JwtRequirement::AllowMissing]);
    assert_eq!(run(&c, &h, "/").result, Ok(()));
    let bad_a = a.sign(&claims(json!({"iss": "iss-a", "aud": "nope"})));
    h.insert("x-a", bad_a.parse().expect("header"));
    assert_eq!(
        run(&c, &h, "/").result,
        Err(Some(Status::JwtAudienceNotAllowed))
    );
    // requires_all: both needed.
    let c = config(
        providers(),
        JwtRequirement::RequiresAll(vec![provider_req("a"), provider_req("b")]),
    );
    let mut both = bearer(&good_b);
    both.insert(
        "x-a",
        a.sign(&claims(json!({"iss": "iss-a"})))
            .parse()
            .expect("header"),
    );
    assert_eq!(run(&c, &both, "/").result, Ok(()));
    assert_eq!(
        run(&c, &bearer(&good_b), "/").result,
        Err(Some(Status::JwtMissed))
    );
}

#[test]
fn value_prefixes_and_cookies_find_tokens() {
    let k = TestKey::ec("k", "ES256");
    let c = config(
        vec![(
            "p",
            provider("https://issuer", &k, |p| {
                p.from_headers = vec![JwtHeader {
                    name: "x-token".into(),
                    value_prefix: "Token ".into(),
                }];
                p.from_cookies = vec!["jwt".into()];
            }),
        )],
        provider_req("p"),
    );
    let token = k.sign(&claims(json!({})));
    let mut h = HeaderMap::new();
    h.insert(
        "x-token",
        format!("scheme=x, Token {token}, other")
            .parse()
            .expect("header"),
    );
    assert_eq!(run(&c, &h, "/").result, Ok(()));
    let mut h = HeaderMap::new();
    h.insert(
        "cookie",
        format!("a=b; jwt={token}").parse().expect("header"),
    );
    assert_eq!(run(&c, &h, "/").result, Ok(()));
}
