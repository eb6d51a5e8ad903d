//! JWT authentication against the real Envoy 1.40: the same
//! `jwt_authn` config and the same requests through Strait and Envoy, the
//! same status, body, `www-authenticate` and upstream-seen headers
//! expected. Keys are made in the test (the RSA one is the committed test
//! key, as `ring` cannot generate RSA keys); remote key sets come from a
//! JWKS server running in the test, through a cluster.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::{server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use strait_jwt::testing::{RSA_PKCS8, TestKey, jwks};
use strait_test_support::{
    bootstrap::{HttpBootstrap, closed_port, static_cluster},
    client::{Client, Reply},
    envoy::Envoy,
    proxy::TestProxy,
    upstream::{Upstream, http_echo},
};

/// A JWKS server: answers every request with `body`, counting them.
struct JwksServer {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

fn jwks_server(body: String) -> JwksServer {
    let std = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    std.set_nonblocking(true).expect("nonblocking");
    let addr = std.local_addr().expect("addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let body = Bytes::from(body);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std).expect("listener");
            while let Ok((stream, _)) = listener.accept().await {
                let (body, counter) = (body.clone(), Arc::clone(&counter));
                tokio::spawn(async move {
                    let svc = service_fn(move |_req: Request<hyper::body::Incoming>| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let body = body.clone();
                        async move {
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .header("content-type", "application/json")
                                    .body(Full::new(body))
                                    .expect("response"),
                            )
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    });
    JwksServer { addr, hits }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn claims(extra: Value) -> Value {
    let mut c = json!({
        "iss": "https://issuer.example", "sub": "alice", "aud": "api",
        "exp": now() + 3600, "groups": ["a", "b"], "level": 3,
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        c[k] = v;
    }
    c
}

/// One request of a case.
struct Req {
    path: String,
    headers: Vec<(&'static str, String)>,
}

fn get(path: &str) -> Req {
    Req {
        path: path.to_owned(),
        headers: Vec::new(),
    }
}

fn bearer(path: &str, token: &str) -> Req {
    Req {
        path: path.to_owned(),
        headers: vec![("authorization", format!("Bearer {token}"))],
    }
}

/// What the client and the upstream saw.
#[derive(Debug, PartialEq)]
struct Observed {
    status: u16,
    www_authenticate: Option<String>,
    local_body: Option<String>,
    upstream_path: Option<String>,
    upstream_headers: BTreeMap<String, String>,
}

/// Upstream-seen headers the JWT filter adds or removes.
const SEEN: &[&str] = &[
    "authorization",
    "x-jwt-payload",
    "x-sub",
    "x-level",
    "x-token",
    "cookie",
];

fn observe(r: &Reply) -> Observed {
    let mut upstream_headers = BTreeMap::new();
    let (mut upstream_path, mut local_body) = (None, None);
    if r.header("x-upstream").is_some() {
        let echo = r.json();
        upstream_path = echo["path"].as_str().map(str::to_owned);
        for h in echo["headers"].as_array().into_iter().flatten() {
            let (k, v) = (h[0].as_str().unwrap_or(""), h[1].as_str().unwrap_or(""));
            if SEEN.contains(&k) {
                upstream_headers.insert(k.to_owned(), v.to_owned());
            }
        }
    } else {
        local_body = Some(r.text());
    }
    Observed {
        status: r.status.as_u16(),
        www_authenticate: r.header("www-authenticate").map(str::to_owned),
        local_body,
        upstream_path,
        upstream_headers,
    }
}

async fn send(addr: SocketAddr, req: &Req) -> anyhow::Result<Observed> {
    let mut c = Client::http1(addr).await?;
    let mut b = Request::builder()
        .method("GET")
        .uri(&req.path)
        .header("host", "jwt.test");
    for (k, v) in &req.headers {
        b = b.header(*k, v);
    }
    Ok(observe(&c.send(b.body(Full::new(Bytes::new()))?).await?))
}

/// A bootstrap with one listener running `jwt_config` (the filter's
/// `typed_config` body, YAML at its indentation) before the router, and
/// clusters `a` (the echo upstream) and `jwks` (at `jwks`).
fn bootstrap(jwt_config: &str, upstream: &Upstream, jwks: SocketAddr) -> String {
    let jwt_config: String = jwt_config
        .lines()
        .map(|l| format!("              {l}\n"))
        .collect();
    let filters = format!(
        "          - name: envoy.filters.http.jwt_authn\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication\n{}",
        jwt_config.trim_end_matches('\n')
    );
    let clusters = [
        static_cluster("a", upstream.addr.port(), false),
        static_cluster("jwks", jwks.port(), false),
        static_cluster("dead", closed_port(), false),
    ]
    .concat();
    HttpBootstrap {
        stat_prefix: "jwt",
        filters: &filters,
        routes: "              - match: {prefix: \"/\"}\n                route: {cluster: a}",
        chain_extra: "",
        clusters: &clusters,
    }
    .render()
}

/// Runs `requests` through Strait and Envoy on the same config and
/// compares every answer; all differences are reported.
async fn differential(case: &str, yaml: &str, requests: &[Req]) -> anyhow::Result<()> {
    let strait = TestProxy::start(yaml, 1);
    let envoy = Envoy::start(yaml);
    let mut diffs = Vec::new();
    for req in requests {
        let ours = send(strait.listener("listener"), req).await?;
        let theirs = send(envoy.listener("listener"), req).await?;
        if std::env::var_os("DIFF_VERBOSE").is_some() {
            eprintln!("{case}: {}: {ours:?}", req.path);
        }
        if ours != theirs {
            diffs.push(format!(
                "{case}: {} {:?}:\n  strait: {ours:?}\n  envoy:  {theirs:?}",
                req.path, req.headers
            ));
        }
    }
    let stats = |admin| strait_test_support::admin::prometheus_lines(admin, "jwt_authn");
    let (ours, theirs) = (stats(strait.admin()).await?, stats(envoy.admin()).await?);
    assert!(!theirs.is_empty(), "{case}: Envoy shows no jwt_authn stats");
    if ours != theirs {
        diffs.push(format!(
            "{case}: stats\n  strait: {ours:?}\n  envoy:  {theirs:?}"
        ));
    }
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    Ok(())
}

fn yaml_string(s: &str) -> String {
    serde_json::to_string(s).expect("string")
}

/// Local key sets: valid tokens of two algorithms, expired, not yet valid,
/// bad signature, wrong issuer, wrong audience, malformed, missing and
/// `allow_missing`, a token in a query parameter and in a custom header
/// with a prefix; the payload and claims forwarded to the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_jwks_cases_match_envoy() -> anyhow::Result<()> {
    let rsa = TestKey::rsa(RSA_PKCS8, "rsa-1", "RS256");
    let ec = TestKey::ec("ec-1", "ES256");
    let ed = TestKey::ed25519("ed-1");
    let stranger = TestKey::ec("ec-1", "ES256");
    let set = jwks(&[&rsa, &ec, &ed]);
    let config = format!(
        r#"providers:
  main:
    issuer: https://issuer.example
    audiences: [api]
    local_jwks: {{inline_string: {set}}}
    forward_payload_header: x-jwt-payload
    claim_to_headers:
    - {{header_name: x-sub, claim_name: sub}}
    - {{header_name: x-level, claim_name: level}}
    payload_in_metadata: main
  custom:
    issuer: https://custom.example
    local_jwks: {{inline_string: {set}}}
    from_headers: [{{name: x-token, value_prefix: "Token "}}]
    from_cookies: [jwt]
    forward: true
rules:
- match: {{prefix: /optional}}
  requires: {{allow_missing: {{}}}}
- match: {{prefix: /custom}}
  requires: {{provider_name: custom}}
- match: {{prefix: /open}}
- match: {{prefix: /}}
  requires: {{provider_name: main}}
"#,
        set = yaml_string(&set)
    );
    let a = http_echo("a");
    let jwks_srv = jwks_server(set.clone());
    let yaml = bootstrap(&config, &a, jwks_srv.addr);
    let good = rsa.sign(&claims(json!({})));
    let reqs = [
        bearer("/api", &good),
        bearer("/api?x=1", &ec.sign(&claims(json!({})))),
        bearer("/api", &ed.sign(&claims(json!({})))),
        bearer("/api", &rsa.sign(&claims(json!({"exp": now() - 3600})))),
        bearer("/api", &rsa.sign(&claims(json!({"nbf": now() + 3600})))),
        bearer("/api", &stranger.sign(&claims(json!({})))),
        bearer(
            "/api",
            &rsa.sign(&claims(json!({"iss": "https://other.example"}))),
        ),
        bearer("/api", &rsa.sign(&claims(json!({"aud": "elsewhere"})))),
        bearer("/api", "not-a-token"),
        get("/api"),
        get("/optional"),
        bearer(
            "/optional",
            &rsa.sign(&claims(json!({"exp": now() - 3600}))),
        ),
        get(&format!("/api?access_token={good}")),
        get(&format!("/api?a=1&access_token={good}&b=2")),
        get("/open"),
        Req {
            path: "/custom".into(),
            headers: vec![(
                "x-token",
                format!(
                    "Token {}",
                    ec.sign(&claims(json!({"iss": "https://custom.example"})))
                ),
            )],
        },
        get("/custom"),
        Req {
            path: "/custom".into(),
            headers: vec![(
                "cookie",
                format!(
                    "a=b; jwt={}",
                    ec.sign(&claims(json!({"iss": "https://custom.example"})))
                ),
            )],
        },
    ];
    differential("local", &yaml, &reqs).await
}

/// Remote key sets through a cluster: a JWKS server in the test answers,
/// the set is cached (fetched once for several requests); a key set
/// behind a cluster nobody listens on fails as Envoy fails it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_jwks_cases_match_envoy() -> anyhow::Result<()> {
    let key = TestKey::rsa(RSA_PKCS8, "remote-1", "RS256");
    let other = TestKey::ec("remote-2", "ES256");
    let jwks_srv = jwks_server(jwks(&[&key]));
    let config = r#"providers:
  remote:
    issuer: https://issuer.example
    audiences: [api]
    remote_jwks:
      http_uri: {uri: "http://jwks.test/keys", cluster: jwks, timeout: 2s}
      cache_duration: 300s
    forward_payload_header: x-jwt-payload
  down:
    issuer: https://down.example
    remote_jwks:
      http_uri: {uri: "http://down.test/keys", cluster: dead, timeout: 1s}
rules:
- match: {prefix: /down}
  requires: {provider_name: down}
- match: {prefix: /}
  requires: {provider_name: remote}
"#;
    let a = http_echo("a");
    let yaml = bootstrap(config, &a, jwks_srv.addr);
    let reqs = [
        bearer("/api", &key.sign(&claims(json!({})))),
        bearer("/api", &key.sign(&claims(json!({"sub": "bob"})))),
        bearer("/api", &other.sign(&claims(json!({})))),
        get("/api"),
        bearer(
            "/down",
            &key.sign(&claims(json!({"iss": "https://down.example"}))),
        ),
    ];
    differential("remote", &yaml, &reqs).await?;
    // Strait and Envoy each fetched the set once and served the other
    // requests from their caches.
    assert_eq!(jwks_srv.hits.load(Ordering::SeqCst), 2);
    Ok(())
}
