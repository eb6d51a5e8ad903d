//! Distributed tracing against the real Envoy 1.40: the same bootstrap (a
//! Zipkin tracer on the connection manager, its collector a small HTTP
//! server in this test) and the same requests through Strait and Envoy.
//! Compared per request: the trace context the upstream receives (B3
//! multi or single header), the `x-request-id` version nibble (the trace
//! decision), and the span the collector receives, field by field. Only
//! what must differ is normalised: generated ids (replaced by their order
//! of appearance, so "the span id equals the trace id's low half" still
//! counts), times and durations, and request ids.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use strait_test_support::{
    TempDir,
    client::Client,
    envoy::Envoy,
    proxy::TestProxy,
    upstream::{Upstream, http_echo},
};

/// A Zipkin collector: every span POSTed to `/api/v2/spans`.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Value>>>,
    bad: Arc<Mutex<Vec<String>>>,
}

impl Collector {
    async fn start() -> (Collector, SocketAddr) {
        let c = Collector::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind collector");
        let addr = listener.local_addr().expect("addr");
        let shared = c.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let c = shared.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let c = c.clone();
                        async move {
                            let ok = req.method() == http::Method::POST
                                && req.uri().path() == "/api/v2/spans"
                                && req
                                    .headers()
                                    .get("content-type")
                                    .is_some_and(|v| v == "application/json");
                            let head =
                                format!("{} {} {:?}", req.method(), req.uri(), req.headers());
                            let body = req.into_body().collect().await.map(|b| b.to_bytes());
                            match body
                                .ok()
                                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                            {
                                Some(Value::Array(spans)) if ok => {
                                    c.spans.lock().expect("lock").extend(spans);
                                }
                                _ => c.bad.lock().expect("lock").push(head),
                            }
                            let mut r = hyper::Response::new(Full::new(Bytes::new()));
                            *r.status_mut() = http::StatusCode::ACCEPTED;
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        (c, addr)
    }

    fn spans(&self) -> Vec<Value> {
        assert!(
            self.bad.lock().expect("lock").is_empty(),
            "collector got malformed reports: {:?}",
            self.bad.lock().expect("lock")
        );
        self.spans.lock().expect("lock").clone()
    }
}

/// One scenario: the listener's direction, the HCM's extra settings, the
/// tracing block (without provider) and the Zipkin config's extra fields.
struct Setup {
    direction: &'static str,
    hcm_extra: &'static str,
    tracing: &'static str,
    zipkin_extra: &'static str,
    /// The tracer is the bootstrap's (`tracing.http`), not the manager's.
    bootstrap_tracer: bool,
    /// HTTP filters before the router.
    filters: &'static str,
}

const fn setup(direction: &'static str, tracing: &'static str) -> Setup {
    Setup {
        direction,
        hcm_extra: "",
        tracing,
        zipkin_extra: "",
        bootstrap_tracer: false,
        filters: "",
    }
}

fn bootstrap(s: &Setup, up: &Upstream, collector: SocketAddr, dead: u16, log: &Path) -> String {
    let cluster = |name: &str, port: u16| {
        format!(
            "  - name: {name}\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}\n"
        )
    };
    let zipkin_config = format!(
        "name: envoy.tracers.zipkin\ntyped_config:\n  \"@type\": type.googleapis.com/envoy.config.trace.v3.ZipkinConfig\n  collector_cluster: zipkin\n  collector_endpoint: /api/v2/spans\n  collector_endpoint_version: HTTP_JSON\n{}",
        s.zipkin_extra
            .lines()
            .map(|l| format!("  {}\n", l.trim_start()))
            .collect::<String>()
    );
    let indent = |text: &str, n: usize| {
        text.lines()
            .map(|l| format!("{}{l}\n", " ".repeat(n)))
            .collect::<String>()
    };
    let (provider, bootstrap_tracing) = if s.bootstrap_tracer {
        (
            String::new(),
            format!("tracing:\n  http:\n{}", indent(&zipkin_config, 4)),
        )
    } else {
        (
            format!("            provider:\n{}", indent(&zipkin_config, 14)),
            String::new(),
        )
    };
    format!(
        r#"
{bootstrap_tracing}node: {{id: node-1, cluster: svc-a, locality: {{zone: zone-1}}}}
static_resources:
  listeners:
  - name: http
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    traffic_direction: {direction}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: traced
{hcm_extra}          access_log:
          - name: envoy.access_loggers.file
            filter: {{traceable_filter: {{}}}}
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {log}
              log_format: {{text_format_source: {{inline_string: "%REQ(:PATH)%\n"}}}}
          tracing:
{tracing}{provider}          route_config:
            name: r
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/dead"}}
                route: {{cluster: dead}}
              - match: {{prefix: "/"}}
                route: {{cluster: up}}
          http_filters:
{filters}          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
{up}{zipkin}{dead}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
"#,
        direction = s.direction,
        hcm_extra = s.hcm_extra,
        tracing = s.tracing,
        filters = s.filters,
        log = log.display(),
        up = cluster("up", up.addr.port()),
        zipkin = cluster("zipkin", collector.port()),
        dead = cluster("dead", dead),
    )
}

/// A request: its path (unique, it keys the span), method, body and
/// headers.
struct Case {
    path: &'static str,
    post: Option<&'static str>,
    headers: &'static [(&'static str, &'static str)],
}

const fn get(path: &'static str, headers: &'static [(&'static str, &'static str)]) -> Case {
    Case {
        path,
        post: None,
        headers,
    }
}

/// What one request showed: the trace headers the upstream got, the
/// request id's nibble, the response status.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    status: u16,
    nibble: Option<char>,
    context: BTreeMap<String, String>,
}

const CONTEXT_HEADERS: [&str; 5] = [
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
];

async fn send(addr: SocketAddr, c: &Case) -> (Seen, Option<String>) {
    let mut client = Client::http1(addr).await.expect("connect");
    let mut b = match c.post {
        Some(_) => Request::post(c.path),
        None => Request::get(c.path),
    };
    for (k, v) in c.headers {
        b = b.header(*k, *v);
    }
    let body = Full::new(Bytes::from(c.post.unwrap_or_default()));
    let reply = client
        .send(b.body(body).expect("request"))
        .await
        .expect("send");
    let status = reply.status.as_u16();
    if status != 200 {
        return (
            Seen {
                status,
                nibble: None,
                context: BTreeMap::new(),
            },
            None,
        );
    }
    let echo = reply.json();
    let mut context = BTreeMap::new();
    let mut request_id = None;
    for pair in echo["headers"].as_array().expect("headers") {
        let (k, v) = (
            pair[0].as_str().unwrap_or(""),
            pair[1].as_str().unwrap_or(""),
        );
        if CONTEXT_HEADERS.contains(&k) {
            context.insert(k.to_owned(), v.to_owned());
        }
        if k == "x-request-id" {
            request_id = Some(v.to_owned());
        }
    }
    let nibble = request_id.as_deref().and_then(|id| id.chars().nth(14));
    (
        Seen {
            status,
            nibble,
            context,
        },
        request_id,
    )
}

/// Replaces generated 16-hex-digit ids by `#n` in order of appearance (a
/// 32-digit id is two of them); `keep` are ids the test sent.
#[derive(Default)]
struct Ids {
    seen: HashMap<String, usize>,
}

impl Ids {
    fn norm(&mut self, v: &str, keep: &[&str]) -> String {
        let one = |ids: &mut Ids, part: &str| {
            if keep.contains(&part) || part.len() != 16 {
                return part.to_owned();
            }
            let n = ids.seen.len();
            format!("#{}", ids.seen.entry(part.to_owned()).or_insert(n))
        };
        v.split('-')
            .map(|part| match part.len() {
                32 if !keep.contains(&part) => {
                    format!("{}{}", one(self, &part[..16]), one(self, &part[16..]))
                }
                _ => one(self, part),
            })
            .collect::<Vec<_>>()
            .join("-")
    }
}

/// Ids the cases send (kept as they are).
const KEEP: [&str; 5] = [
    "0000000000000001",
    "0000000000000002",
    "0000000000000009",
    "80f198ee56343ba864fe8b2a57d3eff7",
    "e457b5a2e4d86bd1",
];

/// A span with its ids normalised (through `ids`, shared with the
/// request's headers) and times checked then removed.
fn normalise_span(mut span: Value, ids: &mut Ids, request_id: Option<&str>) -> Value {
    for key in ["traceId", "id", "parentId"] {
        if let Some(v) = span.get(key).and_then(Value::as_str).map(str::to_owned) {
            span[key] = Value::String(ids.norm(&v, &KEEP));
        }
    }
    let ts = span["timestamp"].as_u64().expect("timestamp");
    let duration = span["duration"].as_u64().expect("duration");
    assert!(
        ts > 1_600_000_000_000_000,
        "timestamp in microseconds: {ts}"
    );
    assert!(
        duration < 10_000_000,
        "duration in microseconds: {duration}"
    );
    span["timestamp"] = Value::from(0);
    span["duration"] = Value::from(0);
    if let Some(a) = span["annotations"].as_array_mut() {
        for a in a {
            let at = a["timestamp"].as_u64().expect("annotation timestamp");
            assert!(at >= ts, "annotation after the span's start");
            a["timestamp"] = Value::from(0);
        }
    }
    if request_id.is_some() {
        span["tags"]["guid:x-request-id"] = Value::from("<id>");
    }
    // The name is `:authority`, with the proxy's own port.
    span["name"] = Value::from("<authority>");
    span
}

struct Run {
    seen: Vec<Seen>,
    spans: BTreeMap<String, Value>,
    logged: String,
}

/// Runs `cases` through the proxy at `addr` (its collector `collector`,
/// its `traceable_filter` log at `log`), waiting for `expected` spans.
async fn run(
    addr: SocketAddr,
    collector: &Collector,
    cases: &[Case],
    expected: usize,
    log: &Path,
) -> Run {
    let mut seen = Vec::new();
    let mut ids_by_path = HashMap::new();
    let mut normalisers = HashMap::new();
    for c in cases {
        let (mut s, request_id) = send(addr, c).await;
        let mut ids = Ids::default();
        for v in s.context.values_mut() {
            *v = ids.norm(v, &KEEP);
        }
        normalisers.insert(c.path, ids);
        ids_by_path.insert(c.path, request_id);
        seen.push(s);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while collector.spans().len() < expected && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Envoy flushes every 5 s: a span that should not exist would be here
    // by then.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let mut spans = BTreeMap::new();
    for mut span in collector.spans() {
        let rid = span["tags"]["guid:x-request-id"]
            .as_str()
            .map(str::to_owned);
        let path = ids_by_path
            .iter()
            .find(|(_, id)| id.is_some() && **id == rid)
            .map(|(p, _)| *p)
            // A request without an echo (the 503): its URL names it.
            .or_else(|| {
                let url = span["tags"]["http.url"].as_str().unwrap_or_default();
                cases.iter().map(|c| c.path).find(|p| url.ends_with(p))
            })
            .unwrap_or_else(|| panic!("span for an unknown request: {span}"));
        let ids = normalisers.get_mut(path).expect("ids");
        if let Some(url) = span["tags"]["http.url"].as_str() {
            let url = url.replace(&addr.port().to_string(), "<port>");
            span["tags"]["http.url"] = Value::String(url);
        }
        let span = normalise_span(span, ids, rid.as_deref());
        assert!(
            spans.insert(path.to_owned(), span).is_none(),
            "one span per request"
        );
    }
    let logged = std::fs::read_to_string(log).unwrap_or_default();
    Run {
        seen,
        spans,
        logged,
    }
}

/// Runs `setup` and `cases` through Envoy and Strait and compares all.
async fn compare(setup: &Setup, cases: &[Case], expected_spans: usize) -> (Run, Run) {
    let up = http_echo("up");
    let dead = strait_test_support::bootstrap::closed_port();
    let dir = TempDir::new("tracing");
    let (envoy_collector, envoy_addr) = Collector::start().await;
    let (strait_collector, strait_addr) = Collector::start().await;
    let envoy_log = dir.path().join("envoy.log");
    let strait_log = dir.path().join("strait.log");
    let envoy = Envoy::start(&bootstrap(setup, &up, envoy_addr, dead, &envoy_log));
    let strait = TestProxy::start(&bootstrap(setup, &up, strait_addr, dead, &strait_log), 1);
    let (e, s) = tokio::join!(
        run(
            envoy.listener("http"),
            &envoy_collector,
            cases,
            expected_spans,
            &envoy_log
        ),
        run(
            strait.listener("http"),
            &strait_collector,
            cases,
            expected_spans,
            &strait_log
        ),
    );
    for ((c, e), s) in cases.iter().zip(&e.seen).zip(&s.seen) {
        assert_eq!(
            s, e,
            "{}: what the upstream saw (left Strait, right Envoy)",
            c.path
        );
    }
    assert_eq!(
        e.spans.len(),
        expected_spans,
        "Envoy's spans: {:#?}",
        e.spans
    );
    for (url, es) in &e.spans {
        let ss = s
            .spans
            .get(url)
            .unwrap_or_else(|| panic!("Strait sent no span for {url}"));
        assert_eq!(ss, es, "{url}: the span (left Strait, right Envoy)");
    }
    assert_eq!(
        s.spans.len(),
        e.spans.len(),
        "Strait's spans: {:#?}",
        s.spans
    );
    assert_eq!(s.logged, e.logged, "traceable_filter's log lines");
    (e, s)
}

/// Outbound (egress, `CLIENT` spans), every request sampled by
/// `random_sampling: 100`, 64-bit trace ids, custom tags of each kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zipkin_outbound_sampled_matches_envoy() {
    let setup = setup(
        "OUTBOUND",
        r#"            random_sampling: {value: 100}
            custom_tags:
            - {tag: lit, literal: {value: v1}}
            - {tag: hdr, request_header: {name: x-h, default_value: dflt}}
            - {tag: hdr-none, request_header: {name: x-absent}}
            - {tag: env, environment: {name: HOME, default_value: "no"}}
            - {tag: env-none, environment: {name: STRAIT_TRACE_TEST_UNSET, default_value: dflt}}
"#,
    );
    const CASES: &[Case] = &[
        get("/root", &[("x-h", "hv")]),
        get(
            "/multi",
            &[
                ("x-b3-traceid", "0000000000000001"),
                ("x-b3-spanid", "0000000000000002"),
                ("x-b3-parentspanid", "0000000000000009"),
                ("x-b3-sampled", "1"),
            ],
        ),
        get(
            "/single",
            &[("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")],
        ),
        get("/single-unsampled", &[("b3", "0")]),
        get("/multi-unsampled", &[("x-b3-sampled", "0")]),
        get("/client", &[("x-client-trace-id", "abc")]),
        Case {
            path: "/post",
            post: Some("hello world"),
            headers: &[],
        },
        get("/dead", &[]),
    ];
    let (envoy, _) = compare(&setup, CASES, 6).await;
    // What the comparison covered, so a change to Envoy's side shows.
    let nibbles: Vec<_> = envoy.seen.iter().map(|s| s.nibble).collect();
    assert_eq!(
        nibbles,
        [
            Some('9'),
            Some('9'),
            Some('9'),
            Some('9'),
            Some('9'),
            Some('b'),
            Some('9'),
            None
        ]
    );
    assert!(
        envoy.seen[2].context.contains_key("b3"),
        "single b3 answered with b3"
    );
    let root = &envoy.spans.values().next().expect("a span");
    assert_eq!(root["kind"], "CLIENT");
}

/// Inbound (ingress, `SERVER` spans sharing the caller's span), nothing
/// sampled at random: only forced, client-traced, propagated and
/// pre-decided requests are traced; 128-bit trace ids; the loopback
/// client is internal, so its `x-envoy-force-trace` counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zipkin_inbound_forced_and_propagated_match_envoy() {
    let setup = Setup {
        hcm_extra: "          use_remote_address: true\n          internal_address_config: {cidr_ranges: [{address_prefix: 127.0.0.1, prefix_len: 32}]}\n",
        zipkin_extra: "trace_id_128bit: true\n",
        ..setup("INBOUND", "            random_sampling: {value: 0}\n")
    };
    const CASES: &[Case] = &[
        get("/unsampled", &[]),
        get("/forced", &[("x-envoy-force-trace", "1")]),
        get(
            "/multi",
            &[
                ("x-b3-traceid", "0000000000000001"),
                ("x-b3-spanid", "0000000000000002"),
                ("x-b3-sampled", "1"),
            ],
        ),
        get(
            "/single",
            &[(
                "b3",
                "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-0000000000000009",
            )],
        ),
        get(
            "/decided",
            &[("x-request-id", "12345678-1234-9234-8234-123456789012")],
        ),
        get("/client", &[("x-client-trace-id", "abc")]),
    ];
    let (envoy, _) = compare(&setup, CASES, 5).await;
    let nibbles: Vec<_> = envoy.seen.iter().map(|s| s.nibble).collect();
    assert_eq!(
        nibbles,
        [
            Some('4'),
            Some('a'),
            Some('4'),
            Some('4'),
            Some('9'),
            Some('b')
        ]
    );
    // `traceable_filter` matches only a forced trace.
    assert_eq!(envoy.logged, "/forced\n");
}

/// Istio's settings (`shared_span_context: false`, 128-bit ids) on an
/// inbound listener: a server span is a child of its caller's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zipkin_istio_settings_match_envoy() {
    let setup = Setup {
        zipkin_extra: "trace_id_128bit: true\nshared_span_context: false\n",
        ..setup(
            "INBOUND",
            "            random_sampling: {value: 100}\n            max_path_tag_length: 30\n",
        )
    };
    const CASES: &[Case] = &[
        get("/root/with/a/long/path/that/is/cut", &[]),
        get(
            "/multi",
            &[
                ("x-b3-traceid", "0000000000000001"),
                ("x-b3-spanid", "0000000000000002"),
                ("x-b3-sampled", "1"),
            ],
        ),
        get("/64", &[("b3", "0000000000000001-0000000000000002")]),
    ];
    compare(&setup, CASES, 3).await;
}

/// As Istio 1.10 configures it: the tracer in the bootstrap (deprecated
/// `tracing.http`, still honoured by Envoy 1.40), the connection manager's
/// `tracing` without a provider, and custom tags reading the RBAC filter's
/// dry-run dynamic metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zipkin_bootstrap_tracer_and_metadata_tags_match_envoy() {
    let setup = Setup {
        bootstrap_tracer: true,
        zipkin_extra: "trace_id_128bit: true\nshared_span_context: false\n",
        filters: r#"          - name: envoy.filters.http.rbac
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
              shadow_rules_stat_prefix: istio_dry_run_allow_
              shadow_rules:
                action: ALLOW
                policies:
                  p1: {permissions: [{any: true}], principals: [{any: true}]}
"#,
        ..setup(
            "OUTBOUND",
            r#"            random_sampling: {value: 100}
            custom_tags:
            - tag: dry_run.result
              metadata:
                kind: {request: {}}
                metadata_key: {key: envoy.filters.http.rbac, path: [{key: istio_dry_run_allow_shadow_engine_result}]}
            - tag: dry_run.policy
              metadata:
                kind: {request: {}}
                metadata_key: {key: envoy.filters.http.rbac, path: [{key: istio_dry_run_allow_shadow_effective_policy_id}]}
            - tag: absent
              metadata:
                kind: {request: {}}
                metadata_key: {key: envoy.filters.http.rbac, path: [{key: nothing}]}
                default_value: none
"#,
        )
    };
    const CASES: &[Case] = &[get("/a", &[]), get("/b", &[])];
    let (envoy, _) = compare(&setup, CASES, 2).await;
    let tags = &envoy.spans["/a"]["tags"];
    assert_eq!(tags["dry_run.result"], "allowed", "{tags}");
    assert_eq!(tags["absent"], "none");
}

/// A collector that accepts and never answers: requests are not slowed
/// (export is off the request path) and the stuck report is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_collector_slows_no_request() {
    let up = http_echo("up");
    let dir = TempDir::new("tracing-stuck");
    let stuck = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let stuck_addr = stuck.local_addr().expect("addr");
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&held);
    tokio::spawn(async move {
        while let Ok((s, _)) = stuck.accept().await {
            keep.lock().expect("lock").push(s);
        }
    });
    let yaml = bootstrap(
        &setup("OUTBOUND", "            random_sampling: {value: 100}\n"),
        &up,
        stuck_addr,
        strait_test_support::bootstrap::closed_port(),
        &dir.path().join("log"),
    );
    let strait = TestProxy::start(&yaml, 1);
    let addr = strait.listener("http");
    for i in 0..40 {
        let started = std::time::Instant::now();
        let (seen, _) = send(addr, &get("/x", &[])).await;
        assert_eq!(seen.status, 200);
        assert_eq!(
            seen.context.get("x-b3-sampled").map(String::as_str),
            Some("1")
        );
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "request {i} took {:?} with the collector stuck",
            started.elapsed()
        );
    }
    let admin = strait.admin();
    let failed = strait_test_support::eventually(
        "a failed report",
        Duration::from_secs(15),
        move || async move {
            strait_test_support::admin::stat(admin, "envoy_tracing_zipkin_reports_failed")
                .await
                .ok()
                .flatten()
                .filter(|n| *n > 0.0)
        },
    )
    .await;
    assert!(failed >= 1.0);
    assert!(
        !held.lock().expect("lock").is_empty(),
        "the exporter reached the collector"
    );
}
