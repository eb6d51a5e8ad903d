//! End-to-end tests live in this package's test targets; the library is
//! empty. Shared helpers are in `strait-test-support`.
//!
//! - `http.rs`: hyper client, HTTP/1.1 and HTTP/2 on both sides, concurrent
//!   streams, keep-alive, trailers, hop-by-hop, request ids, `server`.
//! - `curl.rs`: the system curl (GET, POST, h2 prior knowledge, HEAD,
//!   100-continue, chunked).
//! - `bodies.rs`: 1 GiB up and down in bounded memory.
//! - `grpc.rs` (+ `grpc/echo.py`): grpcio client and server through the proxy.
//! - `upgrade.rs`: WebSocket upgrade tunnels, 403 when not configured.
//! - `errors.rs`: Envoy's local replies (404, 503, 504, direct responses).
//! - `tcp.rs`: TCP proxy, half-close, weighted clusters, byte counters.
//! - `tls.rs`, `mtls.rs`: TLS listeners with curl; sidecar-to-sidecar mTLS
//!   with SPIFFE identities, `transport_socket_matches`, `openssl s_client`
//!   and Envoy as the peer sidecar both ways.
//! - `admin.rs`: `/ready`, `/config_dump`, `/listeners`, `/stats/prometheus`,
//!   each proxy counting apart.
//! - `embedded_stats.rs`: stats with a foreign global `metrics` recorder
//!   installed, and with a recorder given in `Options::stats`.
//! - `malformed.rs`, `reload.rs`: malformed input; hot reload.
//! - `retries.rs`, `filters.rs`, `mirror.rs` (+ `flaky.rs`, an upstream that
//!   fails its first requests): router retries, fault/CORS/header-mutation
//!   filters, request mirroring.
//! - `admin_envoy.rs`: `/config_dump` (static and over xDS), `/stats` as
//!   pilot-agent reads it, `/drain_listeners`, `/server_info`, each checked
//!   against a real Envoy with the same config and control plane.
//! - `xds_load.rs`: 1,000 xDS pushes (SotW and delta) under load, a NACK and
//!   a control-plane restart mid-load.
