//! A real ADS control plane for tests: tonic serving
//! `StreamAggregatedResources` (state of the world) and
//! `DeltaAggregatedResources` on 127.0.0.1, with resources set by the test
//! and every request recorded so tests can assert on ACKs and NACKs.
//!
//! The server runs on its own thread and runtime, so [`XdsServer::stop`]
//! really drops every stream (as a crashed control plane would) and
//! [`XdsServer::restart`] comes back on the same port with the same
//! resources.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use envoy_types::pb::{
    envoy::service::discovery::v3::{
        DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
        Resource,
        aggregated_discovery_service_server::{
            AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
        },
    },
    google::protobuf::Any,
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::{mpsc, oneshot, watch};
use tonic::{
    Request, Response, Status, Streaming,
    codegen::{
        Service,
        tokio_stream::{Stream, wrappers::ReceiverStream},
    },
};

pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

mod sds;

/// One request the server received, as the client sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// Which stream (connection) it came on, counting from 0.
    pub stream: u64,
    pub delta: bool,
    pub type_url: String,
    /// SotW only: the version the client last accepted.
    pub version_info: String,
    pub response_nonce: String,
    /// SotW: `resource_names`; delta: `resource_names_subscribe`.
    pub resource_names: Vec<String>,
    /// `error_detail.message` of a NACK.
    pub error_detail: Option<String>,
    pub has_node: bool,
    /// The node the request carried, when it carried one.
    pub node: Option<envoy_types::pb::envoy::config::core::v3::Node>,
    /// Delta only: how many `initial_resource_versions` the request carried
    /// (what the client already has, on a reconnect).
    pub initial_versions: usize,
}

impl RecordedRequest {
    /// An ACK or NACK (a reply to a response), rather than a subscription.
    pub fn is_reply(&self) -> bool {
        !self.response_nonce.is_empty()
    }
}

/// The control plane. Dropping it stops the server.
pub struct XdsServer {
    state: Arc<State>,
    bound: Bound,
    running: Mutex<Option<Running>>,
}

/// Where the server listens.
#[derive(Debug, Clone)]
enum Bound {
    Tcp(SocketAddr),
    /// A unix socket, as pilot-agent serves xDS to Envoy.
    Unix(std::path::PathBuf),
}

enum Listening {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

struct Running {
    stop: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

#[derive(Default)]
struct State {
    inner: Mutex<Inner>,
    /// Bumped on every [`XdsServer::set`], waking every stream.
    changed: watch::Sender<u64>,
}

#[derive(Default)]
struct Inner {
    types: HashMap<String, TypeState>,
    requests: Vec<RecordedRequest>,
    /// The last response sent of each type: (stream, nonce, type version).
    last_sent: HashMap<String, (u64, String, u64)>,
    next_stream: u64,
    next_resource_version: u64,
}

#[derive(Default, Clone)]
struct TypeState {
    version: u64,
    /// name → (resource version, resource).
    resources: BTreeMap<String, (u64, Any)>,
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl XdsServer {
    /// Starts on 127.0.0.1 with a free port.
    pub fn start() -> XdsServer {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("binding the xDS server: {e}"));
        let addr = std_listener
            .local_addr()
            .unwrap_or_else(|e| panic!("xDS server address: {e}"));
        let state = Arc::new(State::default());
        let running = run(Arc::clone(&state), Listening::Tcp(std_listener));
        XdsServer {
            state,
            bound: Bound::Tcp(addr),
            running: Mutex::new(Some(running)),
        }
    }

    /// Starts on a unix socket at `path` (which must not exist yet), as
    /// pilot-agent serves xDS to its proxy.
    pub fn start_unix(path: impl Into<std::path::PathBuf>) -> XdsServer {
        let path = path.into();
        let listener = std::os::unix::net::UnixListener::bind(&path)
            .unwrap_or_else(|e| panic!("binding the xDS server on {}: {e}", path.display()));
        let state = Arc::new(State::default());
        let running = run(Arc::clone(&state), Listening::Unix(listener));
        XdsServer {
            state,
            bound: Bound::Unix(path),
            running: Mutex::new(Some(running)),
        }
    }

    /// The TCP address. Panics for a server started with [`Self::start_unix`].
    pub fn addr(&self) -> SocketAddr {
        match &self.bound {
            Bound::Tcp(addr) => *addr,
            Bound::Unix(path) => panic!("the xDS server listens on {}", path.display()),
        }
    }

    /// Kills the server: the listening socket closes and every stream is cut
    /// without a gRPC status, as when a control plane crashes.
    pub fn stop(&self) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(r) = running {
            let _ = r.stop.send(());
            let _ = r.thread.join();
        }
    }

    /// Starts again on the same port, serving the same resources. Retries
    /// the bind briefly: the old socket may linger for a moment.
    pub fn restart(&self) {
        self.stop();
        let addr = match &self.bound {
            Bound::Tcp(addr) => *addr,
            Bound::Unix(path) => {
                let _ = std::fs::remove_file(path);
                let l = std::os::unix::net::UnixListener::bind(path)
                    .unwrap_or_else(|e| panic!("rebinding {}: {e}", path.display()));
                *self.running.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(run(Arc::clone(&self.state), Listening::Unix(l)));
                return;
            }
        };
        let mut tries = 0;
        let listener = loop {
            match std::net::TcpListener::bind(addr) {
                Ok(l) => break Listening::Tcp(l),
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("rebinding the xDS server on {addr}: {e}"),
            }
        };
        *self.running.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(run(Arc::clone(&self.state), listener));
    }

    /// Replaces every resource of `type_url` with `resources` (name and
    /// resource), bumps the type's version and pushes to every stream
    /// subscribed to the type.
    pub fn set(&self, type_url: &str, resources: Vec<(String, Any)>) {
        {
            let mut inner = self.state.lock();
            let Inner {
                types,
                next_resource_version,
                ..
            } = &mut *inner;
            let ts = types.entry(type_url.to_owned()).or_default();
            ts.version += 1;
            let mut next = BTreeMap::new();
            for (name, any) in resources {
                let version = match ts.resources.get(&name) {
                    Some((v, old)) if *old == any => *v,
                    _ => {
                        *next_resource_version += 1;
                        *next_resource_version
                    }
                };
                next.insert(name, (version, any));
            }
            ts.resources = next;
        }
        self.state.changed.send_modify(|v| *v += 1);
    }

    /// The current version of `type_url` as sent in `version_info`.
    pub fn version(&self, type_url: &str) -> String {
        self.state
            .lock()
            .types
            .get(type_url)
            .map_or(0, |t| t.version)
            .to_string()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.lock().requests.clone()
    }

    /// Replies (ACKs and NACKs) of `type_url` so far.
    pub fn replies(&self, type_url: &str) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.type_url == type_url && r.is_reply())
            .collect()
    }

    /// True once some stream has ACKed `type_url` at its current version
    /// (SotW), or, for delta, once the last reply of the type is an ACK.
    pub fn acked_current(&self, type_url: &str) -> bool {
        let version = self.version(type_url);
        let replies = self.replies(type_url);
        match replies.last() {
            Some(last) if last.delta => last.error_detail.is_none(),
            _ => replies
                .iter()
                .any(|r| r.error_detail.is_none() && r.version_info == version),
        }
    }

    /// The client's reply (ACK or NACK) to the last response of
    /// `type_url` the server sent, once that response carried the type's
    /// current version and the reply has come.
    pub fn answered_current(&self, type_url: &str) -> Option<RecordedRequest> {
        let inner = self.state.lock();
        let current = inner.types.get(type_url)?.version;
        let (stream, nonce, version) = inner.last_sent.get(type_url)?;
        if *version != current {
            return None;
        }
        inner
            .requests
            .iter()
            .rev()
            .find(|r| r.type_url == type_url && r.stream == *stream && r.response_nonce == *nonce)
            .cloned()
    }

    /// NACKs of `type_url` so far.
    pub fn nacks(&self, type_url: &str) -> Vec<RecordedRequest> {
        self.replies(type_url)
            .into_iter()
            .filter(|r| r.error_detail.is_some())
            .collect()
    }

    /// How many streams have been opened.
    pub fn streams(&self) -> u64 {
        self.state.lock().next_stream
    }
}

impl Drop for XdsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A resource for [`XdsServer::set`] from YAML/JSON text: `full_name` is the
/// message type (e.g. `envoy.config.listener.v3.Listener`); the resource's
/// name is its `name` field (`cluster_name` for a `ClusterLoadAssignment`).
pub fn resource(full_name: &str, text: &str) -> (String, Any) {
    use prost_reflect::Value;
    let msg = strait_envoy::parse::parse_message(text, full_name)
        .unwrap_or_else(|e| panic!("test resource {full_name}: {e}"));
    let name = ["name", "cluster_name"]
        .iter()
        .find_map(|f| match msg.get_field_by_name(f).as_deref() {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("test resource {full_name} has no name"));
    let any = Any {
        type_url: format!("type.googleapis.com/{full_name}"),
        value: prost::Message::encode_to_vec(&msg),
    };
    (name, any)
}

/// A binary `udpa.type.v1.TypedStruct` standing for a message of
/// `inner_type_url` written as `value` (JSON), as control planes send
/// extensions they render from structs.
pub fn typed_struct(inner_type_url: &str, value: serde_json::Value) -> Any {
    let msg = strait_envoy::parse::parse_value(
        serde_json::json!({"type_url": inner_type_url, "value": value}),
        "udpa.type.v1.TypedStruct",
    )
    .unwrap_or_else(|e| panic!("test TypedStruct: {e}"));
    Any {
        type_url: "type.googleapis.com/udpa.type.v1.TypedStruct".into(),
        value: prost::Message::encode_to_vec(&msg),
    }
}

/// An Istio-shaped bootstrap that takes everything from this control plane
/// at `xds` over ADS (`api`: `GRPC` or `DELTA_GRPC`), as sidecar
/// `<workload>.default`, with admin on a free loopback port.
pub fn ads_bootstrap(xds: std::net::SocketAddr, api: &str, workload: &str) -> String {
    ads_bootstrap_with(
        xds,
        api,
        &format!("sidecar~127.0.0.1~{workload}.default~default.svc.cluster.local"),
        &format!("{workload}.default"),
        "",
    )
}

/// [`ads_bootstrap`] with the node's `id` and `cluster` given, and
/// `more_clusters` (YAML list items indented by two spaces, each starting
/// on a new line) after `xds-grpc`.
pub fn ads_bootstrap_with(
    xds: std::net::SocketAddr,
    api: &str,
    node_id: &str,
    node_cluster: &str,
    more_clusters: &str,
) -> String {
    use crate::proxy::UPSTREAM_H2;
    format!(
        r#"
node: {{id: "{node_id}", cluster: {node_cluster}}}
dynamic_resources:
  ads_config:
    api_type: {api}
    transport_api_version: V3
    set_node_on_first_message_only: true
    grpc_services: [{{envoy_grpc: {{cluster_name: xds-grpc}}}}]
  lds_config: {{ads: {{}}, initial_fetch_timeout: 0s, resource_api_version: V3}}
  cds_config: {{ads: {{}}, initial_fetch_timeout: 0s, resource_api_version: V3}}
static_resources:
  clusters:
  - name: xds-grpc
    type: STATIC
    connect_timeout: 1s
{UPSTREAM_H2}
    load_assignment:
      cluster_name: xds-grpc
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}{more_clusters}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
"#,
        port = xds.port(),
    )
}

fn run(state: Arc<State>, listener: Listening) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("xDS server runtime: {e}"),
        };
        rt.block_on(async move {
            let sds = sds::server(Ads {
                state: Arc::clone(&state),
            });
            let service = AggregatedDiscoveryServiceServer::new(Ads { state });
            let serve = async move {
                match listener {
                    Listening::Tcp(l) => {
                        let _ = l.set_nonblocking(true);
                        let l = match tokio::net::TcpListener::from_std(l) {
                            Ok(l) => l,
                            Err(e) => panic!("xDS server listener: {e}"),
                        };
                        loop {
                            if let Ok((stream, _)) = l.accept().await {
                                tokio::spawn(serve_connection(
                                    service.clone(),
                                    sds.clone(),
                                    stream,
                                ));
                            }
                        }
                    }
                    Listening::Unix(l) => {
                        let _ = l.set_nonblocking(true);
                        let l = match tokio::net::UnixListener::from_std(l) {
                            Ok(l) => l,
                            Err(e) => panic!("xDS server listener: {e}"),
                        };
                        loop {
                            if let Ok((stream, _)) = l.accept().await {
                                tokio::spawn(serve_connection(
                                    service.clone(),
                                    sds.clone(),
                                    stream,
                                ));
                            }
                        }
                    }
                }
            };
            tokio::select! {
                () = serve => {}
                _ = stopped => {}
            }
        });
        // Dropping the runtime cancels every connection task: the streams
        // end abruptly, as with a crash.
        rt.shutdown_background();
    });
    Running { stop, thread }
}

/// Serves gRPC on one connection. tonic's own `Server` router needs its
/// axum-based `router` feature; the generated service is a plain tower
/// service, so hyper's HTTP/2 server drives it directly.
async fn serve_connection<S>(
    service: AggregatedDiscoveryServiceServer<Ads>,
    sds: envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_server::SecretDiscoveryServiceServer<Ads>,
    stream: S,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // ADS and SDS share the listener, routed by gRPC path.
    let svc = hyper::service::service_fn(move |req: http::Request<_>| {
        if req.uri().path().starts_with(sds::PATH) {
            let mut sds = sds.clone();
            Box::pin(Service::call(&mut sds, req)) as ServiceFuture
        } else {
            let mut service = service.clone();
            Box::pin(Service::call(&mut service, req))
        }
    });
    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), svc)
        .await;
}

struct Ads {
    state: Arc<State>,
}

type ServiceFuture = Pin<
    Box<
        dyn std::future::Future<
                Output = Result<http::Response<tonic::body::Body>, std::convert::Infallible>,
            > + Send,
    >,
>;

type SotwStream = Pin<Box<dyn Stream<Item = Result<DiscoveryResponse, Status>> + Send>>;
type DeltaStream = Pin<Box<dyn Stream<Item = Result<DeltaDiscoveryResponse, Status>> + Send>>;

/// A SotW subscription of one type on one stream.
struct SotwSub {
    wildcard: bool,
    names: Vec<String>,
    /// The type version last sent; `None` forces a send.
    sent: Option<u64>,
}

/// A delta subscription of one type on one stream.
#[derive(Default)]
struct DeltaSub {
    wildcard: bool,
    names: HashSet<String>,
    /// name → resource version the client has.
    sent: HashMap<String, u64>,
    /// A response is owed even if nothing changed (the first request).
    owe: bool,
}

fn is_wildcard_type(type_url: &str) -> bool {
    type_url == LISTENER || type_url == CLUSTER
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Ads {
    type StreamAggregatedResourcesStream = SotwStream;
    type DeltaAggregatedResourcesStream = DeltaStream;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<SotwStream>, Status> {
        let mut inbound = request.into_inner();
        let state = Arc::clone(&self.state);
        let (tx, rx) = mpsc::channel(64);
        let stream_id = {
            let mut inner = state.lock();
            inner.next_stream += 1;
            inner.next_stream - 1
        };
        tokio::spawn(async move {
            let mut changed = state.changed.subscribe();
            let mut subs: BTreeMap<String, SotwSub> = BTreeMap::new();
            let mut nonce = 0u64;
            loop {
                tokio::select! {
                    msg = inbound.message() => {
                        let Ok(Some(req)) = msg else { return };
                        record_sotw(&state, stream_id, &req);
                        let wildcard = req.resource_names.iter().any(|n| n == "*")
                            || (req.resource_names.is_empty() && is_wildcard_type(&req.type_url));
                        let sub = subs.entry(req.type_url.clone()).or_insert(SotwSub {
                            wildcard,
                            names: Vec::new(),
                            sent: None,
                        });
                        let mut names = req.resource_names.clone();
                        names.sort();
                        if sub.names != names || sub.wildcard != wildcard || req.response_nonce.is_empty() {
                            sub.names = names;
                            sub.wildcard = wildcard;
                            sub.sent = None;
                        }
                    }
                    r = changed.changed() => if r.is_err() { return },
                }
                let mut out = Vec::new();
                {
                    let mut inner = state.lock();
                    let Inner {
                        types, last_sent, ..
                    } = &mut *inner;
                    for (type_url, sub) in &mut subs {
                        let ts = types.get(type_url).cloned().unwrap_or_default();
                        if sub.sent == Some(ts.version) {
                            continue;
                        }
                        sub.sent = Some(ts.version);
                        nonce += 1;
                        let resources = ts
                            .resources
                            .iter()
                            .filter(|(name, _)| sub.wildcard || sub.names.contains(name))
                            .map(|(_, (_, any))| any.clone())
                            .collect();
                        last_sent
                            .insert(type_url.clone(), (stream_id, nonce.to_string(), ts.version));
                        out.push(DiscoveryResponse {
                            version_info: ts.version.to_string(),
                            resources,
                            type_url: type_url.clone(),
                            nonce: nonce.to_string(),
                            ..Default::default()
                        });
                    }
                }
                for resp in out {
                    if tx.send(Ok(resp)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<DeltaStream>, Status> {
        let mut inbound = request.into_inner();
        let state = Arc::clone(&self.state);
        let (tx, rx) = mpsc::channel(64);
        let stream_id = {
            let mut inner = state.lock();
            inner.next_stream += 1;
            inner.next_stream - 1
        };
        tokio::spawn(async move {
            let mut changed = state.changed.subscribe();
            let mut subs: BTreeMap<String, DeltaSub> = BTreeMap::new();
            let mut nonce = 0u64;
            loop {
                tokio::select! {
                    msg = inbound.message() => {
                        let Ok(Some(req)) = msg else { return };
                        record_delta(&state, stream_id, &req);
                        let first = !subs.contains_key(&req.type_url);
                        let sub = subs.entry(req.type_url.clone()).or_default();
                        if first {
                            sub.wildcard = req.resource_names_subscribe.is_empty()
                                && is_wildcard_type(&req.type_url);
                            sub.owe = true;
                            for (name, v) in &req.initial_resource_versions {
                                if let Ok(v) = v.parse() {
                                    sub.sent.insert(name.clone(), v);
                                }
                            }
                        }
                        for name in &req.resource_names_subscribe {
                            if name == "*" {
                                sub.wildcard = true;
                            } else {
                                sub.names.insert(name.clone());
                            }
                        }
                        for name in &req.resource_names_unsubscribe {
                            if name == "*" {
                                sub.wildcard = false;
                            }
                            sub.names.remove(name);
                            sub.sent.remove(name);
                        }
                    }
                    r = changed.changed() => if r.is_err() { return },
                }
                let mut out = Vec::new();
                {
                    let mut inner = state.lock();
                    let Inner {
                        types, last_sent, ..
                    } = &mut *inner;
                    for (type_url, sub) in &mut subs {
                        let ts = types.get(type_url).cloned().unwrap_or_default();
                        let wanted = |name: &String| sub.wildcard || sub.names.contains(name);
                        let resources: Vec<Resource> = ts
                            .resources
                            .iter()
                            .filter(|(name, (v, _))| wanted(name) && sub.sent.get(*name) != Some(v))
                            .map(|(name, (v, any))| Resource {
                                name: name.clone(),
                                version: v.to_string(),
                                resource: Some(any.clone()),
                                ..Default::default()
                            })
                            .collect();
                        let removed: Vec<String> = sub
                            .sent
                            .keys()
                            .filter(|n| !ts.resources.contains_key(*n))
                            .cloned()
                            .collect();
                        if resources.is_empty() && removed.is_empty() && !sub.owe {
                            continue;
                        }
                        sub.owe = false;
                        for r in &resources {
                            if let Ok(v) = r.version.parse() {
                                sub.sent.insert(r.name.clone(), v);
                            }
                        }
                        for n in &removed {
                            sub.sent.remove(n);
                        }
                        nonce += 1;
                        last_sent
                            .insert(type_url.clone(), (stream_id, nonce.to_string(), ts.version));
                        out.push(DeltaDiscoveryResponse {
                            system_version_info: ts.version.to_string(),
                            resources,
                            type_url: type_url.clone(),
                            removed_resources: removed,
                            nonce: nonce.to_string(),
                            ..Default::default()
                        });
                    }
                }
                for resp in out {
                    if tx.send(Ok(resp)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

fn record_sotw(state: &State, stream: u64, req: &DiscoveryRequest) {
    state.lock().requests.push(RecordedRequest {
        stream,
        delta: false,
        type_url: req.type_url.clone(),
        version_info: req.version_info.clone(),
        response_nonce: req.response_nonce.clone(),
        resource_names: req.resource_names.clone(),
        error_detail: req.error_detail.as_ref().map(|s| s.message.clone()),
        has_node: req.node.is_some(),
        node: req.node.clone(),
        initial_versions: 0,
    });
}

fn record_delta(state: &State, stream: u64, req: &DeltaDiscoveryRequest) {
    state.lock().requests.push(RecordedRequest {
        stream,
        delta: true,
        type_url: req.type_url.clone(),
        version_info: String::new(),
        response_nonce: req.response_nonce.clone(),
        resource_names: req.resource_names_subscribe.clone(),
        error_detail: req.error_detail.as_ref().map(|s| s.message.clone()),
        has_node: req.node.is_some(),
        node: req.node.clone(),
        initial_versions: req.initial_resource_versions.len(),
    });
}
