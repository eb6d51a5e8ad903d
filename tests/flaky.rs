//! A small upstream for the retry, filter and mirror tests: it fails its
//! first N requests in a chosen way, then answers 200 with its name, and
//! records what it saw. Included by those tests with `#[path]`.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// How the first requests fail.
#[derive(Debug, Clone, Copy)]
#[allow(dead_code)]
pub enum Mode {
    Status(u16),
    /// Answer 200, but only after this long.
    Delay(Duration),
    /// Close the connection without a response.
    Reset,
}

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
#[allow(dead_code)]
pub struct Seen {
    pub host: String,
    pub path: String,
    pub attempt: Option<String>,
    pub body_len: usize,
}

#[allow(dead_code)]
pub struct Flaky {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    count: Arc<AtomicU64>,
}

#[allow(dead_code)]
impl Flaky {
    pub fn requests(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
}

/// Starts an upstream named `name` on 127.0.0.1 that fails its first
/// `fail_first` requests per `mode` (`u64::MAX`: always).
pub async fn start(name: &'static str, fail_first: u64, mode: Mode) -> Flaky {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let count = Arc::new(AtomicU64::new(0));
    let (s, c) = (Arc::clone(&seen), Arc::clone(&count));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (s, c) = (Arc::clone(&s), Arc::clone(&c));
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (s, c) = (Arc::clone(&s), Arc::clone(&c));
                    async move { serve(req, name, fail_first, mode, &s, &c).await }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Flaky { addr, seen, count }
}

async fn serve(
    req: Request<Incoming>,
    name: &'static str,
    fail_first: u64,
    mode: Mode,
    seen: &Mutex<Vec<Seen>>,
    count: &AtomicU64,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let n = count.fetch_add(1, Ordering::SeqCst);
    let header = |k: &str| {
        req.headers()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let host = header("host")
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let attempt = header("x-envoy-attempt-count");
    let path = req.uri().path().to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    seen.lock().expect("lock").push(Seen {
        host,
        path,
        attempt,
        body_len: body.len(),
    });
    let mut status = StatusCode::OK;
    if n < fail_first {
        match mode {
            Mode::Status(s) => status = StatusCode::from_u16(s).unwrap_or(StatusCode::OK),
            Mode::Delay(d) => tokio::time::sleep(d).await,
            Mode::Reset => return Err(std::io::Error::other("reset")),
        }
    }
    let mut r = Response::new(Full::new(Bytes::from_static(name.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("x-upstream", http::HeaderValue::from_static(name));
    Ok::<_, std::io::Error>(r)
}

/// A port nothing listens on.
#[allow(dead_code)]
pub fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// A bootstrap with one listener (`buffer_limit` bytes per connection),
/// `http_filters` (YAML list items, indented 10 spaces, before the router),
/// the given virtual host body (`routes:` etc., indented 14 spaces), and
/// one cluster per `(name, [(addr, weight)])`.
#[allow(dead_code)]
pub fn config(
    buffer_limit: u32,
    http_filters: &str,
    vhost: &str,
    clusters: &[(&str, Vec<(SocketAddr, u32)>)],
) -> String {
    let mut cl = String::new();
    for (name, eps) in clusters {
        cl.push_str(&format!(
            "  - name: {name}\n    type: STATIC\n    connect_timeout: 0.5s\n    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n"
        ));
        for (a, w) in eps {
            cl.push_str(&format!(
                "        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}\n          load_balancing_weight: {w}\n",
                a.port()
            ));
        }
    }
    format!(
        r#"
static_resources:
  listeners:
  - name: listener
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    per_connection_buffer_limit_bytes: {buffer_limit}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          # Envoy's default internal ranges, so a request with one private
          # x-forwarded-for entry may use the router's x-envoy-* headers
          # (without this config no client is internal).
          internal_address_config: {{}}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
{vhost}
          http_filters:
{http_filters}
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
{cl}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
"#
    )
}
