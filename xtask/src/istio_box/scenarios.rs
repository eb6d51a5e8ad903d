//! The scenarios: requests through the ingress gateway (and the sidecars'
//! own ports) after writing BookInfo's routing samples into istiod's config
//! directory. Each returns a one-line detail on success.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use super::{
    mesh::{GATEWAY, GATEWAY_PORT},
    pods::Mesh,
};

/// BookInfo's samples, as shipped in `../shared/istio/bookinfo/`.
const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/istio/bookinfo");

pub struct Outcome {
    pub number: u32,
    pub title: &'static str,
    pub outcome: Result<String>,
}

type Scenario = fn(&mut Mesh) -> Result<String>;

const SCENARIOS: &[(u32, &str, Scenario)] = &[
    (
        9,
        "sidecars and gateway ready on 15021 (pilot-agent's probe)",
        ready,
    ),
    (
        1,
        "all traffic to reviews v1 (virtual-service-all-v1)",
        all_v1,
    ),
    (
        2,
        "reviews 50/50 v1/v3 over 400 requests (reviews-50-v3)",
        fifty_fifty,
    ),
    (
        3,
        "end-user jason to v2, others v1 (reviews-test-v2)",
        jason_v2,
    ),
    (
        4,
        "ratings delay 7 s and abort 500 for jason (ratings-test-*)",
        ratings_faults,
    ),
    (
        5,
        "routing change under load: in effect < 2 s, no failures",
        change_under_load,
    ),
    (
        6,
        "mTLS STRICT: identities checked, plaintext refused",
        strict_mtls,
    ),
    (7, "AuthorizationPolicy DENY of one caller", deny_policy),
    (
        12,
        "RequestAuthentication: JWT at productpage (401, 403, 200)",
        request_authentication,
    ),
    (
        8,
        "telemetry: istio_requests_total on 15020 with workloads",
        telemetry,
    ),
    (
        10,
        "xDS flavour as pilot-agent's bootstrap asks (delta/SotW)",
        xds_flavour,
    ),
    (11, "pilot-agent shutdown drains its sidecar cleanly", drain),
];

pub fn run_all(mesh: &mut Mesh, options: &super::Options) -> Vec<Outcome> {
    // BookInfo's Gateway and its VirtualService, and the destination rules
    // (subsets) every routing sample needs.
    let base = apply_sample(mesh, "bookinfo-gateway.yaml")
        .and_then(|()| apply_sample(mesh, "destination-rule-all.yaml"));
    let mut out = Vec::new();
    for (number, title, scenario) in SCENARIOS {
        if options
            .only
            .as_ref()
            .is_some_and(|only| !only.contains(number))
        {
            continue;
        }
        let outcome = match &base {
            Ok(()) => scenario(mesh),
            Err(e) => Err(anyhow::anyhow!("destination rules not applied: {e:#}")),
        };
        if let Err(e) = &outcome {
            eprintln!("scenario {number} failed: {e:#}");
        }
        out.push(Outcome {
            number: *number,
            title,
            outcome,
        });
    }
    out
}

/// Writes each document of a sample as its own file, named by kind and
/// name: a later sample that redefines a resource replaces it, as
/// `kubectl apply` would.
fn apply_sample(mesh: &Mesh, file: &str) -> Result<()> {
    let text = std::fs::read_to_string(format!("{SAMPLES}/{file}"))
        .with_context(|| format!("reading {file}"))?;
    apply_docs(mesh, &super::mesh::in_namespace(&text))
}

fn apply_docs(mesh: &Mesh, text: &str) -> Result<()> {
    for doc in text.split("\n---") {
        let field = |key: &str| {
            doc.lines()
                .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_owned()))
        };
        let (Some(kind), Some(name)) = (field("kind:"), field("  name:")) else {
            continue;
        };
        mesh.apply(&format!("{}-{name}.yaml", kind.to_lowercase()), doc)?;
    }
    Ok(())
}

/// `GET path` from the hub to `ip:port` with `headers`: status and body.
pub fn get(ip: &str, port: u16, path: &str, headers: &[(&str, &str)]) -> Result<(u16, String)> {
    let addr: SocketAddr = format!("{ip}:{port}").parse()?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: bookinfo\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("not an HTTP response: {text:?}"))?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n =
            usize::from_str_radix(size.split(';').next().unwrap_or("0").trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// `/productpage` through the ingress gateway, as `user` when given: the
/// whole call tree as JSON.
fn productpage(user: Option<&str>) -> Result<Value> {
    let headers: Vec<(&str, &str)> = user.map(|u| ("end-user", u)).into_iter().collect();
    let (status, body) = get(GATEWAY.ip, GATEWAY_PORT, "/productpage", &headers)?;
    ensure!(status == 200, "gateway answered {status}: {body}");
    serde_json::from_str(&body).with_context(|| format!("not JSON: {body}"))
}

/// The reviews version in a productpage answer (`None` when reviews failed).
fn reviews_version(page: &Value) -> Option<String> {
    page["reviews"]["version"].as_str().map(str::to_owned)
}

/// Polls until `check` holds for `n` answers in a row, or `timeout`.
fn settle(
    timeout: Duration,
    n: usize,
    mut check: impl FnMut() -> Result<bool>,
) -> Result<Duration> {
    let start = Instant::now();
    let mut streak = 0;
    let mut last = None;
    while start.elapsed() < timeout {
        match check() {
            Ok(true) => streak += 1,
            Ok(false) => streak = 0,
            Err(e) => {
                streak = 0;
                last = Some(e);
            }
        }
        if streak >= n {
            return Ok(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    match last {
        Some(e) => bail!("not settled after {timeout:?}; last error: {e:#}"),
        None => bail!("not settled after {timeout:?}"),
    }
}

fn ready(mesh: &mut Mesh) -> Result<String> {
    // Mesh::start waited for every pod; check each again, from the hub.
    let mut n = 0;
    for pod in mesh.pods.iter().chain(std::iter::once(&mesh.gateway)) {
        let (status, body) = get(pod.workload.ip, 15021, "/healthz/ready", &[])?;
        ensure!(
            status == 200,
            "{}: 15021 answered {status}: {body}",
            pod.workload.name()
        );
        n += 1;
    }
    Ok(format!("{n} proxies ready"))
}

fn all_v1(mesh: &mut Mesh) -> Result<String> {
    apply_sample(mesh, "virtual-service-all-v1.yaml")?;
    let took = settle(Duration::from_secs(30), 10, || {
        Ok(reviews_version(&productpage(None)?).as_deref() == Some("v1"))
    })?;
    for _ in 0..30 {
        let page = productpage(None)?;
        ensure!(
            reviews_version(&page).as_deref() == Some("v1"),
            "not v1: {page}"
        );
        ensure!(
            page["details"]["service"] == "details",
            "details missing: {page}"
        );
    }
    Ok(format!(
        "30/30 v1 (in effect after {:.1} s)",
        took.as_secs_f64()
    ))
}

fn fifty_fifty(mesh: &mut Mesh) -> Result<String> {
    apply_sample(mesh, "virtual-service-reviews-50-v3.yaml")?;
    settle(Duration::from_secs(30), 1, || {
        Ok(reviews_version(&productpage(None)?).as_deref() == Some("v3"))
    })?;
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..400 {
        let v = reviews_version(&productpage(None)?).unwrap_or_else(|| "error".into());
        *seen.entry(v).or_default() += 1;
    }
    let v1 = seen.get("v1").copied().unwrap_or(0);
    let v3 = seen.get("v3").copied().unwrap_or(0);
    ensure!(v1 + v3 == 400, "other answers: {seen:?}");
    ensure!(
        (180..=220).contains(&v3),
        "v3 {v3}/400 is not within 5 points of 50%"
    );
    Ok(format!("v1 {v1}, v3 {v3} of 400"))
}

fn jason_v2(mesh: &mut Mesh) -> Result<String> {
    apply_sample(mesh, "virtual-service-reviews-test-v2.yaml")?;
    settle(Duration::from_secs(30), 5, || {
        Ok(reviews_version(&productpage(Some("jason"))?).as_deref() == Some("v2"))
    })?;
    for _ in 0..20 {
        let page = productpage(Some("jason"))?;
        ensure!(
            reviews_version(&page).as_deref() == Some("v2"),
            "jason not on v2: {page}"
        );
        ensure!(
            page["reviews"]["ratings"]["service"] == "ratings",
            "no ratings: {page}"
        );
        let page = productpage(None)?;
        ensure!(
            reviews_version(&page).as_deref() == Some("v1"),
            "anonymous not on v1: {page}"
        );
    }
    Ok("jason 20/20 v2 with ratings, others 20/20 v1".into())
}

fn ratings_faults(mesh: &mut Mesh) -> Result<String> {
    // jason reaches reviews v2, which calls ratings.
    apply_sample(mesh, "virtual-service-reviews-test-v2.yaml")?;
    apply_sample(mesh, "virtual-service-ratings-test-delay.yaml")?;
    // productpage gives up on reviews after 3 s, twice: BookInfo's "product
    // reviews are currently unavailable".
    let took = settle(Duration::from_secs(60), 1, || {
        let start = Instant::now();
        let page = productpage(Some("jason"))?;
        Ok(page["reviews"]["error"] == "timeout" && start.elapsed() >= Duration::from_secs(5))
    })?;
    let start = Instant::now();
    let page = productpage(None)?;
    ensure!(
        reviews_version(&page).as_deref() == Some("v1") && start.elapsed() < Duration::from_secs(2),
        "others are delayed or misrouted: {page}"
    );
    apply_sample(mesh, "virtual-service-ratings-test-abort.yaml")?;
    // The abort: reviews v2 shows ratings unavailable (ratings answered 500).
    settle(Duration::from_secs(30), 3, || {
        let page = productpage(Some("jason"))?;
        Ok(reviews_version(&page).as_deref() == Some("v2")
            && page["reviews"]["ratings"]["error"] == 500)
    })?;
    Ok(format!(
        "delay: jason's reviews time out (seen after {:.0} s), others fast; abort: ratings 500",
        took.as_secs_f64()
    ))
}

/// A VirtualService sending all of reviews to `subset`.
fn reviews_to(subset: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: default
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {{host: reviews, subset: {subset}}}
"
    )
}

fn change_under_load(mesh: &mut Mesh) -> Result<String> {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };
    mesh.apply("virtualservice-reviews.yaml", &reviews_to("v1"))?;
    settle(Duration::from_secs(30), 5, || {
        Ok(reviews_version(&productpage(None)?).as_deref() == Some("v1"))
    })?;
    let stop = Arc::new(AtomicBool::new(false));
    // Four clients in a loop; each records (time, version or failure).
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let r = productpage(None)
                        .map_err(|e| format!("{e:#}"))
                        .and_then(|p| {
                            reviews_version(&p).ok_or_else(|| format!("reviews failed: {p}"))
                        });
                    seen.push((Instant::now(), r));
                }
                seen
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let changed = Instant::now();
    mesh.apply("virtualservice-reviews.yaml", &reviews_to("v3"))?;
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for w in workers {
        all.extend(
            w.join()
                .map_err(|_| anyhow::anyhow!("load thread panicked"))?,
        );
    }
    let failures: Vec<&String> = all.iter().filter_map(|(_, r)| r.as_ref().err()).collect();
    ensure!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        all.len(),
        failures.first()
    );
    // In effect: the last v1 answer after the change.
    let last_v1 = all
        .iter()
        .filter(|(t, r)| *t > changed && r.as_deref() == Ok("v1"))
        .map(|(t, _)| t.duration_since(changed))
        .max()
        .unwrap_or_default();
    let v3 = all.iter().filter(|(_, r)| r.as_deref() == Ok("v3")).count();
    ensure!(v3 > 0, "the change never took effect");
    ensure!(
        last_v1 < Duration::from_secs(2),
        "v1 still answered {last_v1:?} after the change"
    );
    Ok(format!(
        "{} requests, 0 failed; last v1 {:.2} s after the file changed",
        all.len(),
        last_v1.as_secs_f64()
    ))
}

fn strict_mtls(mesh: &mut Mesh) -> Result<String> {
    mesh.apply("virtualservice-reviews.yaml", &reviews_to("v1"))?;
    mesh.apply(
        "peerauthentication-default.yaml",
        "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: istio-system
spec:
  mtls:
    mode: STRICT
",
    )?;
    // A plaintext client outside the mesh (the hub) straight at details'
    // pod: its sidecar's inbound now takes only mTLS.
    let details = super::mesh::WORKLOADS
        .iter()
        .find(|w| w.app == "details")
        .context("details")?;
    settle(Duration::from_secs(30), 3, || {
        Ok(get(details.ip, super::mesh::APP_PORT, "/details/0", &[]).is_err())
    })?;
    // Through the mesh everything still works, over mTLS with identities.
    let page = productpage(None)?;
    ensure!(
        page["details"]["service"] == "details",
        "details failed: {page}"
    );
    let xfcc = page["details"]["xfcc"].as_str().unwrap_or_default();
    let want = "URI=spiffe://cluster.local/ns/default/sa/bookinfo-productpage";
    ensure!(
        xfcc.contains(want),
        "details saw XFCC {xfcc:?}, not productpage's identity"
    );
    let gw_xfcc = page["xfcc"].as_str().unwrap_or_default();
    ensure!(
        gw_xfcc.contains("sa/istio-ingressgateway-service-account"),
        "productpage saw XFCC {gw_xfcc:?}, not the gateway's identity"
    );
    Ok(
        "plaintext refused; productpage→details and gateway→productpage carry their SPIFFE ids"
            .into(),
    )
}

fn deny_policy(mesh: &mut Mesh) -> Result<String> {
    mesh.apply(
        "authorizationpolicy-details-deny.yaml",
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-productpage
  namespace: default
spec:
  selector:
    matchLabels: {app: details}
  action: DENY
  rules:
  - from:
    - source:
        principals: [cluster.local/ns/default/sa/bookinfo-productpage]
",
    )?;
    settle(Duration::from_secs(30), 3, || {
        Ok(productpage(None)?["details"]["error"] == 403)
    })?;
    let page = productpage(None)?;
    ensure!(
        reviews_version(&page).is_some(),
        "reviews should still work: {page}"
    );
    mesh.remove("authorizationpolicy-details-deny.yaml")?;
    settle(Duration::from_secs(30), 3, || {
        Ok(productpage(None)?["details"]["service"] == "details")
    })?;
    Ok("details answers productpage 403 under the policy, 200 without".into())
}

/// Issue 18's item 7, second half: a RequestAuthentication with an inline
/// JWKS and an AuthorizationPolicy requiring a request principal at
/// productpage, checked through the gateway.
fn request_authentication(mesh: &mut Mesh) -> Result<String> {
    use strait_jwt::testing::{RSA_PKCS8, TestKey, jwks};
    const ISSUER: &str = "testing@secure.istio.io";
    let key = TestKey::rsa(RSA_PKCS8, "box-1", "RS256");
    let stranger = TestKey::ec("box-1", "ES256");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": "jason", "iat": now, "exp": now + 3600,
    });
    let good = key.sign(&claims);
    let forged = stranger.sign(&claims);
    // Both resources in one file: the policy never exists without the
    // authentication it relies on.
    mesh.apply(
        "requestauthentication-productpage.yaml",
        &format!(
            "apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: productpage-jwt
  namespace: default
spec:
  selector:
    matchLabels: {{app: productpage}}
  jwtRules:
  - issuer: {ISSUER}
    jwks: '{}'
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: productpage-needs-jwt
  namespace: default
spec:
  selector:
    matchLabels: {{app: productpage}}
  action: ALLOW
  rules:
  - from:
    - source:
        requestPrincipals: [\"{ISSUER}/jason\"]
",
            jwks(&[&key])
        ),
    )?;
    let page = |token: Option<&str>| -> Result<u16> {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer
            .as_deref()
            .map(|b| ("authorization", b))
            .into_iter()
            .collect();
        Ok(get(GATEWAY.ip, GATEWAY_PORT, "/productpage", &headers)?.0)
    };
    settle(Duration::from_secs(30), 3, || Ok(page(None)? == 403))?;
    let forged_status = page(Some(&forged))?;
    ensure!(forged_status == 401, "a forged token got {forged_status}");
    let good_status = page(Some(&good))?;
    ensure!(good_status == 200, "a valid token got {good_status}");
    mesh.remove("requestauthentication-productpage.yaml")?;
    settle(Duration::from_secs(30), 3, || Ok(page(None)? == 200))?;
    Ok("no token 403, forged 401, valid 200; open again once removed".into())
}

fn telemetry(mesh: &mut Mesh) -> Result<String> {
    // Run alone (`--only 8`), the gateway's routes may still be on their way.
    settle(Duration::from_secs(30), 1, || Ok(productpage(None).is_ok()))?;
    for _ in 0..5 {
        productpage(None)?;
    }
    let pp = mesh
        .pods
        .iter()
        .find(|p| p.workload.app == "productpage")
        .context("productpage")?;
    let (status, text) = get(pp.workload.ip, 15020, "/stats/prometheus", &[])?;
    ensure!(status == 200, "15020 answered {status}");
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("istio_requests_total{")
                && l.contains("reporter=\"source\"")
                && l.contains("source_workload=\"productpage-v1\"")
                && l.contains("destination_workload=\"details-v1\"")
                && l.contains("response_code=\"200\"")
                // Outbound, the principal comes from details' certificate
                // (Istio's mutual TLS between sidecars).
                && l.contains(
                    "destination_principal=\"spiffe://cluster.local/ns/default/sa/bookinfo-details\"",
                )
        })
        .with_context(|| {
            let ours: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with("istio_requests_total"))
                .collect();
            format!("no productpage→details line; istio_requests_total lines: {ours:#?}")
        })?;
    let inbound = text.lines().any(|l| {
        l.starts_with("istio_requests_total{")
            && l.contains("reporter=\"destination\"")
            && l.contains("destination_workload=\"productpage-v1\"")
    });
    ensure!(
        inbound,
        "no inbound (reporter=destination) line at productpage"
    );
    Ok(format!(
        "e.g. {}",
        line.split_whitespace().last().unwrap_or_default()
    ))
}

fn xds_flavour(mesh: &mut Mesh) -> Result<String> {
    let mut kinds = BTreeMap::new();
    for pod in mesh.pods.iter().chain(std::iter::once(&mesh.gateway)) {
        let path = mesh
            .run_dir
            .join(pod.workload.name())
            .join("etc/istio/proxy/envoy-rev.json");
        let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
        let v: Value = serde_json::from_str(&text)?;
        let api = v["dynamic_resources"]["ads_config"]["api_type"]
            .as_str()
            .unwrap_or("?")
            .to_owned();
        *kinds.entry(api).or_insert(0) += 1;
    }
    ensure!(kinds.len() == 1, "mixed: {kinds:?}");
    Ok(format!("{kinds:?}; every proxy configured by it"))
}

fn drain(mesh: &mut Mesh) -> Result<String> {
    let pod = mesh
        .pods
        .iter_mut()
        .find(|p| p.workload.app == "ratings")
        .context("ratings")?;
    pod.agent.signal("TERM")?;
    let status = pod
        .agent
        .wait_exit(Duration::from_secs(30))?
        .context("pilot-agent did not exit within 30 s of SIGTERM")?;
    let log = std::fs::read_to_string(&pod.agent.log).unwrap_or_default();
    ensure!(
        !log.contains("panic"),
        "agent log shows a panic:\n{}",
        pod.agent.tail()
    );
    Ok(format!("pilot-agent exited ({status}) after draining"))
}
