//! The admin server, Envoy-compatible where Istio's tooling reads it.
//!
//! Owns the admin endpoints: `/ready`, `/stats/prometheus`, `/stats`,
//! `/config_dump`, `/listeners`, `/clusters`, `/server_info`, `/drain_listeners`,
//! `/reopen_logs`,
//! `/quitquitquit`; and the bootstrap's stats sinks ([`sinks`]: statsd,
//! metrics service), which push the same stats every flush interval.
//! It binds only where the config says (loopback by default). It reads the
//! snapshot store, the cluster registry and the bound-listener table; it never
//! changes config.

mod config_dump;
pub mod sinks;
mod stats;

use std::{
    convert::Infallible,
    fmt::Write as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use strait_envoy::dump::DumpCell;
use strait_net::{BoundListeners, DrainWatch};
use strait_snapshot::Store;
use strait_upstream::ClusterRegistry;
use tokio::{net::TcpListener, sync::watch};

/// What the admin server reads, and the one thing it may ask for: shutdown.
#[derive(Clone)]
pub struct AdminContext {
    pub store: Arc<Store>,
    pub registry: Arc<ClusterRegistry>,
    pub listeners: Arc<BoundListeners>,
    /// The proxy's stats recorder: the server gauges are set in it.
    pub recorder: Arc<dyn metrics::Recorder + Send + Sync>,
    /// Renders what `recorder` holds, for `/stats`, `/stats/prometheus` and
    /// the sinks.
    pub prometheus: PrometheusHandle,
    /// Set to true by `/quitquitquit`.
    pub quit: watch::Sender<bool>,
    pub started: std::time::Instant,
    /// The dynamic resources as received, for `/config_dump`.
    pub xds_dump: Arc<DumpCell>,
    /// Asked for by `POST /drain_listeners`; the proxy stops accepting and
    /// drains (`inbound_only` limits it to INBOUND listeners).
    pub drain_listeners: watch::Sender<Option<DrainListeners>>,
    /// Set once listeners were drained: `server.state` is then DRAINING.
    pub draining: Arc<AtomicBool>,
    /// The access-log files, reopened by `POST /reopen_logs`.
    pub access_logs: Arc<strait_access_log::LogFiles>,
}

/// A `POST /drain_listeners` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainListeners {
    /// `?inboundonly`: only listeners whose `traffic_direction` is INBOUND.
    pub inbound_only: bool,
    /// `?graceful`: connections are closed gracefully (HTTP/1.1 after the
    /// current response, HTTP/2 with GOAWAY) rather than at once.
    pub graceful: bool,
}

/// Envoy's `server.state` values.
const STATE_LIVE: u8 = 0;
const STATE_DRAINING: u8 = 1;
const STATE_PRE_INITIALIZING: u8 = 2;

impl AdminContext {
    fn server_state(&self) -> u8 {
        if !self.store.is_ready() {
            STATE_PRE_INITIALIZING
        } else if self.draining.load(Ordering::Acquire) {
            STATE_DRAINING
        } else {
            STATE_LIVE
        }
    }

    /// Sets the server gauges Envoy keeps up to date itself, just before
    /// they are read.
    fn refresh_server_stats(&self) {
        let state = self.server_state();
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let clusters = self.registry.all().len();
        metrics::with_local_recorder(&*self.recorder, || {
            metrics::gauge!("envoy_server_state").set(f64::from(state));
            metrics::gauge!("envoy_server_live").set(flag(state == STATE_LIVE));
            metrics::gauge!("envoy_listener_manager_workers_started")
                .set(flag(self.store.is_ready()));
            metrics::gauge!("envoy_server_uptime")
                .set(self.started.elapsed().as_secs_f64().floor());
            metrics::gauge!("envoy_cluster_manager_active_clusters").set(clusters as f64);
        });
    }

    /// Every counter and gauge under its Envoy name, as `/stats` shows them
    /// (the server gauges refreshed first). Renders the recorder: for the
    /// admin server and the stats sinks, never the data path.
    fn envoy_stats(&self) -> Vec<stats::Stat> {
        self.refresh_server_stats();
        stats::collect(&self.prometheus.render(), &stats::Query::default())
    }
}

/// Serves admin requests on `listener` until `drain` fires.
pub async fn serve(listener: TcpListener, ctx: AdminContext, drain: DrainWatch) {
    let stop = drain.signaled();
    tokio::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            res = listener.accept() => match res {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    continue;
                }
            },
            () = &mut stop => return,
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let ctx = ctx.clone();
                async move { Ok::<_, Infallible>(handle(&ctx, req)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn handle(ctx: &AdminContext, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let query = query_pairs(req.uri().query().unwrap_or_default());
    let has = |key: &str| query.iter().any(|(k, _)| k == key);
    let json = query.iter().any(|(k, v)| k == "format" && v == "json");
    match (req.method(), path) {
        (_, "/ready") => {
            if ctx.store.is_ready() {
                text(StatusCode::OK, "LIVE\n".into())
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "PRE_INITIALIZING\n".into())
            }
        }
        (_, "/stats/prometheus") => {
            ctx.refresh_server_stats();
            text(StatusCode::OK, ctx.prometheus.render())
        }
        (_, "/stats") => {
            ctx.refresh_server_stats();
            match stats::Query::from_query(&query) {
                Ok(q) => {
                    let all = stats::collect(&ctx.prometheus.render(), &q);
                    if q.json {
                        json_response(stats::json(&all))
                    } else {
                        text(StatusCode::OK, stats::text(&all))
                    }
                }
                Err(e) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
            }
        }
        (_, "/config_dump") => {
            let rendered = config_dump::Params::from_query(&query).and_then(|p| {
                let dump = ctx.xds_dump.load();
                config_dump::render(&ctx.store.load(), dump.as_deref(), &p)
            });
            match rendered {
                Ok(v) => json_response(v),
                Err(e) => text(StatusCode::NOT_FOUND, format!("{e}\n")),
            }
        }
        (_, "/listeners") => listeners(ctx, json),
        (_, "/clusters") => clusters(ctx, json),
        (_, "/server_info") => json_response(server_info(ctx)),
        (&Method::POST, "/drain_listeners") => {
            ctx.draining.store(true, Ordering::Release);
            ctx.drain_listeners.send_replace(Some(DrainListeners {
                inbound_only: has("inboundonly"),
                graceful: has("graceful"),
            }));
            text(StatusCode::OK, "OK\n".into())
        }
        (&Method::POST, "/reopen_logs") => {
            // Envoy reopens its access-log files (log rotation).
            ctx.access_logs.reopen();
            text(StatusCode::OK, "OK\n".into())
        }
        (&Method::POST, "/quitquitquit") => {
            ctx.quit.send_replace(true);
            text(StatusCode::OK, "OK\n".into())
        }
        (_, "/quitquitquit" | "/drain_listeners" | "/reopen_logs") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n".into())
        }
        _ => text(StatusCode::NOT_FOUND, "invalid path\n".into()),
    }
}

/// Envoy's `ServerInfo`.
fn server_info(ctx: &AdminContext) -> serde_json::Value {
    let snap = ctx.store.load();
    let state = match ctx.server_state() {
        STATE_LIVE => "LIVE",
        STATE_DRAINING => "DRAINING",
        _ => "PRE_INITIALIZING",
    };
    let uptime = format!("{}s", ctx.started.elapsed().as_secs());
    let mut info = serde_json::json!({
        "version": concat!("strait/", env!("CARGO_PKG_VERSION")),
        "state": state,
        "uptime_current_epoch": uptime,
        "uptime_all_epochs": uptime,
        "hot_restart_version": "disabled",
        "command_line_options": {
            "restart_epoch": 0,
            "disable_hot_restart": true,
        },
    });
    if let Some(node) = snap.source().get("node") {
        info["node"] = node.clone();
    }
    info
}

/// The query string as decoded `(key, value)` pairs (`%XX` undone; a key
/// without `=` has an empty value), as Envoy's admin reads it.
fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: Option<&u8>| b.and_then(|b| char::from(*b).to_digit(16));
        match (bytes[i], hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
            (b'%', Some(h), Some(l)) => {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
            }
            (b, ..) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn listeners(ctx: &AdminContext, json: bool) -> Response<Full<Bytes>> {
    let all = ctx.listeners.all();
    if json {
        let list: Vec<_> = all
            .iter()
            .map(|(name, addr)| {
                serde_json::json!({
                    "name": name,
                    "local_address": {"socket_address": {"address": addr.ip().to_string(), "port_value": addr.port()}},
                })
            })
            .collect();
        return json_response(serde_json::json!({ "listener_statuses": list }));
    }
    let mut out = String::new();
    for (name, addr) in all {
        let _ = writeln!(out, "{name}::{addr}");
    }
    text(StatusCode::OK, out)
}

fn clusters(ctx: &AdminContext, json: bool) -> Response<Full<Bytes>> {
    let all = ctx.registry.all();
    if json {
        let list: Vec<_> = all
            .iter()
            .map(|c| {
                let hosts: Vec<_> = c.hosts().iter().map(|h| host_json(h)).collect();
                serde_json::json!({
                    "name": c.name(),
                    "added_via_api": false,
                    "host_statuses": hosts,
                })
            })
            .collect();
        return json_response(serde_json::json!({ "cluster_statuses": list }));
    }
    let mut out = String::new();
    for c in all {
        let name = c.name();
        let spec = c.spec();
        for (prio, t) in [
            ("default_priority", &spec.circuit_breakers.default),
            ("high_priority", &spec.circuit_breakers.high),
        ] {
            let _ = writeln!(
                out,
                "{name}::{prio}::max_connections::{}",
                t.max_connections
            );
            let _ = writeln!(
                out,
                "{name}::{prio}::max_pending_requests::{}",
                t.max_pending_requests
            );
            let _ = writeln!(out, "{name}::{prio}::max_requests::{}", t.max_requests);
            let _ = writeln!(out, "{name}::{prio}::max_retries::{}", t.max_retries);
        }
        let _ = writeln!(out, "{name}::added_via_api::false");
        for h in c.hosts() {
            let addr = h.addr();
            for (stat, v) in h.stats() {
                let _ = writeln!(out, "{name}::{addr}::{stat}::{v}");
            }
            let _ = writeln!(out, "{name}::{addr}::cx_idle::{}", h.idle_connections());
            let _ = writeln!(out, "{name}::{addr}::hostname::");
            let _ = writeln!(out, "{name}::{addr}::health_flags::{}", health_flags(&h));
            let _ = writeln!(out, "{name}::{addr}::weight::{}", h.weight());
            let loc = h.locality();
            let _ = writeln!(out, "{name}::{addr}::region::{}", loc.region);
            let _ = writeln!(out, "{name}::{addr}::zone::{}", loc.zone);
            let _ = writeln!(out, "{name}::{addr}::sub_zone::{}", loc.sub_zone);
            let _ = writeln!(out, "{name}::{addr}::canary::false");
            let _ = writeln!(out, "{name}::{addr}::priority::{}", h.priority());
            let _ = writeln!(out, "{name}::{addr}::success_rate::-1");
            let _ = writeln!(out, "{name}::{addr}::local_origin_success_rate::-1");
        }
    }
    text(StatusCode::OK, out)
}

/// Envoy's `health_flags` text: `healthy`, or the failure flags joined by `|`.
fn health_flags(h: &strait_upstream::Host) -> String {
    let mut flags = Vec::new();
    if h.failed_active_health_check() {
        flags.push("/failed_active_hc");
    }
    if h.failed_outlier_check() {
        flags.push("/failed_outlier_check");
    }
    if !h.eds_health().is_usable() {
        flags.push("/failed_eds_health");
    }
    if flags.is_empty() {
        "healthy".to_owned()
    } else {
        flags.join("|")
    }
}

/// One `HostStatus` of Envoy's `ClusterStatuses`.
fn host_json(h: &strait_upstream::Host) -> serde_json::Value {
    use strait_upstream::EndpointHealth as E;
    let addr = h.addr();
    let eds = match h.eds_health() {
        E::Unknown | E::Healthy => "HEALTHY",
        E::Unhealthy => "UNHEALTHY",
        E::Draining => "DRAINING",
        E::Timeout => "TIMEOUT",
        E::Degraded => "DEGRADED",
    };
    let stats: Vec<_> = h
        .stats()
        .iter()
        .map(|(name, v)| {
            let kind = if name.ends_with("_active") {
                "GAUGE"
            } else {
                "COUNTER"
            };
            serde_json::json!({"name": name, "value": v.to_string(), "type": kind})
        })
        .collect();
    let mut health = serde_json::json!({"eds_health_status": eds});
    if h.failed_active_health_check() {
        health["failed_active_health_check"] = true.into();
    }
    if h.failed_outlier_check() {
        health["failed_outlier_check"] = true.into();
    }
    let loc = h.locality();
    let mut locality = serde_json::Map::new();
    for (k, v) in [
        ("region", &loc.region),
        ("zone", &loc.zone),
        ("sub_zone", &loc.sub_zone),
    ] {
        if !v.is_empty() {
            locality.insert(k.to_owned(), v.clone().into());
        }
    }
    let mut out = serde_json::json!({
        "address": {"socket_address": {"address": addr.ip().to_string(), "port_value": addr.port()}},
        "stats": stats,
        "health_status": health,
        "weight": h.weight(),
        "locality": locality,
    });
    if h.priority() > 0 {
        out["priority"] = h.priority().into();
    }
    out
}

fn rfc3339(secs: u64) -> String {
    // Civil-from-days (proleptic Gregorian), to avoid a date dependency.
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    resp
}

fn json_response(v: serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(v.to_string())));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn query_is_percent_decoded() {
        let q = query_pairs(
            "usedonly&filter=%5E(server%5C.state%7Clistener_manager%5C.workers_started)",
        );
        assert_eq!(
            q,
            [
                ("usedonly".to_owned(), String::new()),
                (
                    "filter".to_owned(),
                    r"^(server\.state|listener_manager\.workers_started)".to_owned()
                )
            ]
        );
        assert_eq!(percent_decode("a%2"), "a%2");
    }
}
