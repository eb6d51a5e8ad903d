//! `istio.stats` as an HTTP filter: Istio's standard request metrics
//! (`istio_requests_total`, `istio_request_duration_milliseconds`,
//! `istio_request_bytes`, `istio_response_bytes`) with Istio's labels,
//! recorded once per request when it completes
//! ([`HttpFilter::on_complete`]), as Istio's filter does from its access
//! log hook.
//!
//! Label values follow Istio's `istio_stats` filter: the local side from
//! the node's metadata, the peer side from the metadata exchange (the
//! downstream peer for an inbound listener, `reporter="destination"`; the
//! upstream peer for an outbound one, `reporter="source"`), the
//! destination service from the upstream cluster's name
//! (`outbound|port|subset|host`) or the `Host` header, `unknown` where a
//! value is missing.
//!
//! Stat handles are made once per distinct label set and kept in a
//! lock-free map (copy on write, bounded): a request with a known label
//! set hashes its labels, finds the handles and does atomic adds.

use std::{collections::HashMap, hash::BuildHasher, sync::Arc};

use arc_swap::ArcSwap;
use http::HeaderValue;
use metrics::{Counter, Histogram};
use strait_http::{Completion, Decision, FilterScope, HttpFilter, HttpFilterFactory, RequestHead};
use strait_model::{
    extension::Extension,
    istio::{Dimension, IstioMetric, IstioStats, PeerField, Reporter, Workload, type_url},
};
use strait_upstream::ClusterRegistry;

use crate::exchange::{downstream_peer, upstream_peer};

/// Istio's standard labels, in the order they are listed in its filter.
pub const STANDARD_LABELS: [&str; 25] = [
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_canonical_service",
    "source_canonical_revision",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_cluster",
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
];

/// The standard labels only HTTP metrics have: `response_code`,
/// `grpc_response_status`.
const HTTP_ONLY: [usize; 2] = [21, 22];

/// Labels whose values come from the request or its peer (rather than
/// the proxy's own node), per reporter: what an overflowing filter
/// reports as `unknown`.
const PEER_SIDE_SOURCE: [usize; 11] = [9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19];
const PEER_SIDE_DESTINATION: [usize; 10] = [1, 2, 3, 4, 5, 6, 7, 8, 14, 15];

/// How many label sets one filter keeps handles for. Past it, a new set
/// is recorded with its peer-side labels `unknown` (bounded by the local
/// side and the response codes), so neither the filter nor the recorder
/// grows with made-up peers.
const MAX_LABEL_SETS: usize = 10_000;

/// Clusters Istio names the destination service after.
const NAMED_CLUSTERS: [&str; 5] = [
    "BlackHoleCluster",
    "PassthroughCluster",
    "InboundPassthroughCluster",
    "InboundPassthroughClusterIpv4",
    "InboundPassthroughClusterIpv6",
];

/// The metrics, by index into [`Compiled::metrics`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Metric {
    RequestsTotal,
    RequestDuration,
    RequestBytes,
    ResponseBytes,
    TcpOpened,
    TcpClosed,
    TcpSent,
    TcpReceived,
}

const METRICS: [Metric; 8] = [
    Metric::RequestsTotal,
    Metric::RequestDuration,
    Metric::RequestBytes,
    Metric::ResponseBytes,
    Metric::TcpOpened,
    Metric::TcpClosed,
    Metric::TcpSent,
    Metric::TcpReceived,
];

impl Metric {
    fn name(self) -> &'static str {
        match self {
            Metric::RequestsTotal => "istio_requests_total",
            Metric::RequestDuration => "istio_request_duration_milliseconds",
            Metric::RequestBytes => "istio_request_bytes",
            Metric::ResponseBytes => "istio_response_bytes",
            Metric::TcpOpened => "istio_tcp_connections_opened_total",
            Metric::TcpClosed => "istio_tcp_connections_closed_total",
            Metric::TcpSent => "istio_tcp_sent_bytes_total",
            Metric::TcpReceived => "istio_tcp_received_bytes_total",
        }
    }

    fn of(m: IstioMetric) -> Option<Metric> {
        Some(match m {
            IstioMetric::RequestsTotal => Metric::RequestsTotal,
            IstioMetric::RequestDuration => Metric::RequestDuration,
            IstioMetric::RequestBytes => Metric::RequestBytes,
            IstioMetric::ResponseBytes => Metric::ResponseBytes,
            IstioMetric::TcpOpened => Metric::TcpOpened,
            IstioMetric::TcpClosed => Metric::TcpClosed,
            IstioMetric::TcpSentBytes => Metric::TcpSent,
            IstioMetric::TcpReceivedBytes => Metric::TcpReceived,
            IstioMetric::GrpcMessages => return None,
        })
    }

    fn tcp(self) -> bool {
        matches!(
            self,
            Metric::TcpOpened | Metric::TcpClosed | Metric::TcpSent | Metric::TcpReceived
        )
    }

    fn histogram(self) -> bool {
        matches!(
            self,
            Metric::RequestDuration | Metric::RequestBytes | Metric::ResponseBytes
        )
    }
}

/// Where a metric's label takes its value.
#[derive(Debug, Clone, Copy)]
enum Source {
    Standard(usize),
    Dimension(usize),
}

/// One metric's labels after the overrides; `None` when dropped.
type MetricLabels = Option<Vec<(Box<str>, Source)>>;

/// The config compiled for the hot path, shared by the HTTP and network
/// forms.
#[derive(Debug)]
pub(crate) struct Compiled {
    pub(crate) config: IstioStats,
    /// Distinct dimension expressions, evaluated per request.
    dims: Vec<Dimension>,
    metrics: Vec<MetricLabels>,
    /// The proxy's recorder, reached through its cluster registry; `None`
    /// when configs are only checked.
    recorder: Option<Arc<ClusterRegistry>>,
    cache: ArcSwap<HashMap<u64, Vec<Arc<LabelSet>>>>,
    /// The HTTP form's label sets by what their values follow from (see
    /// [`Inputs`]): a request with known inputs hashes a few short values
    /// instead of its 25 labels, and builds none of them.
    by_inputs: ArcSwap<HashMap<u64, Vec<KnownInputs>>>,
    /// Hashes a request's label values (25 strings) for `cache`. foldhash
    /// is ten times cheaper than SipHash here (measured with callgrind:
    /// `cargo xtask bench --telemetry`); its random seed keeps peers, who
    /// choose some of the values, from aiming at one bucket.
    hasher: foldhash::fast::RandomState,
}

/// One label set's values and handles.
#[derive(Debug)]
pub(crate) struct LabelSet {
    values: Box<[Box<str>]>,
    handles: Vec<Option<Handle>>,
}

#[derive(Debug)]
enum Handle {
    Counter(Counter),
    Histogram(Histogram),
}

impl LabelSet {
    pub(crate) fn add(&self, m: Metric, n: u64) {
        if let Some(Some(Handle::Counter(c))) = self.handles.get(m as usize) {
            c.increment(n);
        }
    }

    fn record(&self, m: Metric, v: f64) {
        if let Some(Some(Handle::Histogram(h))) = self.handles.get(m as usize) {
            h.record(v);
        }
    }
}

impl Compiled {
    pub(crate) fn new(config: IstioStats, recorder: Option<Arc<ClusterRegistry>>) -> Self {
        let mut dims: Vec<Dimension> = Vec::new();
        let mut metrics: Vec<MetricLabels> = METRICS
            .iter()
            .map(|m| {
                Some(
                    STANDARD_LABELS
                        .iter()
                        .enumerate()
                        // Istio's TCP metrics have no response code or gRPC
                        // status.
                        .filter(|(i, _)| !(m.tcp() && HTTP_ONLY.contains(i)))
                        .map(|(i, n)| (Box::<str>::from(*n), Source::Standard(i)))
                        .collect(),
                )
            })
            .collect();
        // Removed standard labels, per metric (a later dimension may bring
        // one back, as in Istio's filter).
        let mut removed: Vec<Vec<&str>> = METRICS.iter().map(|_| Vec::new()).collect();
        for o in &config.overrides {
            let targets: Vec<usize> = match o.metric {
                None => (0..METRICS.len()).collect(),
                Some(m) => Metric::of(m).map(|m| vec![m as usize]).unwrap_or_default(),
            };
            for t in targets {
                if o.drop {
                    metrics[t] = None;
                    continue;
                }
                let Some(labels) = metrics[t].as_mut() else {
                    continue;
                };
                for tag in &o.tags_to_remove {
                    if STANDARD_LABELS.contains(&tag.as_str()) {
                        labels.retain(|(n, _)| **n != **tag);
                        removed[t].push(tag);
                    }
                }
                for (tag, d) in &o.dimensions {
                    let j = dims.iter().position(|x| x == d).unwrap_or_else(|| {
                        dims.push(d.clone());
                        dims.len() - 1
                    });
                    match labels.iter_mut().find(|(n, _)| **n == **tag) {
                        Some(entry) => entry.1 = Source::Dimension(j),
                        None => labels.push((tag.as_str().into(), Source::Dimension(j))),
                    }
                }
            }
        }
        Compiled {
            config,
            dims,
            metrics,
            recorder,
            cache: ArcSwap::default(),
            by_inputs: ArcSwap::default(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// How many dimension values follow the standard labels.
    pub(crate) fn dimension_count(&self) -> usize {
        self.dims.len()
    }

    /// The dimension expressions, in value order.
    pub(crate) fn dimensions(&self) -> &[Dimension] {
        &self.dims
    }

    /// Whether any of `ms` is produced (not dropped).
    pub(crate) fn produces(&self, ms: &[Metric]) -> bool {
        ms.iter().any(|m| self.metrics[*m as usize].is_some())
    }

    /// The handles for `values` (standard labels then dimensions), made on
    /// first use.
    pub(crate) fn label_set(&self, values: &mut [&str]) -> Option<Arc<LabelSet>> {
        let registry = self.recorder.as_ref()?;
        if let Some(found) = self.find(values) {
            return Some(found);
        }
        if self.cache.load().len() >= MAX_LABEL_SETS {
            let peer_side: &[usize] = match self.config.reporter {
                Reporter::Source => &PEER_SIDE_SOURCE,
                Reporter::Destination => &PEER_SIDE_DESTINATION,
            };
            for &i in peer_side {
                values[i] = "unknown";
            }
            for v in values.iter_mut().skip(STANDARD_LABELS.len()) {
                *v = "unknown";
            }
            if let Some(found) = self.find(values) {
                return Some(found);
            }
        }
        let made = Arc::new(registry.register(|| self.make(values)));
        let key = self.hasher.hash_one(&*values);
        self.cache.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.entry(key).or_default().push(Arc::clone(&made));
            m
        });
        Some(made)
    }

    fn find(&self, values: &[&str]) -> Option<Arc<LabelSet>> {
        let cache = self.cache.load();
        let sets = cache.get(&self.hasher.hash_one(values))?;
        sets.iter()
            .find(|s| s.values.iter().map(|v| &**v).eq(values.iter().copied()))
            .cloned()
    }

    fn make(&self, values: &[&str]) -> LabelSet {
        let handles = METRICS
            .iter()
            .zip(&self.metrics)
            .map(|(m, labels)| {
                let labels: Vec<metrics::Label> = labels
                    .as_ref()?
                    .iter()
                    .map(|(name, src)| {
                        let v = match src {
                            Source::Standard(i) => values[*i],
                            Source::Dimension(j) => values[STANDARD_LABELS.len() + j],
                        };
                        metrics::Label::new(name.to_string(), v.to_owned())
                    })
                    .collect();
                Some(if m.histogram() {
                    Handle::Histogram(metrics::histogram!(m.name(), labels))
                } else {
                    Handle::Counter(metrics::counter!(m.name(), labels))
                })
            })
            .collect();
        LabelSet {
            values: values.iter().map(|v| Box::<str>::from(*v)).collect(),
            handles,
        }
    }

    /// The standard labels both forms share: everything but the protocol,
    /// response code, gRPC status and flags, which the caller fills in.
    pub(crate) fn peer_labels<'a>(
        &'a self,
        out: &mut [&'a str],
        peer: Option<&'a Workload>,
        peer_san: &'a str,
        mtls: Option<bool>,
        service: (&'a str, &'a str),
    ) {
        let local = &*self.config.local;
        let or = |v: &'a str, d: &'a str| if v.is_empty() { d } else { v };
        let peer_field = |f: fn(&Workload) -> &str, d: &'a str| -> &'a str {
            peer.map(f).filter(|v| !v.is_empty()).unwrap_or(d)
        };
        let peer_ns = namespace_of(peer_san)
            .or_else(|| peer.map(|p| p.namespace.as_str()).filter(|n| !n.is_empty()))
            .unwrap_or("unknown");
        let (host, host_name) = service;
        out[0] = self.config.reporter.label();
        match self.config.reporter {
            Reporter::Destination => {
                out[1] = peer_field(|p| &p.workload_name, "unknown");
                out[2] = peer_ns;
                out[3] = or(peer_san, "unknown");
                out[4] = peer_field(|p| &p.app, "unknown");
                out[5] = peer_field(|p| &p.version, "unknown");
                out[6] = peer_field(|p| &p.canonical_name, "unknown");
                out[7] = peer_field(|p| &p.canonical_revision, "latest");
                out[8] = peer_field(|p| &p.cluster_id, "unknown");
                out[9] = or(&local.workload_name, "unknown");
                out[10] = or(&local.namespace, "unknown");
                // The local certificate's SAN: not known to the filter.
                out[11] = "unknown";
                out[12] = or(&local.app, "unknown");
                out[13] = or(&local.version, "unknown");
                out[14] = or(host, or(&local.canonical_name, "unknown"));
                out[15] = or(host_name, or(&local.canonical_name, "unknown"));
                out[16] = or(&local.namespace, "unknown");
                out[17] = or(&local.canonical_name, "unknown");
                out[18] = or(&local.canonical_revision, "latest");
                out[19] = or(&local.cluster_id, "unknown");
            }
            Reporter::Source => {
                out[1] = or(&local.workload_name, "unknown");
                out[2] = or(&local.namespace, "unknown");
                out[3] = "unknown";
                out[4] = or(&local.app, "unknown");
                out[5] = or(&local.version, "unknown");
                out[6] = or(&local.canonical_name, "unknown");
                out[7] = or(&local.canonical_revision, "latest");
                out[8] = or(&local.cluster_id, "unknown");
                out[9] = peer_field(|p| &p.workload_name, "unknown");
                out[10] = peer_ns;
                out[11] = or(peer_san, "unknown");
                out[12] = peer_field(|p| &p.app, "unknown");
                out[13] = peer_field(|p| &p.version, "unknown");
                out[14] = or(host, "unknown");
                out[15] = or(host_name, "unknown");
                out[16] = peer_ns;
                out[17] = peer_field(|p| &p.canonical_name, "unknown");
                out[18] = peer_field(|p| &p.canonical_revision, "latest");
                out[19] = peer_field(|p| &p.cluster_id, "unknown");
            }
        }
        out[24] = match mtls {
            Some(true) => "mutual_tls",
            Some(false) => "none",
            None => "unknown",
        };
    }
}

/// The namespace of a SPIFFE identity (`.../ns/<namespace>/sa/...`).
fn namespace_of(principal: &str) -> Option<&str> {
    let at = principal.find("/ns/")? + 4;
    let rest = &principal[at..];
    Some(rest.split('/').next().unwrap_or(rest)).filter(|n| !n.is_empty())
}

/// The destination service's host and name for a request to `cluster`
/// with `Host` header `host`, as Istio finds them.
pub(crate) fn destination_service<'a>(
    cluster: Option<&'a str>,
    host: Option<&'a str>,
) -> (&'a str, &'a str) {
    let (mut service, mut name) = host.map_or(("", ""), |h| (h, h));
    if let Some(c) = cluster {
        if NAMED_CLUSTERS.contains(&c) {
            name = c;
        } else if let Some(h) = c
            .strip_prefix("outbound|")
            .and_then(|rest| rest.splitn(3, '|').nth(2))
            .filter(|h| !h.is_empty())
        {
            service = h;
            name = h.split('.').next().unwrap_or(h);
        }
    }
    (service, name)
}

/// What an HTTP request's label values follow from when the filter has no
/// dimensions of its own: its peer (by identity: the exchange's cache
/// hands out one `Arc` per known peer), the head's facts, the response's
/// status and flags. Equal inputs give equal labels, so they key the same
/// label set.
#[derive(Debug, Clone, Copy)]
struct Inputs<'a> {
    peer: Option<&'a Arc<Workload>>,
    host: Option<&'a str>,
    cluster: Option<&'a str>,
    peer_san: Option<&'a str>,
    mtls: Option<bool>,
    grpc: bool,
    status: u16,
    grpc_status: Option<u32>,
    flags: &'a str,
}

/// [`Inputs`] kept in the filter's map.
#[derive(Debug, Clone)]
pub(crate) struct OwnedInputs {
    peer: Option<Arc<Workload>>,
    host: Option<Box<str>>,
    cluster: Option<Box<str>>,
    peer_san: Option<Box<str>>,
    mtls: Option<bool>,
    grpc: bool,
    status: u16,
    grpc_status: Option<u32>,
    flags: Box<str>,
}

/// Inputs seen before, and their label set.
type KnownInputs = (OwnedInputs, Arc<LabelSet>);

/// How many input keys one filter keeps: past it, requests take the
/// label path (bounded on its own).
const MAX_INPUTS: usize = 10_000;

impl Inputs<'_> {
    fn hash(&self, h: &foldhash::fast::RandomState) -> u64 {
        h.hash_one((
            self.peer.map(|p| Arc::as_ptr(p) as usize),
            self.host,
            self.cluster,
            self.peer_san,
            self.mtls,
            self.grpc,
            self.status,
            self.grpc_status,
            self.flags,
        ))
    }

    fn is(&self, o: &OwnedInputs) -> bool {
        let peer = match (self.peer, &o.peer) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        peer && self.status == o.status
            && self.grpc == o.grpc
            && self.grpc_status == o.grpc_status
            && self.mtls == o.mtls
            && self.host == o.host.as_deref()
            && self.cluster == o.cluster.as_deref()
            && self.peer_san == o.peer_san.as_deref()
            && self.flags == &*o.flags
    }

    fn owned(&self) -> OwnedInputs {
        OwnedInputs {
            peer: self.peer.cloned(),
            host: self.host.map(Box::from),
            cluster: self.cluster.map(Box::from),
            peer_san: self.peer_san.map(Box::from),
            mtls: self.mtls,
            grpc: self.grpc,
            status: self.status,
            grpc_status: self.grpc_status,
            flags: self.flags.into(),
        }
    }
}

impl Compiled {
    fn by_inputs(&self, key: &Inputs<'_>, hash: u64) -> Option<Arc<LabelSet>> {
        let map = self.by_inputs.load();
        map.get(&hash)?
            .iter()
            .find(|(o, _)| key.is(o))
            .map(|(_, set)| Arc::clone(set))
    }

    fn remember(&self, key: &Inputs<'_>, hash: u64, set: &Arc<LabelSet>) {
        // A peer only this request holds (decoded, not cached by the
        // exchange) would never be seen again: keying by it would only
        // fill the map.
        if key.peer.is_some_and(|p| Arc::strong_count(p) < 2)
            || self.by_inputs.load().len() >= MAX_INPUTS
        {
            return;
        }
        let owned = key.owned();
        self.by_inputs.rcu(|m| {
            let mut m = HashMap::clone(m);
            let v = m.entry(hash).or_default();
            if !v.iter().any(|(o, _)| key.is(o)) {
                v.push((owned.clone(), Arc::clone(set)));
            }
            m
        });
    }
}

/// The factory of `istio.stats` as an HTTP filter.
#[derive(Debug, Default, Clone, Copy)]
pub struct IstioStatsFactory;

impl HttpFilterFactory for IstioStatsFactory {
    fn type_url(&self) -> &str {
        type_url::STATS
    }

    fn create(&self, config: &Extension) -> Result<Arc<dyn HttpFilter>, String> {
        self.create_in(
            config,
            &FilterScope {
                stat_prefix: "",
                hcm_stat_prefix: "",
                clusters: None,
            },
        )
    }

    fn create_in(
        &self,
        config: &Extension,
        scope: &FilterScope<'_>,
    ) -> Result<Arc<dyn HttpFilter>, String> {
        let config = config
            .get::<IstioStats>()
            .ok_or("istio.stats config of the wrong type")?
            .clone();
        Ok(Arc::new(IstioStatsFilter(Compiled::new(
            config,
            scope.clusters.cloned(),
        ))))
    }
}

/// `istio.stats` in a connection manager's chain.
#[derive(Debug)]
pub struct IstioStatsFilter(Compiled);

/// What the filter keeps of a request head for its end.
#[derive(Debug, Clone)]
struct Facts {
    host: Option<HeaderValue>,
    grpc: bool,
    cluster: Option<Box<str>>,
    /// The downstream client certificate's first URI SAN (inbound).
    peer_san: Option<Box<str>>,
    /// Inbound: whether the downstream connection is mutual TLS.
    mtls: Option<bool>,
    /// Dimension values read from the request head.
    dims: Vec<Option<String>>,
}

impl HttpFilter for IstioStatsFilter {
    fn on_request<'a>(&'a self, req: &'a mut RequestHead<'_>) -> Decision<'a> {
        let c = &self.0;
        let head = &req.head;
        let host = head
            .headers
            .get(http::header::HOST)
            .cloned()
            .or_else(|| {
                head.uri
                    .authority()
                    .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            })
            .filter(|_| !c.config.disable_host_header_fallback);
        let grpc = head
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        let (peer_san, mtls) = match c.config.reporter {
            Reporter::Destination => {
                let san = req
                    .info
                    .peer_cert
                    .and_then(|p| p.uri_sans.first())
                    .map(|s| Box::<str>::from(&**s));
                let mtls = req.info.tls && san.is_some();
                (san, Some(mtls))
            }
            Reporter::Source => (None, None),
        };
        let dims = c
            .dims
            .iter()
            .map(|d| match d {
                Dimension::RequestHost => head
                    .headers
                    .get(http::header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
                    .or_else(|| head.uri.authority().map(|a| a.as_str().to_owned())),
                Dimension::RequestMethod => Some(head.method.as_str().to_owned()),
                Dimension::RequestPath => head.uri.path_and_query().map(|p| p.as_str().to_owned()),
                Dimension::RequestUrlPath => Some(head.uri.path().to_owned()),
                Dimension::RequestHeader(name) => head
                    .headers
                    .get(name.as_str())
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                _ => None,
            })
            .collect();
        req.state.insert(Facts {
            host,
            grpc,
            cluster: req.info.cluster.map(Box::from),
            peer_san,
            mtls,
            dims,
        });
        Decision::Continue
    }

    fn wants_completion(&self) -> bool {
        true
    }

    fn on_complete(&self, done: &Completion<'_>) {
        let c = &self.0;
        const HTTP: [Metric; 4] = [
            Metric::RequestsTotal,
            Metric::RequestDuration,
            Metric::RequestBytes,
            Metric::ResponseBytes,
        ];
        let Some(facts) = done.state.get::<Facts>().filter(|_| c.produces(&HTTP)) else {
            return;
        };
        let peer_arc = match c.config.reporter {
            Reporter::Destination => downstream_peer(done.state),
            Reporter::Source => upstream_peer(done.state),
        };
        let peer = peer_arc.map(|p| &**p);
        let host = facts.host.as_ref().and_then(|h| h.to_str().ok());
        let peer_san = peer_principal(c.config.reporter, facts, done);
        // Without dimensions, the labels follow from these inputs alone.
        let inputs = c.dims.is_empty().then(|| {
            let key = Inputs {
                peer: peer_arc,
                host,
                cluster: facts.cluster.as_deref(),
                peer_san,
                mtls: facts.mtls,
                grpc: facts.grpc,
                status: done.status.as_u16(),
                grpc_status: done.grpc_status.filter(|_| facts.grpc),
                flags: done.response_flags,
            };
            (key, key.hash(&c.hasher))
        });
        let known = inputs.and_then(|(key, hash)| c.by_inputs(&key, hash));
        let set = match known {
            Some(set) => set,
            None => {
                let Some(set) = self.label_set(done, facts, peer, peer_san, host) else {
                    return;
                };
                if let Some((key, hash)) = &inputs {
                    c.remember(key, *hash, &set);
                }
                set
            }
        };
        set.add(Metric::RequestsTotal, 1);
        let ms = u64::try_from(done.duration.as_millis()).unwrap_or(u64::MAX);
        set.record(Metric::RequestDuration, ms as f64);
        set.record(Metric::RequestBytes, done.request_body_bytes as f64);
        set.record(Metric::ResponseBytes, done.response_body_bytes as f64);
    }
}

/// The peer's identity: the downstream client certificate's URI SAN
/// inbound, the upstream server certificate's outbound (Istio's
/// `source_principal` and `destination_principal`).
fn peer_principal<'a>(
    reporter: Reporter,
    facts: &'a Facts,
    done: &Completion<'a>,
) -> Option<&'a str> {
    match reporter {
        Reporter::Destination => facts.peer_san.as_deref(),
        Reporter::Source => done.upstream_peer_uri_san,
    }
}

impl IstioStatsFilter {
    /// The label set of a completed request, its labels built and looked
    /// up.
    fn label_set(
        &self,
        done: &Completion<'_>,
        facts: &Facts,
        peer: Option<&Workload>,
        peer_san: Option<&str>,
        host: Option<&str>,
    ) -> Option<Arc<LabelSet>> {
        let c = &self.0;
        let service = destination_service(facts.cluster.as_deref(), host);
        let grpc_status;
        let mut values: Vec<&str> = vec![""; STANDARD_LABELS.len() + c.dims.len()];
        c.peer_labels(
            &mut values,
            peer,
            peer_san.unwrap_or(""),
            facts.mtls,
            service,
        );
        values[20] = if facts.grpc { "grpc" } else { "http" };
        values[21] = done.status.as_str();
        values[22] = if facts.grpc {
            grpc_status = done.grpc_status.map(|s| s.to_string());
            grpc_status.as_deref().unwrap_or("")
        } else {
            ""
        };
        values[23] = if done.response_flags.is_empty() {
            "-"
        } else {
            done.response_flags
        };
        for (j, d) in c.dims.iter().enumerate() {
            values[STANDARD_LABELS.len() + j] = match d {
                Dimension::Constant(v) => v,
                Dimension::ResponseCode => done.status.as_str(),
                Dimension::Peer { downstream, field } => {
                    let p = if *downstream {
                        downstream_peer(done.state)
                    } else {
                        upstream_peer(done.state)
                    };
                    p.map_or("unknown", |p| peer_value(p, field))
                }
                _ => facts.dims[j].as_deref().unwrap_or("unknown"),
            };
        }
        c.label_set(&mut values)
    }
}

/// A peer field a dimension reads; `unknown` when empty.
pub(crate) fn peer_value<'a>(p: &'a Workload, f: &PeerField) -> &'a str {
    let v = match f {
        PeerField::Name => &p.name,
        PeerField::Namespace => &p.namespace,
        PeerField::WorkloadName => &p.workload_name,
        PeerField::ClusterId => &p.cluster_id,
        PeerField::Label(k) => match k.as_str() {
            "app" => &p.app,
            "version" => &p.version,
            "service.istio.io/canonical-name" => &p.canonical_name,
            "service.istio.io/canonical-revision" => &p.canonical_revision,
            _ => p
                .labels
                .iter()
                .find(|(l, _)| l == k)
                .map_or("", |(_, v)| v.as_str()),
        },
    };
    if v.is_empty() { "unknown" } else { v }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strait_model::istio::MetricOverride;

    #[test]
    fn destination_service_from_cluster_names() {
        assert_eq!(
            destination_service(
                Some("outbound|9080||reviews.default.svc.cluster.local"),
                Some("reviews:9080")
            ),
            ("reviews.default.svc.cluster.local", "reviews")
        );
        assert_eq!(
            destination_service(Some("PassthroughCluster"), Some("example.com")),
            ("example.com", "PassthroughCluster")
        );
        assert_eq!(
            destination_service(Some("inbound|9080||"), Some("reviews:9080")),
            ("reviews:9080", "reviews:9080")
        );
        assert_eq!(destination_service(None, None), ("", ""));
    }

    #[test]
    fn namespaces_from_spiffe_ids() {
        assert_eq!(
            namespace_of("spiffe://cluster.local/ns/bookinfo/sa/reviews"),
            Some("bookinfo")
        );
        assert_eq!(namespace_of("spiffe://cluster.local/sa/x"), None);
    }

    fn config(overrides: Vec<MetricOverride>) -> IstioStats {
        IstioStats {
            reporter: Reporter::Source,
            local: Arc::default(),
            disable_host_header_fallback: false,
            tcp_reporting: std::time::Duration::from_secs(5),
            overrides,
        }
    }

    #[test]
    fn label_sets_are_found_by_their_inputs() {
        let c = Compiled::new(config(vec![]), None);
        let set = Arc::new(LabelSet {
            values: Box::new([]),
            handles: Vec::new(),
        });
        let peer = Arc::new(Workload::default());
        // The exchange's cache holds the peer too.
        let cached = Arc::clone(&peer);
        let key = Inputs {
            peer: Some(&peer),
            host: Some("reviews:9080"),
            cluster: Some("outbound|9080||reviews.default.svc.cluster.local"),
            peer_san: None,
            mtls: None,
            grpc: false,
            status: 200,
            grpc_status: None,
            flags: "",
        };
        let hash = key.hash(&c.hasher);
        assert!(c.by_inputs(&key, hash).is_none());
        c.remember(&key, hash, &set);
        let found = c.by_inputs(&key, hash).expect("remembered");
        assert!(Arc::ptr_eq(&found, &set));
        // Another status is other inputs.
        let failed = Inputs {
            status: 503,
            flags: "UF",
            ..key
        };
        assert!(c.by_inputs(&failed, failed.hash(&c.hasher)).is_none());
        // An equal peer decoded for this request alone is another peer,
        // and not remembered: it would never be seen again.
        let decoded = Arc::new(Workload::default());
        let once = Inputs {
            peer: Some(&decoded),
            ..key
        };
        let h = once.hash(&c.hasher);
        assert!(c.by_inputs(&once, h).is_none());
        c.remember(&once, h, &set);
        assert!(c.by_inputs(&once, h).is_none());
        drop(cached);
    }

    #[test]
    fn overrides_remove_replace_add_and_drop() {
        let c = Compiled::new(
            config(vec![
                MetricOverride {
                    metric: None,
                    drop: false,
                    tags_to_remove: vec!["source_principal".into(), "not_standard".into()],
                    dimensions: vec![
                        ("destination_port".into(), Dimension::Constant("80".into())),
                        ("source_cluster".into(), Dimension::RequestMethod),
                    ],
                },
                MetricOverride {
                    metric: Some(IstioMetric::RequestBytes),
                    drop: true,
                    tags_to_remove: vec![],
                    dimensions: vec![],
                },
            ]),
            None,
        );
        let total = c.metrics[Metric::RequestsTotal as usize]
            .as_ref()
            .expect("kept");
        let names: Vec<&str> = total.iter().map(|(n, _)| &**n).collect();
        assert!(!names.contains(&"source_principal"));
        assert_eq!(names.last(), Some(&"destination_port"));
        assert!(matches!(
            total.iter().find(|(n, _)| &**n == "source_cluster"),
            Some((_, Source::Dimension(1)))
        ));
        assert!(c.metrics[Metric::RequestBytes as usize].is_none());
        assert!(c.produces(&[Metric::RequestsTotal]));
        assert!(!c.produces(&[Metric::RequestBytes]));
    }
}
