//! HTTP filters an embedding program registers by type URL, configured the
//! way Envoy configures extensions it has no proto of: a `TypedStruct` in
//! the YAML bootstrap, or an `Any` of the filter's own type over xDS. The
//! filter runs in the chain with per-route overrides; a type URL nobody
//! registered is refused by name; the factory's own refusal names the field
//! and keeps the last good config (file) or is NACKed (xDS); a filter that
//! pauses a request does not stall the worker.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use envoy_types::pb::{
    envoy::extensions::filters::network::http_connection_manager::v3::{
        HttpConnectionManager, http_filter::ConfigType,
    },
    google::protobuf::{Any, StringValue},
};
use http::{HeaderValue, StatusCode};
use prost::Message as _;
use strait_http::{Decision, HttpFilter, HttpFilterFactory, Reply, RequestHead, ResponseHead};
use strait_model::extension::{Extension, TypedValue};
use strait_test_support::{
    client::{Client, Reply as Answer},
    eventually,
    proxy::TestProxy,
    upstream::http_echo,
    xds_server::{CLUSTER, LISTENER, XdsServer, resource},
};
use tokio::sync::Notify;

const TAG: &str = "type.googleapis.com/test.filters.Tag";
const TAG_PER_ROUTE: &str = "type.googleapis.com/test.filters.TagPerRoute";
const APPLY: Duration = Duration::from_secs(10);

/// The filter's config: the value of `x-tag`.
#[derive(Debug, Clone, PartialEq)]
struct Tag(HeaderValue);

/// `{value: "..."}` from a `TypedStruct`, or a `google.protobuf.StringValue`
/// from an `Any`'s bytes. An empty value is refused.
fn tag(value: TypedValue<'_>) -> Result<Tag, String> {
    let text = match value {
        TypedValue::Struct(v) => v
            .get("value")
            .and_then(|v| v.as_str())
            .ok_or("value: a string is required")?
            .to_owned(),
        TypedValue::Proto(bytes) => {
            StringValue::decode(bytes)
                .map_err(|e| format!("not a StringValue: {e}"))?
                .value
        }
        _ => return Err("unknown config form".into()),
    };
    if text.is_empty() {
        return Err("value: must not be empty".into());
    }
    HeaderValue::try_from(text)
        .map(Tag)
        .map_err(|e| format!("value: {e}"))
}

/// Tags requests and responses; pauses `/wait` until `release` is
/// notified; answers `/deny` itself.
struct TagFactory {
    release: Arc<Notify>,
    paused: Arc<AtomicU64>,
}

impl HttpFilterFactory for TagFactory {
    fn type_url(&self) -> &str {
        TAG
    }

    fn parse(&self, value: TypedValue<'_>) -> Result<Extension, String> {
        tag(value).map(|t| Extension::new(TAG, t))
    }

    fn per_route_type_url(&self) -> Option<&str> {
        Some(TAG_PER_ROUTE)
    }

    fn parse_per_route(&self, value: TypedValue<'_>) -> Result<Extension, String> {
        tag(value).map(|t| Extension::new(TAG_PER_ROUTE, t))
    }

    fn create(&self, config: &Extension) -> Result<Arc<dyn HttpFilter>, String> {
        Ok(Arc::new(TagFilter {
            tag: config.get::<Tag>().ok_or("not a Tag")?.clone(),
            release: Arc::clone(&self.release),
            paused: Arc::clone(&self.paused),
        }))
    }
}

struct TagFilter {
    tag: Tag,
    release: Arc<Notify>,
    paused: Arc<AtomicU64>,
}

impl HttpFilter for TagFilter {
    fn on_request<'a>(&'a self, req: &'a mut RequestHead<'_>) -> Decision<'a> {
        let tag = req.route_config::<Tag>().unwrap_or(&self.tag).0.clone();
        match req.head.uri.path() {
            "/deny" => Decision::Respond(
                Reply::new(StatusCode::FORBIDDEN)
                    .body("denied\n")
                    .flag("UAEX")
                    .details("tag_denied"),
            ),
            "/wait" => Decision::Pause(Box::pin(async move {
                let released = self.release.notified();
                self.paused.fetch_add(1, Ordering::SeqCst);
                released.await;
                // The paused future still holds the head.
                req.head.headers.insert("x-tag", tag);
                req.head
                    .headers
                    .insert("x-resumed", HeaderValue::from_static("yes"));
                Decision::Continue
            })),
            _ => {
                req.head.headers.insert("x-tag", tag);
                Decision::Continue
            }
        }
    }

    fn on_response(&self, resp: &mut ResponseHead<'_>) {
        let tag = resp.route_config::<Tag>().unwrap_or(&self.tag);
        resp.headers.insert("x-tagged", tag.0.clone());
    }
}

fn factory() -> (TagFactory, Arc<Notify>, Arc<AtomicU64>) {
    let release = Arc::new(Notify::new());
    let paused = Arc::new(AtomicU64::new(0));
    let f = TagFactory {
        release: Arc::clone(&release),
        paused: Arc::clone(&paused),
    };
    (f, release, paused)
}

/// A bootstrap with the tag filter (value `filter_value`) before the router,
/// and `/special` overriding it per route.
fn config(upstream: SocketAddr, filter_value: &str) -> String {
    format!(
        r#"
static_resources:
  listeners:
  - name: listener
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: /special}}
                route: {{cluster: backend}}
                typed_per_filter_config:
                  tag:
                    "@type": type.googleapis.com/xds.type.v3.TypedStruct
                    type_url: {TAG_PER_ROUTE}
                    value: {{value: special}}
              - match: {{prefix: /}}
                route: {{cluster: backend}}
          http_filters:
          - name: tag
            typed_config:
              "@type": type.googleapis.com/xds.type.v3.TypedStruct
              type_url: {TAG}
              value: {{value: "{filter_value}"}}
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: backend
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
"#,
        port = upstream.port()
    )
}

/// The value of request header `name` as the echo upstream received it.
fn upstream_saw(r: &Answer, name: &str) -> Option<String> {
    r.json()["headers"].as_array()?.iter().find_map(|h| {
        (h[0].as_str()? == name)
            .then(|| h[1].as_str().map(str::to_owned))
            .flatten()
    })
}

async fn get(addr: SocketAddr, path: &str) -> Answer {
    let mut c = Client::http1(addr).await.expect("connect");
    c.get(path).await.expect("response")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_filter_runs_from_a_typed_struct_with_per_route_configs() {
    let up = http_echo("up");
    let (f, _, _) = factory();
    let proxy = TestProxy::start_with(&config(up.addr, "plain"), 1, |o| {
        o.http_filters.register(f);
    });
    let addr = proxy.listener("listener");

    let r = get(addr, "/").await;
    assert_eq!(r.status, 200);
    assert_eq!(upstream_saw(&r, "x-tag").as_deref(), Some("plain"));
    assert_eq!(r.header("x-tagged"), Some("plain"));

    let r = get(addr, "/special/x").await;
    assert_eq!(upstream_saw(&r, "x-tag").as_deref(), Some("special"));
    assert_eq!(r.header("x-tagged"), Some("special"));

    let before = up.requests();
    let r = get(addr, "/deny").await;
    assert_eq!(r.status, 403);
    assert_eq!(r.text(), "denied\n");
    assert_eq!(
        r.header("x-tagged"),
        None,
        "the answering filter does not encode"
    );
    assert_eq!(
        up.requests(),
        before,
        "a denied request never reaches upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_url_nobody_registered_is_refused_by_name() {
    let up = http_echo("up");
    let err = TestProxy::try_start(&config(up.addr, "plain"), 1)
        .err()
        .expect("refused");
    assert!(err.contains(TAG), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_factorys_refusal_names_the_field_and_the_last_good_config_keeps_serving() {
    let up = http_echo("up");
    let (f, _, _) = factory();
    let proxy = TestProxy::start_with(&config(up.addr, "plain"), 1, |o| {
        o.http_filters.register(f);
    });
    let addr = proxy.listener("listener");
    proxy.rewrite(&config(up.addr, ""));
    eventually("the empty tag is refused", APPLY, || async {
        (proxy.reload_failures() > 0).then_some(())
    })
    .await;
    let why = proxy.last_reload_error().unwrap_or_default();
    assert!(why.contains("http_filters[0].typed_config"), "{why}");
    assert!(why.contains("value: must not be empty"), "{why}");
    let r = get(addr, "/").await;
    assert_eq!(upstream_saw(&r, "x-tag").as_deref(), Some("plain"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_request_waits_without_stalling_the_worker() {
    let up = http_echo("up");
    let (f, release, paused) = factory();
    // One worker: a paused request that blocked it would stall the other.
    let proxy = TestProxy::start_with(&config(up.addr, "plain"), 1, |o| {
        o.http_filters.register(f);
    });
    let addr = proxy.listener("listener");
    let waiting = tokio::spawn(async move { get(addr, "/wait").await });
    eventually("the request is paused in the filter", APPLY, || async {
        (paused.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    let other = get(addr, "/other").await;
    assert_eq!(other.status, 200, "served while the other request waits");
    assert!(!waiting.is_finished());
    release.notify_waiters();
    let r = waiting.await.expect("joined");
    assert_eq!(r.status, 200);
    assert_eq!(upstream_saw(&r, "x-resumed").as_deref(), Some("yes"));
    assert_eq!(upstream_saw(&r, "x-tag").as_deref(), Some("plain"));
}

/// The tag filter's config as the control plane sends it: an `Any` of the
/// filter's own type (a `StringValue` here), no `TypedStruct`.
fn xds_listener(value: &str) -> (String, Any) {
    let (name, mut any) = resource(
        "envoy.config.listener.v3.Listener",
        r#"
name: web
address: {socket_address: {address: 127.0.0.1, port_value: 0}}
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: web
      route_config:
        virtual_hosts:
        - {name: all, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: backend}}]}
      http_filters:
      - name: tag
        # Replaced below by the tag filter's own Any.
        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
      - name: envoy.filters.http.router
        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
"#,
    );
    let mut listener =
        envoy_types::pb::envoy::config::listener::v3::Listener::decode(any.value.as_slice())
            .expect("listener");
    let filter = &mut listener.filter_chains[0].filters[0];
    let Some(envoy_types::pb::envoy::config::listener::v3::filter::ConfigType::TypedConfig(
        hcm_any,
    )) = &mut filter.config_type
    else {
        panic!("no typed_config");
    };
    let mut hcm = HttpConnectionManager::decode(hcm_any.value.as_slice()).expect("hcm");
    hcm.http_filters[0].config_type = Some(ConfigType::TypedConfig(Any {
        type_url: TAG.into(),
        value: StringValue {
            value: value.into(),
        }
        .encode_to_vec(),
    }));
    hcm_any.value = hcm.encode_to_vec();
    any.value = listener.encode_to_vec();
    (name, any)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_xds_the_filters_own_any_is_parsed_and_a_bad_one_is_nacked() {
    let up = http_echo("up");
    let xds = XdsServer::start();
    xds.set(
        CLUSTER,
        vec![resource(
            "envoy.config.cluster.v3.Cluster",
            &format!(
                "name: backend\nconnect_timeout: 1s\nload_assignment: {{cluster_name: backend, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}}}]}}]}}",
                up.addr.port()
            ),
        )],
    );
    xds.set(LISTENER, vec![xds_listener("from-xds")]);
    let (f, _, _) = factory();
    let bootstrap = strait_test_support::xds_server::ads_bootstrap(xds.addr(), "GRPC", "test");
    let proxy = TestProxy::start_with(&bootstrap, 1, |o| {
        o.http_filters.register(f);
    });
    let addr = eventually("listener web from LDS", APPLY, || async {
        proxy.try_listener("web")
    })
    .await;
    let r = get(addr, "/").await;
    assert_eq!(upstream_saw(&r, "x-tag").as_deref(), Some("from-xds"));

    xds.set(LISTENER, vec![xds_listener("")]);
    let nack = eventually("the empty tag is NACKed", APPLY, || async {
        xds.nacks(LISTENER).pop()
    })
    .await;
    let why = nack.error_detail.unwrap_or_default();
    assert!(why.contains("value: must not be empty"), "{why}");
    let r = get(addr, "/").await;
    assert_eq!(
        upstream_saw(&r, "x-tag").as_deref(),
        Some("from-xds"),
        "the last good listener keeps serving"
    );
}

const GREETER: &str = "type.googleapis.com/test.filters.Greeter";

/// A terminal network filter: answers each connection with one greeting
/// line naming the listener and the client's first line, then closes.
struct Greeter(String);

impl strait_app::NetworkFilter for Greeter {
    fn serve(
        &self,
        mut conn: strait_app::NetworkConnection,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
            let mut line = String::new();
            let mut reader = BufReader::new(&mut conn.io);
            if reader.read_line(&mut line).await.is_err() {
                return;
            }
            let reply = format!("{} {} from {}\n", self.0, line.trim(), conn.listener);
            let _ = conn.io.write_all(reply.as_bytes()).await;
            let _ = conn.io.shutdown().await;
        })
    }
}

struct GreeterFactory;

impl strait_app::NetworkFilterFactory for GreeterFactory {
    fn type_url(&self) -> &str {
        GREETER
    }

    fn parse(&self, value: TypedValue<'_>) -> Result<Extension, String> {
        match value {
            TypedValue::Struct(v) => v
                .get("greeting")
                .and_then(|g| g.as_str())
                .map(|g| Extension::new(GREETER, g.to_owned()))
                .ok_or_else(|| "greeting: a string is required".to_owned()),
            _ => Err("expected a TypedStruct".into()),
        }
    }

    fn create(&self, config: &Extension) -> Result<Arc<dyn strait_app::NetworkFilter>, String> {
        let greeting = config.get::<String>().ok_or("not a greeting")?;
        Ok(Arc::new(Greeter(greeting.clone())))
    }
}

const GREETER_CONFIG: &str = r#"
static_resources:
  listeners:
  - name: greet
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: greeter
        typed_config:
          "@type": type.googleapis.com/xds.type.v3.TypedStruct
          type_url: type.googleapis.com/test.filters.Greeter
          value: {greeting: hello}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_network_filter_serves_its_listener() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let err = TestProxy::try_start(GREETER_CONFIG, 1)
        .err()
        .expect("refused without the factory");
    assert!(err.contains(GREETER), "{err}");

    let proxy = TestProxy::start_with(GREETER_CONFIG, 1, |o| {
        o.network_filters.register(GreeterFactory);
    });
    let mut s = tokio::net::TcpStream::connect(proxy.listener("greet"))
        .await
        .expect("connect");
    s.write_all(b"world\n").await.expect("write");
    let mut reply = String::new();
    s.read_to_string(&mut reply).await.expect("read");
    assert_eq!(reply, "hello world from greet\n");
}

const SHOUT: &str = "type.googleapis.com/test.filters.Shout";

/// Body steps: doubles every request data frame (so it drops the request's
/// `content-length`) and upper-cases the response body, but only for a
/// request whose `on_request` marked its filter state: the upper-casing
/// shows the state reached the response's body step.
struct Shout;

#[derive(Clone, Copy)]
struct Marked;

impl HttpFilter for Shout {
    fn on_request<'a>(&'a self, req: &'a mut RequestHead<'_>) -> Decision<'a> {
        req.head.headers.remove(http::header::CONTENT_LENGTH);
        req.state.insert(Marked);
        Decision::Continue
    }

    fn on_response(&self, resp: &mut ResponseHead<'_>) {
        resp.headers
            .insert("x-shouted", HeaderValue::from_static("yes"));
    }

    fn wants_body(&self) -> bool {
        true
    }

    fn on_request_data(&self, data: &mut bytes::Bytes) {
        let mut twice = data.to_vec();
        twice.extend_from_slice(data);
        *data = twice.into();
    }

    fn on_response_data(&self, data: &mut bytes::Bytes, state: &mut strait_http::FilterState) {
        if state.get::<Marked>().is_some() {
            *data = data.to_ascii_uppercase().into();
        }
    }
}

struct ShoutFactory;

impl HttpFilterFactory for ShoutFactory {
    fn type_url(&self) -> &str {
        SHOUT
    }

    fn parse(&self, _: TypedValue<'_>) -> Result<Extension, String> {
        Ok(Extension::new(SHOUT, ()))
    }

    fn create(&self, _: &Extension) -> Result<Arc<dyn HttpFilter>, String> {
        Ok(Arc::new(Shout))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_steps_change_request_and_response_bodies() {
    let up = http_echo("up");
    let yaml = config(up.addr, "plain").replace(
        "          - name: envoy.filters.http.router\n",
        &format!(
            "          - name: shout\n            typed_config:\n              \"@type\": type.googleapis.com/xds.type.v3.TypedStruct\n              type_url: {SHOUT}\n          - name: envoy.filters.http.router\n"
        ),
    );
    let (f, _, _) = factory();
    let proxy = TestProxy::start_with(&yaml, 1, |o| {
        o.http_filters.register(f);
        o.http_filters.register(ShoutFactory);
    });
    let mut c = Client::http1(proxy.listener("listener"))
        .await
        .expect("connect");
    let req = http::Request::post("http://example/echo")
        .header("host", "example")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"abcd",
        )))
        .expect("request");
    let r = c.send(req).await.expect("response");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-shouted"), Some("yes"));
    let text = r.text();
    assert!(
        text.contains("\"BODY_LEN\":8"),
        "request body doubled: {text}"
    );
    assert!(
        text.contains("\"UPSTREAM\":\"UP\""),
        "response upper-cased: {text}"
    );
    // The tag filter (no body steps) still ran on the head.
    assert!(text.contains("\"X-TAG\",\"PLAIN\""), "{text}");
}

const NAMER: &str = "type.googleapis.com/test.filters.Namer";

/// A listener filter: a connection whose first line is `NAME <x>` is
/// matched as if its TLS server name were `x`.
struct Namer;

impl strait_app::ListenerFilter for Namer {
    fn inspect(&self, peeked: &[u8], found: &mut strait_app::Inspection) -> strait_app::Sniffed {
        let Some(end) = peeked.iter().position(|b| *b == b'\n') else {
            return strait_app::Sniffed::More;
        };
        if let Some(name) = std::str::from_utf8(&peeked[..end])
            .ok()
            .and_then(|l| l.strip_prefix("NAME "))
        {
            found.server_name = Some(name.trim().to_owned());
        }
        strait_app::Sniffed::Done
    }
}

struct NamerFactory;

impl strait_app::ListenerFilterFactory for NamerFactory {
    fn type_url(&self) -> &str {
        NAMER
    }

    fn parse(&self, _: TypedValue<'_>) -> Result<Extension, String> {
        Ok(Extension::new(NAMER, ()))
    }

    fn create(&self, _: &Extension) -> Result<Arc<dyn strait_app::ListenerFilter>, String> {
        Ok(Arc::new(Namer))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_listener_filter_feeds_the_filter_chain_match() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let yaml = format!(
        r#"
static_resources:
  listeners:
  - name: greet
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    listener_filters:
    - name: namer
      typed_config:
        "@type": type.googleapis.com/xds.type.v3.TypedStruct
        type_url: {NAMER}
    filter_chains:
    - filter_chain_match: {{server_names: [east]}}
      filters:
      - name: greeter
        typed_config:
          "@type": type.googleapis.com/xds.type.v3.TypedStruct
          type_url: {GREETER}
          value: {{greeting: east-says}}
    - filter_chain_match: {{server_names: [west]}}
      filters:
      - name: greeter
        typed_config:
          "@type": type.googleapis.com/xds.type.v3.TypedStruct
          type_url: {GREETER}
          value: {{greeting: west-says}}
"#
    );
    let err = TestProxy::try_start_with(&yaml, 1, |o| {
        o.network_filters.register(GreeterFactory);
    })
    .err()
    .expect("refused without the listener filter's factory");
    assert!(err.contains(NAMER), "{err}");

    let proxy = TestProxy::start_with(&yaml, 1, |o| {
        o.network_filters.register(GreeterFactory);
        o.listener_filters.register(NamerFactory);
    });
    let addr = proxy.listener("greet");
    for (name, want) in [("west", "west-says"), ("east", "east-says")] {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(format!("NAME {name}\n").as_bytes())
            .await
            .expect("write");
        let mut reply = String::new();
        s.read_to_string(&mut reply).await.expect("read");
        // The greeter reads the replayed first line: the listener filter
        // peeked at it without consuming it.
        assert_eq!(reply, format!("{want} NAME {name} from greet\n"));
    }
}

/// Stands in for `envoy.filters.http.router`: answers every request itself.
struct LocalRouter;

impl HttpFilter for LocalRouter {
    fn on_request<'a>(&'a self, req: &'a mut RequestHead<'_>) -> Decision<'a> {
        let tag = req
            .head
            .headers
            .get("x-tag")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        Decision::Respond(
            Reply::new(StatusCode::OK)
                .body(format!("answered locally, tag {tag}\n"))
                .details("local_router"),
        )
    }
}

struct LocalRouterFactory;

impl HttpFilterFactory for LocalRouterFactory {
    fn type_url(&self) -> &str {
        strait_model::filter::type_url::ROUTER
    }

    fn create(&self, _: &Extension) -> Result<Arc<dyn HttpFilter>, String> {
        Ok(Arc::new(LocalRouter))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_is_a_registry_entry_an_embedder_can_replace() {
    let up = http_echo("up");
    let (f, _, _) = factory();
    let proxy = TestProxy::start_with(&config(up.addr, "plain"), 1, |o| {
        o.http_filters.register(f);
        o.http_filters.register(LocalRouterFactory);
    });
    let r = get(proxy.listener("listener"), "/").await;
    assert_eq!(r.status, 200);
    // The filters before the router ran, then the replacement answered.
    assert_eq!(r.text(), "answered locally, tag plain\n");
    assert_eq!(r.header("x-tagged"), Some("plain"));
    assert_eq!(up.requests(), 0, "nothing reached the upstream");
}
