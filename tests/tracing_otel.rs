//! The OpenTelemetry tracer against the real Envoy 1.40: the same
//! bootstrap (`envoy.tracers.opentelemetry` on the connection manager, its
//! OTLP collector a gRPC recorder in this test) and the same requests
//! through Strait and Envoy. Compared per request: the W3C context the
//! upstream receives (`traceparent`, `tracestate`), the `x-request-id`
//! version nibble (the trace decision), and the span the collector
//! receives, field by field (name, kind, ids and parent, trace state,
//! flags, attributes, status), with the batch's resource and scope. Only
//! what must differ is normalised: generated ids (replaced by their order
//! of appearance per request), times, request ids, ephemeral ports, and
//! the SDK's version and language (Envoy's build and C++ against
//! Strait's).

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use envoy_types::pb::opentelemetry::proto::common::v1::{KeyValue, any_value::Value as Any};
use http::Request;
use http_body_util::Full;
use prost::Message;
use serde_json::{Value, json};
use strait_remote_log::trace::{EXPORT_PATH, ExportTraceServiceRequest};
use strait_test_support::{
    client::Client,
    envoy::Envoy,
    grpc_recorder::{Recorded, grpc_recorder},
    proxy::TestProxy,
    upstream::{Upstream, http_echo},
};

/// One scenario: the listener's direction, the HCM's extra settings, the
/// tracing block (without provider) and the tracer's extra fields.
struct Setup {
    direction: &'static str,
    hcm_extra: &'static str,
    tracing: &'static str,
    otel_extra: &'static str,
}

fn bootstrap(s: &Setup, up: &Upstream, collector: u16, dead: u16) -> String {
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
    let otel_extra: String = s
        .otel_extra
        .lines()
        .map(|l| format!("                {}\n", l.trim_start()))
        .collect();
    format!(
        r#"
node: {{id: node-1, cluster: svc-a, locality: {{zone: zone-1}}}}
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
{hcm_extra}          tracing:
{tracing}            provider:
              name: envoy.tracers.opentelemetry
              typed_config:
                "@type": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig
                grpc_service: {{envoy_grpc: {{cluster_name: otel}}, timeout: 2s}}
{otel_extra}          route_config:
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
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
{up}{otel}{dead}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
"#,
        direction = s.direction,
        hcm_extra = s.hcm_extra,
        tracing = s.tracing,
        up = cluster("up", up.addr.port(), false),
        otel = cluster("otel", collector, true),
        dead = cluster("dead", dead, false),
    )
}

/// A request: its path (unique, it keys the span) and headers (a name
/// may repeat).
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

/// What one request showed: the W3C headers the upstream got, the request
/// id's nibble, the response status.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    status: u16,
    nibble: Option<char>,
    context: BTreeMap<String, String>,
}

const CONTEXT_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

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
    let mut context = BTreeMap::new();
    let mut request_id = None;
    if status == 200 {
        let echo = reply.json();
        for pair in echo["headers"].as_array().expect("headers") {
            let (k, v) = (
                pair[0].as_str().unwrap_or(""),
                pair[1].as_str().unwrap_or(""),
            );
            if CONTEXT_HEADERS.contains(&k) {
                assert!(
                    context.insert(k.to_owned(), v.to_owned()).is_none(),
                    "{}: one {k} header upstream",
                    c.path
                );
            }
            if k == "x-request-id" {
                request_id = Some(v.to_owned());
            }
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

/// Ids the cases send (kept as they are).
const KEEP: [&str; 3] = [
    "0af7651916cd43dd8448eb211c80319c",
    "b7ad6b7169203331",
    "00000000000000000000000000000000",
];

/// Replaces generated ids (32 or 16 hex digits) by `#n` in order of
/// appearance.
#[derive(Default)]
struct Ids {
    seen: HashMap<String, usize>,
}

impl Ids {
    fn one(&mut self, id: &str) -> String {
        if KEEP.contains(&id) || !(id.len() == 16 || id.len() == 32) {
            return id.to_owned();
        }
        let n = self.seen.len();
        format!("#{}", self.seen.entry(id.to_owned()).or_insert(n))
    }

    /// A `traceparent`: its ids normalised.
    fn traceparent(&mut self, v: &str) -> String {
        v.split('-')
            .map(|p| self.one(p))
            .collect::<Vec<_>>()
            .join("-")
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn any(v: &KeyValue) -> Value {
    match v.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => Value::String(s.clone()),
        other => Value::String(format!("{other:?}")),
    }
}

/// Everything the collector got: the resources and scopes of every batch
/// (deduplicated), and each span as JSON keyed by its request's path.
struct Received {
    resources: Vec<Value>,
    spans: BTreeMap<String, Value>,
}

/// Decodes the collector's batches; `paths` maps request ids to paths,
/// `ids` the per-path id normalisers (shared with the upstream's headers).
fn received(
    rec: &Recorded,
    proxy_port: u16,
    paths: &HashMap<String, &'static str>,
    cases: &[Case],
    ids: &mut HashMap<&'static str, Ids>,
) -> Received {
    let mut resources = Vec::new();
    let mut spans = BTreeMap::new();
    for m in rec.messages(EXPORT_PATH) {
        let req = ExportTraceServiceRequest::decode(m).expect("an ExportTraceServiceRequest");
        for rs in req.resource_spans {
            let mut attrs = BTreeMap::new();
            for kv in &rs.resource.as_ref().expect("a resource").attributes {
                let v = match kv.key.as_str() {
                    "telemetry.sdk.version" | "telemetry.sdk.language" => json!("<sdk>"),
                    _ => any(kv),
                };
                attrs.insert(kv.key.clone(), v);
            }
            for ss in rs.scope_spans {
                let scope = ss.scope.as_ref().map(|s| {
                    assert!(!s.version.is_empty(), "the scope's version");
                    s.name.clone()
                });
                let resource = json!({"attributes": attrs, "scope": scope});
                if !resources.contains(&resource) {
                    resources.push(resource);
                }
                for s in ss.spans {
                    let mut tags: BTreeMap<String, Value> = s
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), any(kv)))
                        .collect();
                    let rid = tags
                        .get("guid:x-request-id")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    let url = tags
                        .get("http.url")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    let path = rid
                        .as_ref()
                        .and_then(|r| paths.get(r).copied())
                        // A request without an echo (the 503): its URL
                        // names it.
                        .or_else(|| cases.iter().map(|c| c.path).find(|p| url.ends_with(p)))
                        .unwrap_or_else(|| panic!("a span of an unknown request: {tags:?}"));
                    if rid.is_some() {
                        tags.insert("guid:x-request-id".into(), json!("<id>"));
                    }
                    let port = proxy_port.to_string();
                    tags.insert("http.url".into(), json!(url.replace(&port, "<port>")));
                    assert!(
                        s.start_time_unix_nano > 1_600_000_000_000_000_000
                            && s.end_time_unix_nano >= s.start_time_unix_nano
                            && s.end_time_unix_nano - s.start_time_unix_nano < 10_000_000_000,
                        "{path}: times {} {}",
                        s.start_time_unix_nano,
                        s.end_time_unix_nano
                    );
                    let n = ids.entry(path).or_default();
                    let span = json!({
                        "trace_id": n.one(&hex(&s.trace_id)),
                        "span_id": n.one(&hex(&s.span_id)),
                        "parent_span_id": n.one(&hex(&s.parent_span_id)),
                        "trace_state": s.trace_state,
                        "flags": format!("{:#x}", s.flags),
                        "name": s.name.replace(&port, "<port>"),
                        "kind": s.kind,
                        "attributes": tags,
                        "dropped_attributes_count": s.dropped_attributes_count,
                        "status": s.status.map(|st| json!({"code": st.code, "message": st.message})),
                    });
                    assert!(
                        spans.insert(path.to_owned(), span).is_none(),
                        "{path}: one span per request"
                    );
                }
            }
        }
    }
    Received { resources, spans }
}

struct Run {
    seen: Vec<Seen>,
    got: Received,
}

/// Runs `cases` through the proxy at `addr` (its collector `rec`),
/// waiting for `expected` spans.
async fn run(addr: SocketAddr, rec: &Recorded, cases: &[Case], expected: usize) -> Run {
    let mut seen = Vec::new();
    let mut paths = HashMap::new();
    let mut ids: HashMap<&'static str, Ids> = HashMap::new();
    for c in cases {
        let (mut s, request_id) = send(addr, c).await;
        let n = ids.entry(c.path).or_default();
        if let Some(tp) = s.context.get_mut("traceparent") {
            *tp = n.traceparent(tp);
        }
        if let Some(id) = request_id {
            paths.insert(id, c.path);
        }
        seen.push(s);
    }
    let count = |rec: &Recorded| {
        rec.messages(EXPORT_PATH)
            .into_iter()
            .filter_map(|m| ExportTraceServiceRequest::decode(m).ok())
            .flat_map(|r| r.resource_spans)
            .flat_map(|r| r.scope_spans)
            .map(|s| s.spans.len())
            .sum::<usize>()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while count(rec) < expected && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Envoy flushes every 5 s: a span that should not exist would be here
    // by then.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let got = received(rec, addr.port(), &paths, cases, &mut ids);
    Run { seen, got }
}

/// Runs `setup` and `cases` through Envoy and Strait and compares all.
async fn compare(setup: &Setup, cases: &[Case], expected_spans: usize) -> (Run, Run, TestProxy) {
    let up = http_echo("up");
    let dead = strait_test_support::bootstrap::closed_port();
    let (envoy_collector, envoy_rec) = grpc_recorder();
    let (strait_collector, strait_rec) = grpc_recorder();
    let envoy = Envoy::start(&bootstrap(setup, &up, envoy_collector.addr.port(), dead));
    let strait = TestProxy::start(
        &bootstrap(setup, &up, strait_collector.addr.port(), dead),
        1,
    );
    let (e, s) = tokio::join!(
        run(envoy.listener("http"), &envoy_rec, cases, expected_spans),
        run(strait.listener("http"), &strait_rec, cases, expected_spans),
    );
    if std::env::var_os("DIFF_VERBOSE").is_some() {
        eprintln!(
            "envoy: {:#?}\n{:#}\n{:#}",
            e.seen,
            json!(e.got.spans),
            json!(e.got.resources)
        );
    }
    for ((c, e), s) in cases.iter().zip(&e.seen).zip(&s.seen) {
        assert_eq!(
            s, e,
            "{}: what the upstream saw (left Strait, right Envoy)",
            c.path
        );
    }
    assert_eq!(
        e.got.spans.len(),
        expected_spans,
        "Envoy's spans: {:#?}",
        e.got.spans
    );
    for (path, es) in &e.got.spans {
        let ss = s
            .got
            .spans
            .get(path)
            .unwrap_or_else(|| panic!("Strait sent no span for {path}"));
        assert_eq!(ss, es, "{path}: the span (left Strait, right Envoy)");
    }
    assert_eq!(
        s.got.spans.len(),
        e.got.spans.len(),
        "Strait's spans: {:#?}",
        s.got.spans
    );
    assert_eq!(s.got.resources, e.got.resources, "resource and scope");
    // Both called the method Envoy's exporter calls, with gRPC's headers.
    for rec in [&strait_rec, &envoy_rec] {
        for c in rec.calls() {
            assert_eq!(c.path, EXPORT_PATH);
            assert_eq!(
                c.headers.get("content-type").map(|v| v.as_bytes()),
                Some(&b"application/grpc"[..])
            );
        }
    }
    (e, s, strait)
}

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const TRACEPARENT_UNSAMPLED: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";

/// Outbound (egress, `CLIENT` spans named `egress <host>`), every request
/// sampled by `random_sampling: 100`, custom tags; incoming contexts
/// sampled, unsampled, invalid, with one and two `tracestate` headers, and
/// a `tracestate` alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otel_outbound_sampled_matches_envoy() {
    let setup = Setup {
        direction: "OUTBOUND",
        hcm_extra: "",
        tracing: r#"            random_sampling: {value: 100}
            custom_tags:
            - {tag: lit, literal: {value: v1}}
            - {tag: hdr, request_header: {name: x-h, default_value: dflt}}
            - {tag: env, environment: {name: STRAIT_TRACE_TEST_UNSET, default_value: dflt}}
"#,
        otel_extra: "service_name: my-svc\n",
    };
    const CASES: &[Case] = &[
        get("/root", &[("x-h", "hv")]),
        get(
            "/tp",
            &[
                ("traceparent", TRACEPARENT),
                ("tracestate", "congo=t61rcWkgMzE"),
            ],
        ),
        get(
            "/tracestates",
            &[
                ("traceparent", TRACEPARENT),
                ("tracestate", "a=1"),
                ("tracestate", "b=2"),
            ],
        ),
        get("/tp-unsampled", &[("traceparent", TRACEPARENT_UNSAMPLED)]),
        get(
            "/tp-invalid",
            &[(
                "traceparent",
                "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            )],
        ),
        get("/tracestate-alone", &[("tracestate", "a=1")]),
        get("/client", &[("x-client-trace-id", "abc")]),
        Case {
            path: "/post",
            post: Some("hello world"),
            headers: &[],
        },
        get("/dead", &[]),
    ];
    let (envoy, _, strait) = compare(&setup, CASES, 7).await;
    // What the comparison covered, so a change on Envoy's side shows.
    let sampled: Vec<_> = envoy
        .seen
        .iter()
        .map(|s| s.context.get("traceparent").map(|t| t.ends_with("-01")))
        .collect();
    assert_eq!(
        sampled,
        [
            Some(true),
            Some(true),
            Some(true),
            Some(false),
            Some(true),
            Some(true),
            Some(true),
            Some(true),
            None
        ]
    );
    // The invalid context went through untouched, with no tracestate.
    assert_eq!(
        envoy.seen[4].context.get("traceparent").map(String::as_str),
        Some("00-00000000000000000000000000000000-b7ad6b7169203331-01")
    );
    assert_eq!(envoy.seen[4].context.get("tracestate"), None);
    assert_eq!(
        envoy.seen[2].context.get("tracestate").map(String::as_str),
        Some("a=1,b=2")
    );
    assert_eq!(envoy.got.spans["/root"]["kind"], 3, "CLIENT");
    assert_eq!(envoy.got.spans["/dead"]["status"]["code"], 2, "ERROR");
    let admin = strait.admin();
    let sent = strait_test_support::admin::stat(admin, "envoy_tracing_opentelemetry_spans_sent")
        .await
        .expect("stats");
    assert_eq!(sent, Some(7.0));
}

/// Inbound (ingress, `SERVER` spans named `ingress`), nothing sampled at
/// random, the default service name: forced, client-traced and
/// pre-decided requests are traced; an incoming sampled `traceparent`
/// alone is not (Envoy 1.40's decision wins), nor a forced request whose
/// `traceparent` is unsampled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otel_inbound_forced_and_propagated_match_envoy() {
    let setup = Setup {
        direction: "INBOUND",
        hcm_extra: "          use_remote_address: true\n          internal_address_config: {cidr_ranges: [{address_prefix: 127.0.0.1, prefix_len: 32}]}\n",
        tracing: "            random_sampling: {value: 0}\n",
        otel_extra: "",
    };
    const CASES: &[Case] = &[
        get("/unsampled", &[]),
        get("/forced", &[("x-envoy-force-trace", "1")]),
        get("/tp-sampled", &[("traceparent", TRACEPARENT)]),
        get(
            "/forced-tp-unsampled",
            &[
                ("x-envoy-force-trace", "1"),
                ("traceparent", TRACEPARENT_UNSAMPLED),
            ],
        ),
        get(
            "/forced-tp-sampled",
            &[
                ("x-envoy-force-trace", "1"),
                ("traceparent", TRACEPARENT),
                ("tracestate", "rojo=00f067aa0ba902b7"),
            ],
        ),
        get(
            "/decided",
            &[("x-request-id", "12345678-1234-9234-8234-123456789012")],
        ),
        get("/client", &[("x-client-trace-id", "abc")]),
    ];
    let (envoy, _, _) = compare(&setup, CASES, 4).await;
    let nibbles: Vec<_> = envoy.seen.iter().map(|s| s.nibble).collect();
    assert_eq!(
        nibbles,
        [
            Some('4'),
            Some('a'),
            Some('4'),
            Some('a'),
            Some('a'),
            Some('9'),
            Some('b')
        ]
    );
    let traced: Vec<_> = envoy.got.spans.keys().map(String::as_str).collect();
    assert_eq!(
        traced,
        ["/client", "/decided", "/forced", "/forced-tp-sampled"]
    );
    assert_eq!(envoy.got.spans["/forced"]["kind"], 2, "SERVER");
    assert_eq!(envoy.got.spans["/forced"]["name"], "ingress");
}

/// A collector that accepts and never answers: requests are not slowed
/// (export is off the request path) and the spans of the stuck export
/// are counted as dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_otel_collector_slows_no_request() {
    let up = http_echo("up");
    let stuck = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let stuck_port = stuck.local_addr().expect("addr").port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&held);
    tokio::spawn(async move {
        while let Ok((s, _)) = stuck.accept().await {
            keep.lock().expect("lock").push(s);
        }
    });
    let setup = Setup {
        direction: "OUTBOUND",
        hcm_extra: "",
        tracing: "            random_sampling: {value: 100}\n",
        otel_extra: "",
    };
    let yaml = bootstrap(
        &setup,
        &up,
        stuck_port,
        strait_test_support::bootstrap::closed_port(),
    );
    let strait = TestProxy::start(&yaml, 1);
    let addr = strait.listener("http");
    for i in 0..40 {
        let started = std::time::Instant::now();
        let (seen, _) = send(addr, &get("/x", &[])).await;
        assert_eq!(seen.status, 200);
        assert!(
            seen.context
                .get("traceparent")
                .is_some_and(|t| t.ends_with("-01")),
            "{seen:?}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "request {i} took {:?} with the collector stuck",
            started.elapsed()
        );
    }
    let admin = strait.admin();
    let dropped = strait_test_support::eventually(
        "dropped spans",
        Duration::from_secs(15),
        move || async move {
            strait_test_support::admin::stat(admin, "envoy_tracing_opentelemetry_spans_dropped")
                .await
                .ok()
                .flatten()
                .filter(|n| *n > 0.0)
        },
    )
    .await;
    assert!(dropped >= 5.0);
    assert!(
        !held.lock().expect("lock").is_empty(),
        "the exporter reached the collector"
    );
}
