use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde_json::json;
use strait_http::DynamicMetadata;
use strait_model::{
    policy::{HeaderCondition, HeaderConditionKind, ValueMatch, ValueMatcher},
    rbac::{Action, MetadataMatcher, MetadataValue, Permission, Policy, Principal, Rules},
    tls::CidrRange,
};
use strait_tls::PeerIdentity;

use super::*;

fn exact(s: &str) -> ValueMatcher {
    ValueMatcher {
        kind: ValueMatch::Exact(s.to_owned()),
        ignore_case: false,
    }
}

fn prefix(s: &str) -> ValueMatcher {
    ValueMatcher {
        kind: ValueMatch::Prefix(s.to_owned()),
        ignore_case: false,
    }
}

fn header(name: &str, kind: HeaderConditionKind) -> HeaderCondition {
    HeaderCondition {
        name: name.to_owned(),
        kind,
        invert: false,
        missing_as_empty: false,
    }
}

fn cidr(a: [u8; 4], len: u8) -> CidrRange {
    CidrRange {
        address: IpAddr::V4(Ipv4Addr::from(a)),
        prefix_len: len,
    }
}

fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
    let mut b = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).expect("request").into_parts().0
}

struct Conn {
    tls: bool,
    cert: Option<PeerIdentity>,
    sni: Option<&'static str>,
    md: Option<DynamicMetadata>,
}

fn input<'a>(req: Option<&'a http::request::Parts>, c: &'a Conn) -> Input<'a> {
    Input {
        request: req,
        peer: SocketAddr::from(([10, 0, 0, 5], 40000)),
        local: SocketAddr::from(([10, 0, 0, 9], 8080)),
        remote: IpAddr::V4(Ipv4Addr::new(192, 168, 1, 7)),
        tls: c.tls,
        server_name: c.sni,
        peer_cert: c.cert.as_ref(),
        metadata: c.md.as_ref(),
    }
}

const PLAIN: Conn = Conn {
    tls: false,
    cert: None,
    sni: None,
    md: None,
};

fn perm(p: Permission, req: Option<&http::request::Parts>, c: &Conn) -> bool {
    permission(&p, &input(req, c))
}

fn princ(p: Principal, req: Option<&http::request::Parts>, c: &Conn) -> bool {
    principal(&p, &input(req, c))
}

#[test]
fn permissions_match_as_envoy_does() {
    let r = request(
        "GET",
        "/api/v1?q=/admin",
        &[("x-a", "1"), ("x-m", "a"), ("x-m", "b")],
    );
    let req = Some(&r);
    assert!(perm(Permission::Any, req, &PLAIN));
    assert!(
        perm(Permission::UrlPath(exact("/api/v1")), req, &PLAIN),
        "query stripped"
    );
    assert!(!perm(Permission::UrlPath(prefix("/admin")), req, &PLAIN));
    let method = header(":method", HeaderConditionKind::String(exact("GET")));
    assert!(perm(Permission::Header(method), req, &PLAIN));
    let path = header(
        ":path",
        HeaderConditionKind::String(exact("/api/v1?q=/admin")),
    );
    assert!(
        perm(Permission::Header(path), req, &PLAIN),
        ":path keeps the query"
    );
    let joined = header("x-m", HeaderConditionKind::String(exact("a,b")));
    assert!(
        perm(Permission::Header(joined), req, &PLAIN),
        "repeated values joined"
    );
    let range = header("x-a", HeaderConditionKind::Range { start: 0, end: 2 });
    assert!(perm(Permission::Header(range), req, &PLAIN));
    let mut missing = header("x-none", HeaderConditionKind::Present);
    missing.invert = true;
    assert!(
        !perm(Permission::Header(missing.clone()), req, &PLAIN),
        "missing never matches"
    );
    missing.missing_as_empty = true;
    missing.kind = HeaderConditionKind::String(exact(""));
    missing.invert = false;
    assert!(perm(Permission::Header(missing), req, &PLAIN));
    assert!(perm(
        Permission::DestinationIp(cidr([10, 0, 0, 0], 24)),
        req,
        &PLAIN
    ));
    assert!(perm(Permission::DestinationPort(8080), req, &PLAIN));
    assert!(!perm(Permission::DestinationPort(80), req, &PLAIN));
    assert!(perm(
        Permission::DestinationPortRange {
            start: 8000,
            end: 8081
        },
        req,
        &PLAIN
    ));
    assert!(!perm(
        Permission::DestinationPortRange {
            start: 8000,
            end: 8080
        },
        req,
        &PLAIN
    ));
    assert!(
        perm(Permission::RequestedServerName(exact("")), req, &PLAIN),
        "no SNI is empty"
    );
    let sni = Conn {
        sni: Some("a.local"),
        ..PLAIN
    };
    assert!(perm(
        Permission::RequestedServerName(exact("a.local")),
        req,
        &sni
    ));
    let both = Permission::And(vec![Permission::Any, Permission::DestinationPort(8080)]);
    assert!(perm(both, req, &PLAIN));
    let either = Permission::Or(vec![Permission::DestinationPort(1), Permission::Any]);
    assert!(perm(either, req, &PLAIN));
    assert!(!perm(
        Permission::Not(Box::new(Permission::Any)),
        req,
        &PLAIN
    ));
    // A connection has no request: header and path matchers see nothing.
    assert!(!perm(Permission::UrlPath(prefix("/")), None, &PLAIN));
    let m = header(":method", HeaderConditionKind::Present);
    assert!(!perm(Permission::Header(m), None, &PLAIN));
}

#[test]
fn principals_match_as_envoy_does() {
    let r = request("GET", "/", &[]);
    let req = Some(&r);
    assert!(princ(
        Principal::SourceIp(cidr([10, 0, 0, 0], 8)),
        req,
        &PLAIN
    ));
    assert!(princ(
        Principal::DirectRemoteIp(cidr([10, 0, 0, 5], 32)),
        req,
        &PLAIN
    ));
    assert!(princ(
        Principal::RemoteIp(cidr([192, 168, 1, 0], 24)),
        req,
        &PLAIN
    ));
    assert!(!princ(
        Principal::RemoteIp(cidr([10, 0, 0, 0], 8)),
        req,
        &PLAIN
    ));
    assert!(
        !princ(Principal::Authenticated(None), req, &PLAIN),
        "plaintext"
    );
    let tls = Conn { tls: true, ..PLAIN };
    assert!(
        princ(Principal::Authenticated(None), req, &tls),
        "any TLS connection"
    );
    assert!(
        princ(Principal::Authenticated(Some(exact(""))), req, &tls),
        "no cert: empty subject"
    );
    let cert = Conn {
        tls: true,
        cert: Some(PeerIdentity {
            uri_sans: vec!["spiffe://td/ns/a/sa/b".into()].into(),
            dns_sans: vec!["b.local".into()].into(),
            subject: "CN=b,O=Acme".into(),
        }),
        ..PLAIN
    };
    for name in ["spiffe://td/ns/a/sa/b", "b.local", "CN=b,O=Acme"] {
        assert!(
            princ(Principal::Authenticated(Some(exact(name))), req, &cert),
            "{name}"
        );
    }
    assert!(!princ(
        Principal::Authenticated(Some(exact("x"))),
        req,
        &cert
    ));
    assert!(princ(
        Principal::IstioPeerPrincipal(exact("spiffe://td/ns/a/sa/b")),
        req,
        &cert
    ));
    assert!(
        !princ(Principal::IstioPeerPrincipal(exact("")), req, &tls),
        "no cert, no principal"
    );
    let all = Principal::And(vec![Principal::Any, Principal::Authenticated(None)]);
    assert!(princ(all, req, &cert));
    let not = Principal::Not(Box::new(Principal::Authenticated(None)));
    assert!(princ(not, req, &PLAIN));
    let or = Principal::Or(vec![
        Principal::Not(Box::new(Principal::Any)),
        Principal::Any,
    ]);
    assert!(princ(or, req, &PLAIN));
}

#[test]
fn metadata_matchers_walk_dynamic_metadata() {
    let mut md = DynamicMetadata::default();
    md.set(
        "jwt",
        "payload",
        json!({"iss": "https://issuer", "groups": ["dev", "ops"], "n": 3, "ok": true, "nil": null}),
    );
    let c = Conn {
        md: Some(md),
        ..PLAIN
    };
    let m = |path: &[&str], value: MetadataValue, invert: bool| {
        Principal::Metadata(MetadataMatcher {
            filter: "jwt".into(),
            path: path.iter().map(|s| (*s).to_owned()).collect(),
            value,
            invert,
        })
    };
    let iss = MetadataValue::String(exact("https://issuer"));
    assert!(princ(m(&["payload", "iss"], iss.clone(), false), None, &c));
    assert!(!princ(m(&["payload", "iss"], iss.clone(), true), None, &c));
    assert!(!princ(
        m(&["payload", "missing"], iss.clone(), false),
        None,
        &c
    ));
    assert!(
        princ(m(&["payload", "missing"], iss, true), None, &c),
        "inverted missing"
    );
    let group = MetadataValue::ListOneOf(Box::new(MetadataValue::String(exact("ops"))));
    assert!(princ(m(&["payload", "groups"], group, false), None, &c));
    assert!(princ(
        m(&["payload", "n"], MetadataValue::DoubleExact(3.0), false),
        None,
        &c
    ));
    let range = MetadataValue::DoubleRange {
        start: 3.0,
        end: 4.0,
    };
    assert!(princ(m(&["payload", "n"], range, false), None, &c));
    assert!(princ(
        m(&["payload", "ok"], MetadataValue::Bool(true), false),
        None,
        &c
    ));
    assert!(princ(
        m(&["payload", "nil"], MetadataValue::Null, false),
        None,
        &c
    ));
    assert!(princ(
        m(&["payload"], MetadataValue::Present(true), false),
        None,
        &c
    ));
    assert!(!princ(
        m(&["payload"], MetadataValue::Present(false), false),
        None,
        &c
    ));
    let or = MetadataValue::Or(vec![MetadataValue::Bool(false), MetadataValue::Bool(true)]);
    assert!(princ(m(&["payload", "ok"], or, false), None, &c));
    assert!(!princ(
        m(&["payload", "iss"], MetadataValue::Present(true), false),
        None,
        &PLAIN
    ));
}

fn policy(name: &str, path: &str) -> Policy {
    Policy {
        name: name.into(),
        permissions: vec![Permission::UrlPath(prefix(path))],
        principals: vec![Principal::Any],
    }
}

#[test]
fn actions_and_the_effective_policy() {
    let r = request("GET", "/a/b", &[]);
    let i = input(Some(&r), &PLAIN);
    let rules = |action| Rules {
        action,
        // Sorted by name, as the front end sorts them: "a-first" wins.
        policies: vec![policy("a-first", "/a"), policy("b-second", "/a/b")],
    };
    let (allow, deny, log) = (
        rules(Action::Allow),
        rules(Action::Deny),
        rules(Action::Log),
    );
    let v = evaluate(&allow, &i);
    assert_eq!((v.allowed, v.policy, v.log), (true, Some("a-first"), None));
    let v = evaluate(&deny, &i);
    assert_eq!((v.allowed, v.policy), (false, Some("a-first")));
    let v = evaluate(&log, &i);
    assert_eq!((v.allowed, v.log), (true, Some(true)));
    let other = request("GET", "/z", &[]);
    let o = input(Some(&other), &PLAIN);
    let v = evaluate(&allow, &o);
    assert_eq!((v.allowed, v.policy), (false, None));
    assert!(evaluate(&deny, &o).allowed);
    assert_eq!(evaluate(&log, &o).log, Some(false));
    assert!(
        !evaluate(&Rules::default(), &o).allowed,
        "empty ALLOW denies"
    );
    // A policy needs a permission and a principal.
    let half = Rules {
        action: Action::Allow,
        policies: vec![Policy {
            principals: vec![],
            ..policy("p", "/")
        }],
    };
    assert!(!evaluate(&half, &i).allowed);
}

#[test]
fn denial_details_name_the_policy_as_envoy_does() {
    assert_eq!(
        crate::http::details(Some("ns[a]-policy[b] rule\t0")),
        "rbac_access_denied_matched_policy[ns[a]-policy[b]_rule_0]"
    );
    assert_eq!(
        crate::http::details(None),
        "rbac_access_denied_matched_policy[none]"
    );
}
