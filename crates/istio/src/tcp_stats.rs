//! `istio.stats` as a network read filter: Istio's TCP metrics
//! (`istio_tcp_connections_opened_total`, `istio_tcp_connections_closed_total`,
//! `istio_tcp_received_bytes_total`, `istio_tcp_sent_bytes_total`) with
//! Istio's TCP labels (the standard ones without `response_code` and
//! `grpc_response_status`, `request_protocol="tcp"`).
//!
//! As Istio's filter: the first report (which counts the connection
//! opened) is made once the peer is known (the TCP metadata exchange
//! finished, or was never started) or when the first reporting period
//! ends; byte counts are brought up to date every `tcp_reporting_duration`
//! and at the close, which counts the connection closed. The data path
//! only bumps the TCP proxy's atomic byte counters; reports run on a timer
//! task per connection and at the close, off the data path. A connection's
//! labels are fixed at its first report.

use std::sync::{
    Arc, OnceLock,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use strait_listener::{
    ConnectionProgress, ConnectionSession, ConnectionView, ReadDecision, ReadFilter,
    ReadFilterFactory, ReadScope,
};
use strait_model::{
    extension::Extension,
    istio::{Dimension, IstioStats, Reporter, type_url},
};
use strait_net::Counters;

use crate::{
    stats::{Compiled, LabelSet, Metric, STANDARD_LABELS, destination_service, peer_value},
    tcp_exchange::TcpPeers,
};

const TCP: [Metric; 4] = [
    Metric::TcpOpened,
    Metric::TcpClosed,
    Metric::TcpSent,
    Metric::TcpReceived,
];

/// The factory of `istio.stats` as a network read filter.
#[derive(Debug, Default, Clone, Copy)]
pub struct IstioTcpStatsFactory;

impl ReadFilterFactory for IstioTcpStatsFactory {
    fn type_url(&self) -> &str {
        type_url::STATS
    }

    fn create(&self, config: &Extension) -> Result<Arc<dyn ReadFilter>, String> {
        self.create_in(config, &ReadScope::default())
    }

    fn create_in(
        &self,
        config: &Extension,
        scope: &ReadScope<'_>,
    ) -> Result<Arc<dyn ReadFilter>, String> {
        let config = config
            .get::<IstioStats>()
            .ok_or("istio.stats config of the wrong type")?
            .clone();
        Ok(Arc::new(IstioTcpStatsFilter(Arc::new(Compiled::new(
            config,
            scope.clusters.cloned(),
        )))))
    }
}

/// `istio.stats` in a filter chain's network filters.
#[derive(Debug)]
pub struct IstioTcpStatsFilter(Arc<Compiled>);

impl ReadFilter for IstioTcpStatsFilter {
    fn on_connection<'a>(
        &'a self,
        _conn: &'a ConnectionView<'a>,
        _metadata: &'a mut strait_http::DynamicMetadata,
    ) -> ReadDecision<'a> {
        // Counts; never stops a connection.
        ReadDecision::Continue
    }

    fn wants_session(&self) -> bool {
        self.0.produces(&TCP)
    }

    fn session(
        &self,
        conn: &ConnectionView<'_>,
        state: &mut http::Extensions,
    ) -> Option<Box<dyn ConnectionSession>> {
        let peers = TcpPeers::of(state);
        let (peer_san, local_san, mtls) = match self.0.config.reporter {
            Reporter::Destination => {
                let san = conn.peer_cert.and_then(|c| c.uri_sans.first());
                (
                    san.map(|s| Box::<str>::from(&**s)),
                    conn.local_uri_san.map(Box::from),
                    Some(san.is_some() && conn.local_uri_san.is_some()),
                )
            }
            // The upstream's identity is known once connected.
            Reporter::Source => (None, None, None),
        };
        Some(Box::new(TcpSession {
            report: Arc::new(Report {
                compiled: Arc::clone(&self.0),
                peers,
                labels: OnceLock::new(),
                inputs: OnceLock::new(),
                opened: AtomicBool::new(false),
                received: AtomicU64::new(0),
                sent: AtomicU64::new(0),
                peer_san,
                local_san,
                mtls,
            }),
            timer: None,
        }))
    }
}

/// One connection's reports, shared by its session and its timer task.
#[derive(Debug)]
struct Report {
    compiled: Arc<Compiled>,
    peers: Arc<TcpPeers>,
    /// The label set, fixed at the first report.
    labels: OnceLock<Option<Arc<LabelSet>>>,
    /// What the upstream side told (cluster, upstream identity, flags).
    inputs: OnceLock<Upstream>,
    opened: AtomicBool,
    /// Bytes already reported, by direction.
    received: AtomicU64,
    sent: AtomicU64,
    /// Inbound: the downstream certificate's first URI SAN.
    peer_san: Option<Box<str>>,
    /// Inbound: this side's certificate's first URI SAN.
    local_san: Option<Box<str>>,
    /// Inbound: whether the downstream connection is mutual TLS.
    mtls: Option<bool>,
}

#[derive(Debug, Default)]
struct Upstream {
    cluster: Option<Box<str>>,
    /// The upstream server certificate's first URI SAN.
    san: Option<Box<str>>,
    flags: Box<str>,
}

impl Report {
    fn upstream(&self, p: &ConnectionProgress<'_>) {
        let _ = self.inputs.set(Upstream {
            cluster: p.cluster.map(Box::from),
            san: p
                .upstream_cert
                .and_then(|c| c.uri_sans.first())
                .map(|s| Box::<str>::from(&**s)),
            flags: p.flags.into(),
        });
    }

    /// Whether the peer this reporter labels by is settled (exchanged,
    /// failed, or never expected).
    fn peer_settled(&self) -> bool {
        self.slot().settled()
    }

    fn slot(&self) -> &crate::tcp_exchange::PeerSlot {
        match self.compiled.config.reporter {
            Reporter::Destination => &self.peers.downstream,
            Reporter::Source => &self.peers.upstream,
        }
    }

    /// Brings the counters up to date; `closing` counts the close.
    fn flush(&self, counters: &Counters, closing: bool) {
        let Some(set) = self.labels.get_or_init(|| self.label_set()).as_ref() else {
            return;
        };
        if !self.opened.swap(true, Ordering::AcqRel) {
            set.add(Metric::TcpOpened, 1);
        }
        // `sent` in the splice is downstream to upstream: what the proxy
        // received from its client.
        let received = counters.sent.load(Ordering::Relaxed);
        let sent = counters.received.load(Ordering::Relaxed);
        let before = self.received.fetch_max(received, Ordering::AcqRel);
        if received > before {
            set.add(Metric::TcpReceived, received - before);
        }
        let before = self.sent.fetch_max(sent, Ordering::AcqRel);
        if sent > before {
            set.add(Metric::TcpSent, sent - before);
        }
        if closing {
            set.add(Metric::TcpClosed, 1);
        }
    }

    fn label_set(&self) -> Option<Arc<LabelSet>> {
        let c = &*self.compiled;
        let up = self.inputs.get();
        let peer = self.slot().get();
        let cluster = up.and_then(|u| u.cluster.as_deref());
        let service = destination_service(cluster, None);
        let (peer_san, mtls) = match c.config.reporter {
            Reporter::Destination => (self.peer_san.as_deref().unwrap_or(""), self.mtls),
            Reporter::Source => (up.and_then(|u| u.san.as_deref()).unwrap_or(""), None),
        };
        let mut values: Vec<&str> = vec![""; STANDARD_LABELS.len() + c.dimension_count()];
        c.peer_labels(&mut values, peer.map(|p| &**p), peer_san, mtls, service);
        if c.config.reporter == Reporter::Destination
            && let Some(local) = self.local_san.as_deref()
        {
            // The certificate this sidecar presented.
            values[11] = local;
        }
        values[20] = "tcp";
        let flags = up.map_or("", |u| &*u.flags);
        values[23] = if flags.is_empty() { "-" } else { flags };
        for (j, d) in c.dimensions().iter().enumerate() {
            values[STANDARD_LABELS.len() + j] = match d {
                Dimension::Constant(v) => v,
                Dimension::Peer { downstream, field } => {
                    let slot = if *downstream {
                        &self.peers.downstream
                    } else {
                        &self.peers.upstream
                    };
                    slot.get().map_or("unknown", |p| peer_value(p, field))
                }
                // Request attributes: a TCP connection has none.
                _ => "unknown",
            };
        }
        c.label_set(&mut values)
    }
}

/// The session of one connection.
#[derive(Debug)]
struct TcpSession {
    report: Arc<Report>,
    timer: Option<tokio::task::JoinHandle<()>>,
}

impl ConnectionSession for TcpSession {
    fn on_upstream(&mut self, p: &ConnectionProgress<'_>) {
        self.report.upstream(p);
        let (report, counters) = (Arc::clone(&self.report), Arc::clone(p.counters));
        let every = report.compiled.config.tcp_reporting;
        // Reports on a timer, off the data path; aborted at the close.
        self.timer = tokio::runtime::Handle::try_current().ok().map(|rt| {
            rt.spawn(async move {
                if !report.peer_settled() {
                    let _ = tokio::time::timeout(every, report.slot().wait()).await;
                }
                report.flush(&counters, false);
                if every.is_zero() {
                    return;
                }
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    report.flush(&counters, false);
                }
            })
        });
    }

    fn on_close(&mut self, p: &ConnectionProgress<'_>) {
        if let Some(t) = self.timer.take() {
            t.abort();
        }
        if self.report.inputs.get().is_none() {
            self.report.upstream(p);
        }
        self.report.flush(p.counters, true);
    }
}
