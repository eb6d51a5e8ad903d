//! HTTP filters before the router: fault injection, CORS and header
//! mutation, with per-route overrides.

#[path = "flaky.rs"]
mod flaky;

use std::time::{Duration, Instant};

use bytes::Bytes;
use flaky::{Mode, config, start};
use http::Request;
use http_body_util::Full;
use strait_test_support::{client::Client, proxy::TestProxy};

const FAULT: &str = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault";
const CORS: &str = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors";
const CORS_POLICY: &str = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy";
const MUTATION: &str =
    "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation";
const MUTATION_ROUTE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute";
const FILTER_CONFIG: &str = "type.googleapis.com/envoy.config.route.v3.FilterConfig";

fn all_routes() -> String {
    "              routes:\n              - match: {prefix: \"/\"}\n                route: {cluster: backend}\n".to_owned()
}

fn get(path: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::get(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_delay_and_abort() -> anyhow::Result<()> {
    let up = start("up", 0, Mode::Status(200)).await;
    let filters = format!(
        "          - name: envoy.filters.http.fault\n            typed_config:\n              \"@type\": {FAULT}\n              delay: {{fixed_delay: 0.3s, percentage: {{numerator: 100}}}}\n              abort: {{http_status: 503, percentage: {{numerator: 100}}}}\n              headers: [{{name: x-fault, exact_match: \"yes\"}}]\n"
    );
    let proxy = TestProxy::start(
        &config(
            1 << 20,
            &filters,
            &all_routes(),
            &[("backend", vec![(up.addr, 1)])],
        ),
        1,
    );
    let mut c = Client::http1(proxy.listener("listener")).await?;
    let t = Instant::now();
    let r = c.send(get("/", &[("x-fault", "yes")])).await?;
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(r.status, 503);
    assert_eq!(r.text(), "fault filter abort");
    assert_eq!(up.requests(), 0);
    // Requests the header matcher does not select pass untouched.
    let t = Instant::now();
    let r = c.get("/").await?;
    assert_eq!(r.status, 200);
    assert!(t.elapsed() < Duration::from_millis(300));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_controlled_and_percentage_faults() -> anyhow::Result<()> {
    let up = start("up", 0, Mode::Status(200)).await;
    let filters = format!(
        "          - name: envoy.filters.http.fault\n            typed_config:\n              \"@type\": {FAULT}\n              delay: {{header_delay: {{}}, percentage: {{numerator: 100}}}}\n              abort: {{header_abort: {{}}, percentage: {{numerator: 100}}}}\n          - name: half\n            typed_config:\n              \"@type\": {FAULT}\n              abort: {{http_status: 429, percentage: {{numerator: 5000, denominator: TEN_THOUSAND}}}}\n              headers: [{{name: x-half, present_match: true}}]\n"
    );
    let proxy = TestProxy::start(
        &config(
            1 << 20,
            &filters,
            &all_routes(),
            &[("backend", vec![(up.addr, 1)])],
        ),
        1,
    );
    let mut c = Client::http1(proxy.listener("listener")).await?;
    let t = Instant::now();
    let r = c
        .send(get(
            "/",
            &[
                ("x-envoy-fault-delay-request", "200"),
                ("x-envoy-fault-abort-request", "418"),
            ],
        ))
        .await?;
    assert_eq!(r.status, 418);
    assert!(t.elapsed() >= Duration::from_millis(200));
    let r = c
        .send(get("/", &[("x-envoy-fault-abort-grpc-request", "14")]))
        .await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("grpc-status"), Some("14"));
    assert_eq!(c.get("/").await?.status, 200);

    let mut aborted = 0;
    for _ in 0..1000 {
        if c.send(get("/", &[("x-half", "1")])).await?.status == 429 {
            aborted += 1;
        }
    }
    assert!((450..=550).contains(&aborted), "{aborted} of 1000 aborted");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_and_actual_requests() -> anyhow::Result<()> {
    let up = start("up", 0, Mode::Status(200)).await;
    let filters = format!(
        "          - name: envoy.filters.http.cors\n            typed_config: {{\"@type\": {CORS}}}\n"
    );
    let vhost = format!(
        "              typed_per_filter_config:\n                envoy.filters.http.cors:\n                  \"@type\": {CORS_POLICY}\n                  allow_origin_string_match: [{{suffix: \".example.com\"}}]\n                  allow_methods: \"GET, PUT\"\n                  allow_headers: x-custom\n                  expose_headers: x-upstream\n                  max_age: \"600\"\n                  allow_credentials: true\n{}",
        all_routes()
    );
    let proxy = TestProxy::start(
        &config(
            1 << 20,
            &filters,
            &vhost,
            &[("backend", vec![(up.addr, 1)])],
        ),
        1,
    );
    let mut c = Client::http1(proxy.listener("listener")).await?;
    let pre = Request::options("/things")
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "PUT")
        .body(Full::new(Bytes::new()))?;
    let r = c.send(pre).await?;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(r.header("access-control-allow-methods"), Some("GET, PUT"));
    assert_eq!(r.header("access-control-allow-headers"), Some("x-custom"));
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(up.requests(), 0, "preflight answered locally");

    let r = c
        .send(get("/things", &[("origin", "https://app.example.com")]))
        .await?;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("x-upstream")
    );

    let r = c
        .send(get("/things", &[("origin", "https://evil.org")]))
        .await?;
    assert_eq!(r.header("access-control-allow-origin"), None);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_mutation_with_route_overrides() -> anyhow::Result<()> {
    let up = start("up", 0, Mode::Status(200)).await;
    let filters = format!(
        "          - name: mutate\n            typed_config:\n              \"@type\": {MUTATION}\n              mutations:\n                request_mutations:\n                - append: {{header: {{key: x-host, value: rewritten}}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}}\n                response_mutations:\n                - append: {{header: {{key: x-filter, value: \"on\"}}}}\n                - remove: x-upstream\n"
    );
    let vhost = format!(
        "              routes:\n              - match: {{prefix: \"/off\"}}\n                route: {{cluster: backend}}\n                typed_per_filter_config:\n                  mutate: {{\"@type\": {FILTER_CONFIG}, disabled: true}}\n              - match: {{prefix: \"/extra\"}}\n                route: {{cluster: backend}}\n                typed_per_filter_config:\n                  mutate:\n                    \"@type\": {MUTATION_ROUTE}\n                    mutations:\n                      response_mutations:\n                      - append: {{header: {{key: x-route, value: extra}}}}\n              - match: {{prefix: \"/\"}}\n                route: {{cluster: backend}}\n"
    );
    let proxy = TestProxy::start(
        &config(
            1 << 20,
            &filters,
            &vhost,
            &[("backend", vec![(up.addr, 1)])],
        ),
        1,
    );
    let mut c = Client::http1(proxy.listener("listener")).await?;
    let r = c.get("/plain").await?;
    assert_eq!(r.header("x-filter"), Some("on"));
    assert_eq!(r.header("x-upstream"), None);
    assert_eq!(r.header("x-route"), None);

    let r = c.get("/extra").await?;
    assert_eq!(r.header("x-filter"), Some("on"));
    assert_eq!(r.header("x-route"), Some("extra"));

    let r = c.get("/off").await?;
    assert_eq!(r.header("x-filter"), None);
    assert_eq!(r.header("x-upstream"), Some("up"));
    Ok(())
}
