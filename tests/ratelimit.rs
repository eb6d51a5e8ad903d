//! Rate limits against the real Envoy 1.40: the local HTTP rate limit
//! (bursts, `x-ratelimit-*`, per-route configs, descriptors from the
//! route's actions, not enforced, per connection), the network local rate
//! limit, and the global rate limit with a test rate-limit service
//! (`strait_test_support::rls`): the same config and requests through both
//! proxies, the same answers and counters expected.
//!
//! Token refill is made irrelevant by long fill intervals: no token comes
//! back while a test runs. `x-ratelimit-reset` after a bucket empties
//! counts down with the clock, so it is compared rounded to 10 s.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use strait_test_support::{
    client::Client,
    differential::{Observe, Observed, Req},
    envoy::Envoy,
    proxy::TestProxy,
    rls::rate_limit_service,
    upstream::{Upstream, http_echo},
};

const OBSERVE: Observe = Observe {
    response_headers: &[
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "x-local-rl",
        "x-envoy-ratelimited",
        "x-rls",
        "content-type",
        "x-upstream",
    ],
    upstream_headers: Some(&["x-rl-not-enforced", "x-rls-seen"]),
    volatile: &[],
};

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().map_or(1, |a| a.port())
}

fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

/// One listener `listener` (its `network_filters` first, then a
/// connection manager with `http_filters` before the router and
/// `virtual_host` as its one virtual host's body after `domains`), the
/// echo upstream `a`, the rate-limit service `rls` and `dead`, a cluster
/// nobody listens on. The node's cluster is `front`.
fn bootstrap(
    network_filters: &str,
    http_filters: &str,
    virtual_host: &str,
    a: &Upstream,
    rls: &Upstream,
) -> String {
    let cluster = |name: &str, port: u16, h2: bool| {
        let h2 = if h2 {
            "    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        explicit_http_config: {http2_protocol_options: {}}\n"
        } else {
            ""
        };
        format!(
            "  - name: {name}\n    type: STATIC\n    connect_timeout: 1s\n{h2}    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}\n"
        )
    };
    format!(
        r#"
node: {{id: test, cluster: front}}
static_resources:
  listeners:
  - name: listener
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
{network}      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: rl
          route_config:
            name: r
            virtual_hosts:
            - name: all
              domains: ["*"]
{vhost}          http_filters:
{filters}          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
{ca}{cr}{cd}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
"#,
        network = indent(network_filters, 6),
        vhost = indent(virtual_host, 14),
        filters = indent(http_filters, 10),
        ca = cluster("a", a.addr.port(), false),
        cr = cluster("rls", rls.addr.port(), true),
        cd = cluster("dead", closed_port(), true),
    )
}

const LOCAL_URL: &str = "\"@type\": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";

/// The local rate limit filter entry with `config` (its fields).
fn local_filter(config: &str) -> String {
    format!(
        "- name: envoy.filters.http.local_ratelimit\n  typed_config:\n    {LOCAL_URL}\n{}",
        indent(config, 4)
    )
}

/// `x-ratelimit-reset` rounded to 10 s: it counts down with the clock
/// once a bucket is empty, and the two proxies' buckets empty apart.
fn settle(mut o: Observed) -> Observed {
    if let Some(r) = o.response_headers.get_mut("x-ratelimit-reset")
        && let Ok(v) = r.parse::<u64>()
    {
        *r = (v.div_ceil(10) * 10).to_string();
    }
    o
}

/// What one request on a new connection got; `closed` when the
/// connection was refused or closed without an answer.
async fn outcome(addr: SocketAddr, req: &Req) -> String {
    match OBSERVE.send(addr, req).await {
        Ok(o) => format!("{:?}", settle(o)),
        Err(_) => "closed".to_owned(),
    }
}

/// The rate-limit counters a proxy's Prometheus page shows, non-zero
/// ones only (Envoy makes some only when first counted).
fn rl_stats(admin: SocketAddr) -> BTreeMap<String, String> {
    let mut s = TcpStream::connect(admin).expect("admin");
    s.write_all(b"GET /stats/prometheus HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines()
        .filter(|l| {
            !l.starts_with('#')
                && (l.contains("local_rate_limit") || l.contains("cluster_ratelimit_"))
        })
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(_, v)| *v != "0")
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Sends `requests` in order to both proxies (each on a new connection),
/// then compares every answer and the rate-limit counters.
async fn differential(case: &str, yaml: &str, requests: &[Req]) -> anyhow::Result<()> {
    // Two workers: the buckets are shared across them.
    let strait = TestProxy::start(yaml, 2);
    let envoy = Envoy::start(yaml);
    let (ours_at, theirs_at) = (strait.listener("listener"), envoy.listener("listener"));
    let mut diffs = Vec::new();
    for (i, req) in requests.iter().enumerate() {
        let ours = outcome(ours_at, req).await;
        let theirs = outcome(theirs_at, req).await;
        if std::env::var_os("DIFF_VERBOSE").is_some() {
            eprintln!("{case} #{i} {} {:?}: {ours}", req.path, req.headers);
        }
        if ours != theirs {
            diffs.push(format!(
                "{case} #{i} {} {:?}:\n  strait: {ours}\n  envoy:  {theirs}",
                req.path, req.headers
            ));
        }
    }
    let (ours, theirs) = (rl_stats(strait.admin()), rl_stats(envoy.admin()));
    if std::env::var_os("DIFF_VERBOSE").is_some() {
        eprintln!("{case} stats: {theirs:?}");
    }
    assert!(
        !theirs.is_empty(),
        "{case}: Envoy shows no rate limit stats"
    );
    if ours != theirs {
        diffs.push(format!(
            "{case}: stats\n  strait: {ours:?}\n  envoy:  {theirs:?}"
        ));
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    Ok(())
}

fn get(path: &str) -> Req {
    Req::get("h", path)
}

const ALL_TO_A: &str = "routes:\n- match: {prefix: \"/\"}\n  route: {cluster: a}\n";

/// A burst through the filter's default bucket: three allowed, then 429
/// `local_rate_limited` with the configured response header, and
/// `x-ratelimit-*` on every answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_burst_matches_envoy() -> anyhow::Result<()> {
    let (a, rls) = (http_echo("a"), rate_limit_service());
    let filter = local_filter(
        "stat_prefix: burst
token_bucket: {max_tokens: 3, tokens_per_fill: 1, fill_interval: 3600s}
filter_enabled: {runtime_key: e, default_value: {numerator: 100}}
filter_enforced: {runtime_key: f, default_value: {numerator: 100}}
enable_x_ratelimit_headers: DRAFT_VERSION_03
response_headers_to_add: [{header: {key: x-local-rl, value: limited}}]",
    );
    let yaml = bootstrap("", &filter, ALL_TO_A, &a, &rls);
    let reqs: Vec<Req> = (0..6).map(|_| get("/")).collect();
    differential("burst", &yaml, &reqs).await
}

/// Per-route configs (their own buckets, status and stats), descriptors
/// from every supported action, the virtual host's policies, a route with
/// its own policies overriding them, and a filter that counts but does
/// not enforce.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_routes_and_descriptors_match_envoy() -> anyhow::Result<()> {
    let (a, rls) = (http_echo("a"), rate_limit_service());
    let filter = local_filter(
        "stat_prefix: main
token_bucket: {max_tokens: 20, tokens_per_fill: 1, fill_interval: 3600s}
filter_enabled: {runtime_key: e, default_value: {numerator: 100}}
filter_enforced: {runtime_key: f, default_value: {numerator: 100}}
enable_x_ratelimit_headers: DRAFT_VERSION_03
descriptors:
- entries: [{key: user, value: alice}]
  token_bucket: {max_tokens: 2, tokens_per_fill: 1, fill_interval: 60s}
- entries: [{key: generic_key, value: vh}]
  token_bucket: {max_tokens: 1, tokens_per_fill: 1, fill_interval: 3600s}
- entries: [{key: destination_cluster, value: a}, {key: source_cluster, value: front}]
  token_bucket: {max_tokens: 1, tokens_per_fill: 1, fill_interval: 3600s}
- entries: [{key: remote_address, value: 127.0.0.1}]
  token_bucket: {max_tokens: 1, tokens_per_fill: 1, fill_interval: 3600s}
- entries: [{key: tier, value: gold}]
  token_bucket: {max_tokens: 1, tokens_per_fill: 1, fill_interval: 3600s}",
    );
    let per_route = |config: &str| {
        format!(
            "  typed_per_filter_config:\n    envoy.filters.http.local_ratelimit:\n      {LOCAL_URL}\n{}",
            indent(config, 6)
        )
    };
    let vhost = format!(
        "rate_limits:
- actions: [{{generic_key: {{descriptor_value: vh}}}}]
routes:
- match: {{prefix: \"/own\"}}
  route: {{cluster: a}}
{own}- match: {{prefix: \"/soft\"}}
  route: {{cluster: a}}
{soft}- match: {{prefix: \"/user\"}}
  route:
    cluster: a
    rate_limits:
    - actions: [{{request_headers: {{header_name: x-user, descriptor_key: user}}}}]
- match: {{prefix: \"/clusters\"}}
  route:
    cluster: a
    rate_limits:
    - actions: [{{destination_cluster: {{}}}}, {{source_cluster: {{}}}}]
- match: {{prefix: \"/remote\"}}
  route:
    cluster: a
    rate_limits:
    - actions: [{{remote_address: {{}}}}]
- match: {{prefix: \"/tier\"}}
  route:
    cluster: a
    rate_limits:
    - actions:
      - header_value_match:
          descriptor_key: tier
          descriptor_value: gold
          headers: [{{name: x-tier, string_match: {{exact: gold}}}}]
- match: {{prefix: \"/\"}}
  route: {{cluster: a}}
",
        own = per_route(
            "stat_prefix: own
status: {code: 503}
token_bucket: {max_tokens: 1, tokens_per_fill: 1, fill_interval: 3600s}
filter_enabled: {runtime_key: e, default_value: {numerator: 100}}
filter_enforced: {runtime_key: f, default_value: {numerator: 100}}"
        ),
        soft = per_route(
            "stat_prefix: soft
token_bucket: {max_tokens: 1, tokens_per_fill: 1, fill_interval: 3600s}
filter_enabled: {runtime_key: e, default_value: {numerator: 100}}
request_headers_to_add_when_not_enforced: [{header: {key: x-rl-not-enforced, value: 'yes'}}]"
        ),
    );
    let yaml = bootstrap("", &filter, &vhost, &a, &rls);
    let user = |u: &str| get("/user").header("x-user", u);
    let reqs = [
        get("/own"),
        get("/own"),
        get("/soft"),
        get("/soft"),
        user("alice"),
        user("alice"),
        user("alice"),
        user("bob"),
        get("/other"),
        get("/other"),
        get("/clusters"),
        get("/clusters"),
        get("/remote"),
        get("/remote"),
        get("/tier").header("x-tier", "gold"),
        get("/tier").header("x-tier", "silver"),
        get("/tier").header("x-tier", "gold"),
    ];
    differential("routes", &yaml, &reqs).await
}

/// `local_rate_limit_per_downstream_connection`: each connection has its
/// own bucket, so a second connection starts full again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_per_connection_matches_envoy() -> anyhow::Result<()> {
    let (a, rls) = (http_echo("a"), rate_limit_service());
    let filter = local_filter(
        "stat_prefix: conn
token_bucket: {max_tokens: 2, tokens_per_fill: 1, fill_interval: 3600s}
filter_enabled: {runtime_key: e, default_value: {numerator: 100}}
filter_enforced: {runtime_key: f, default_value: {numerator: 100}}
local_rate_limit_per_downstream_connection: true",
    );
    let yaml = bootstrap("", &filter, ALL_TO_A, &a, &rls);
    let strait = TestProxy::start(&yaml, 2);
    let envoy = Envoy::start(&yaml);
    let statuses = |addr: SocketAddr| async move {
        let mut out = Vec::new();
        for _ in 0..2 {
            let mut c = Client::http1(addr).await?;
            for _ in 0..3 {
                let req = Request::get("/")
                    .header("host", "h")
                    .body(Full::new(Bytes::new()))?;
                out.push(c.send(req).await?.status.as_u16());
            }
        }
        anyhow::Ok(out)
    };
    let ours = statuses(strait.listener("listener")).await?;
    let theirs = statuses(envoy.listener("listener")).await?;
    assert_eq!(theirs, [200, 200, 429, 200, 200, 429]);
    assert_eq!(ours, theirs);
    assert_eq!(rl_stats(strait.admin()), rl_stats(envoy.admin()));
    Ok(())
}

/// The network filter: two connections get through, the rest are closed
/// before the connection manager answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_local_rate_limit_matches_envoy() -> anyhow::Result<()> {
    let (a, rls) = (http_echo("a"), rate_limit_service());
    let network = "- name: envoy.filters.network.local_ratelimit
  typed_config:
    \"@type\": type.googleapis.com/envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit
    stat_prefix: conns
    token_bucket: {max_tokens: 2, tokens_per_fill: 1, fill_interval: 3600s}";
    let yaml = bootstrap(network, "", ALL_TO_A, &a, &rls);
    let reqs: Vec<Req> = (0..4).map(|_| get("/")).collect();
    differential("network", &yaml, &reqs).await
}

const GLOBAL_URL: &str =
    "\"@type\": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit";

fn global_filter(config: &str) -> String {
    format!(
        "- name: envoy.filters.http.ratelimit\n  typed_config:\n    {GLOBAL_URL}\n{}",
        indent(config, 4)
    )
}

/// Routes whose descriptors the test service reads: `x-rl` (its verdict)
/// and a generic key, or the virtual host's key.
const GLOBAL_ROUTES: &str = "rate_limits:
- actions: [{generic_key: {descriptor_value: from-vh}}]
routes:
- match: {prefix: \"/vh\"}
  route: {cluster: a}
- match: {prefix: \"/\"}
  route:
    cluster: a
    rate_limits:
    - actions: [{request_headers: {header_name: x-rl, descriptor_key: rl}}]
    - actions: [{generic_key: {descriptor_value: g, descriptor_key: gk}}, {remote_address: {}}]
    - stage: 1
      actions: [{generic_key: {descriptor_value: other-stage}}]
";

/// The global filter with the test service: allowed (the service's
/// request and response headers, `x-ratelimit-*` from its statuses),
/// over the limit (its body and headers, `x-envoy-ratelimited`), and a
/// failing service let through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_rate_limit_matches_envoy() -> anyhow::Result<()> {
    let (a, rls) = (http_echo("a"), rate_limit_service());
    let filter = global_filter(
        "domain: test
timeout: 2s
enable_x_ratelimit_headers: DRAFT_VERSION_03
rate_limit_service:
  transport_api_version: V3
  grpc_service: {envoy_grpc: {cluster_name: rls}}",
    );
    let yaml = bootstrap("", &filter, GLOBAL_ROUTES, &a, &rls);
    let rl = |v: &str| get("/").header("x-rl", v);
    let reqs = [
        get("/"),
        rl("ok"),
        rl("over"),
        rl("boom"),
        get("/vh"),
        rl("over"),
    ];
    differential("global", &yaml, &reqs).await
}

/// `rate_limited_status` and `disable_x_envoy_ratelimited_header`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_rate_limit_status_matches_envoy() -> anyhow::Result<()> {
    let (a, rls) = (http_echo("a"), rate_limit_service());
    let filter = global_filter(
        "domain: test
timeout: 2s
rate_limited_status: {code: 503}
disable_x_envoy_ratelimited_header: true
rate_limit_service:
  transport_api_version: V3
  grpc_service: {envoy_grpc: {cluster_name: rls}}",
    );
    let yaml = bootstrap("", &filter, GLOBAL_ROUTES, &a, &rls);
    let reqs = [get("/").header("x-rl", "over"), get("/")];
    differential("status", &yaml, &reqs).await
}

/// A service nobody answers: let through (counted), or with
/// `failure_mode_deny` answered 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_rate_limit_service_down_matches_envoy() -> anyhow::Result<()> {
    let (a, rls) = (http_echo("a"), rate_limit_service());
    let open = global_filter(
        "domain: test
timeout: 1s
rate_limit_service:
  transport_api_version: V3
  grpc_service: {envoy_grpc: {cluster_name: dead}}",
    );
    let yaml = bootstrap("", &open, GLOBAL_ROUTES, &a, &rls);
    differential("down_open", &yaml, &[get("/"), get("/vh")]).await?;
    let closed = global_filter(
        "domain: test
timeout: 1s
failure_mode_deny: true
rate_limit_service:
  transport_api_version: V3
  grpc_service: {envoy_grpc: {cluster_name: dead}}",
    );
    let yaml = bootstrap("", &closed, GLOBAL_ROUTES, &a, &rls);
    differential("down_closed", &yaml, &[get("/"), get("/vh")]).await
}

/// Strait alone: a config swap that leaves the listener unchanged keeps
/// its buckets (the same config objects), one that changes the filter
/// starts full buckets, as Envoy's new filter config object does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_swap_keeps_or_replaces_buckets() -> anyhow::Result<()> {
    let (a, rls) = (http_echo("a"), rate_limit_service());
    let config = |max: u32| {
        local_filter(&format!(
            "stat_prefix: swap
token_bucket: {{max_tokens: {max}, tokens_per_fill: 1, fill_interval: 3600s}}
filter_enabled: {{runtime_key: e, default_value: {{numerator: 100}}}}
filter_enforced: {{runtime_key: f, default_value: {{numerator: 100}}}}"
        ))
    };
    let yaml = bootstrap("", &config(1), ALL_TO_A, &a, &rls);
    let strait = TestProxy::start(&yaml, 2);
    let addr = strait.listener("listener");
    let status = || async move {
        let o = OBSERVE.send(addr, &get("/")).await?;
        anyhow::Ok(o.status)
    };
    assert_eq!(status().await?, 200);
    assert_eq!(status().await?, 429);
    // The same listener, one more cluster: the listener and its filter
    // (and bucket) are kept.
    let version = strait.version();
    let extra = format!(
        "  clusters:\n  - name: extra\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: extra\n      endpoints:\n      - lb_endpoints:\n        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}\n",
        closed_port()
    );
    strait.rewrite(&yaml.replacen("  clusters:\n", &extra, 1));
    strait_test_support::eventually(
        "the rewritten config to be live",
        std::time::Duration::from_secs(10),
        || async { (strait.version() > version).then_some(()) },
    )
    .await;
    assert_eq!(status().await?, 429);
    // A changed filter is a new config object: a new, full bucket.
    let version = strait.version();
    strait.rewrite(&bootstrap("", &config(2), ALL_TO_A, &a, &rls));
    strait_test_support::eventually(
        "the changed config to be live",
        std::time::Duration::from_secs(10),
        || async { (strait.version() > version).then_some(()) },
    )
    .await;
    assert_eq!(status().await?, 200);
    assert_eq!(status().await?, 200);
    assert_eq!(status().await?, 429);
    Ok(())
}
