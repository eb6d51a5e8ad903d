//! Generated configuration for the benchmark's processes: one Envoy v3
//! bootstrap (read by both Envoy and Strait) and nginx configs for the shared
//! upstream and for nginx as a proxy. Pure string building, no I/O.

use std::path::Path;

/// The fixed response the upstream serves for `GET /` (13 bytes).
pub const UPSTREAM_BODY: &str = "hello, world\n";

/// An Envoy v3 bootstrap: one listener whose HTTP connection manager accepts
/// HTTP/1.1 and h2c prior knowledge (`codec_type: AUTO`), routing `/` to a
/// static cluster that speaks HTTP/1.1 to the upstream. Deliberately minimal,
/// so that Strait and Envoy run the very same file with default behaviour.
pub fn envoy_bootstrap(listen_port: u16, admin_port: u16, upstream_port: u16) -> String {
    format!(
        r#"admin:
  address:
    socket_address: {{ address: 127.0.0.1, port_value: {admin_port} }}
static_resources:
  listeners:
  - name: bench
    address:
      socket_address: {{ address: 127.0.0.1, port_value: {listen_port} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          codec_type: AUTO
          route_config:
            name: bench
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: upstream }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: upstream
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: 127.0.0.1, port_value: {upstream_port} }}
"#
    )
}

/// [`envoy_bootstrap`] with the listener terminating TLS: certificate
/// `cert` and key `key` (PEM files), ALPN `h2` and `http/1.1`, Envoy's
/// default TLS versions. Strait and Envoy again run the very same file.
pub fn envoy_tls_bootstrap(
    listen_port: u16,
    admin_port: u16,
    upstream_port: u16,
    cert: &Path,
    key: &Path,
) -> String {
    let tls = format!(
        r#"    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            alpn_protocols: [h2, http/1.1]
            tls_certificates:
            - certificate_chain: {{ filename: "{cert}" }}
              private_key: {{ filename: "{key}" }}
      filters:
"#,
        cert = cert.display(),
        key = key.display(),
    );
    envoy_bootstrap(listen_port, admin_port, upstream_port).replacen("    - filters:\n", &tls, 1)
}

/// The path of the upstream's large response, and its size.
pub const LARGE_PATH: &str = "/large";
pub const LARGE_BYTES: usize = 4 << 20;

/// nginx as the shared upstream: one process, `GET /` answered from config,
/// `GET /large` a [`LARGE_BYTES`] file from `prefix`.
pub fn nginx_upstream(prefix: &Path, port: u16) -> String {
    let body = UPSTREAM_BODY.escape_default();
    let p = prefix.display();
    nginx_main(
        prefix,
        &format!(
            r#"    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            default_type text/plain;
            return 200 "{body}";
        }}
        location = {LARGE_PATH} {{
            default_type application/octet-stream;
            alias {p}/large.bin;
        }}
    }}
"#
        ),
    )
}

/// nginx as a reverse proxy. nginx 1.22 serves h2c prior knowledge only on a
/// listener marked `http2` (and then only HTTP/2), so it gets two ports.
pub fn nginx_proxy(prefix: &Path, http1_port: u16, http2_port: u16, upstream_port: u16) -> String {
    let location = r#"        location / {
            proxy_pass http://upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
"#;
    nginx_main(
        prefix,
        &format!(
            r#"    upstream upstream {{
        server 127.0.0.1:{upstream_port};
        keepalive 64;
        keepalive_requests 100000000;
        keepalive_timeout 600s;
    }}
    server {{
        listen 127.0.0.1:{http1_port} backlog=4096;
{location}    }}
    server {{
        listen 127.0.0.1:{http2_port} http2 backlog=4096;
{location}    }}
"#
        ),
    )
}

/// The part every nginx instance shares: a single process in the foreground
/// (so the process we spawn is the one that serves, and its /proc entry
/// accounts for all the work), every path inside `prefix`, no access log,
/// and keep-alive limits far above what a run needs so no connection is
/// closed mid-measurement.
fn nginx_main(prefix: &Path, servers: &str) -> String {
    let p = prefix.display();
    format!(
        r#"worker_processes 1;
daemon off;
master_process off;
pid {p}/nginx.pid;
error_log {p}/error.log error;
events {{
    worker_connections 8192;
}}
http {{
    access_log off;
    client_body_temp_path {p}/tmp-body;
    proxy_temp_path {p}/tmp-proxy;
    fastcgi_temp_path {p}/tmp-fastcgi;
    uwsgi_temp_path {p}/tmp-uwsgi;
    scgi_temp_path {p}/tmp-scgi;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
{servers}}}
"#
    )
}

/// Istio's default text access-log format (what istiod renders for
/// `meshConfig.accessLogFile` without `accessLogFormat`).
const ISTIO_LOG_FORMAT: &str = r#"[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n"#;

/// [`envoy_bootstrap`] with what an Istio sidecar's outbound HTTP listener
/// adds for telemetry: an Istio node identity, the peer metadata exchange and
/// `istio.stats` HTTP filters, Istio's default access log to `log`, and
/// Zipkin tracing sampling 1% of requests into a collector cluster at
/// `collector_port`. Used by `bench --telemetry` beside the plain file to
/// price telemetry per request.
pub fn telemetry_bootstrap(
    listen_port: u16,
    admin_port: u16,
    upstream_port: u16,
    collector_port: u16,
    log: &Path,
) -> String {
    let node = r#"node:
  id: sidecar~10.0.0.1~bench-v1-0.default~default.svc.cluster.local
  cluster: bench.default
  metadata:
    NAME: bench-v1-0
    NAMESPACE: default
    WORKLOAD_NAME: bench-v1
    CLUSTER_ID: Kubernetes
    MESH_ID: cluster.local
    ISTIO_VERSION: 1.22.3
    LABELS: { app: bench, version: v1 }
"#;
    let hcm = format!(
        r#"          stat_prefix: bench
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: "{log}"
              log_format: {{ text_format_source: {{ inline_string: "{ISTIO_LOG_FORMAT}" }} }}
          tracing:
            random_sampling: {{ value: 1 }}
            provider:
              name: envoy.tracers.zipkin
              typed_config:
                "@type": type.googleapis.com/envoy.config.trace.v3.ZipkinConfig
                collector_cluster: zipkin
                collector_endpoint: /api/v2/spans
                collector_endpoint_version: HTTP_JSON
                trace_id_128bit: true
                shared_span_context: false
"#,
        log = log.display(),
    );
    let filters = r#"          http_filters:
          - name: istio.metadata_exchange
            typed_config:
              "@type": type.googleapis.com/udpa.type.v1.TypedStruct
              type_url: type.googleapis.com/io.istio.http.peer_metadata.Config
              value: { upstream_discovery: [{ istio_headers: {} }], upstream_propagation: [{ istio_headers: {} }] }
          - name: istio.stats
            typed_config:
              "@type": type.googleapis.com/udpa.type.v1.TypedStruct
              type_url: type.googleapis.com/stats.PluginConfig
              value: {}
          - name: envoy.filters.http.router
"#;
    let collector = format!(
        r#"  - name: zipkin
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: zipkin
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: 127.0.0.1, port_value: {collector_port} }}
"#
    );
    let plain = envoy_bootstrap(listen_port, admin_port, upstream_port);
    let with_hcm = plain.replacen("          stat_prefix: bench\n", &hcm, 1);
    let with_filters = with_hcm.replacen(
        "          http_filters:\n          - name: envoy.filters.http.router\n",
        filters,
        1,
    );
    let with_direction = with_filters.replacen(
        "  - name: bench\n",
        "  - name: bench\n    traffic_direction: OUTBOUND\n",
        1,
    );
    format!("{node}{with_direction}{collector}")
}
