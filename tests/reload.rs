//! Hot reload the way a user does it: the config file is rewritten (atomic
//! rename) while traffic flows, and the watcher (polling every 50 ms in
//! tests) applies it.
//!
//! Every config version `n` routes everything to upstream `a` when `n` is
//! even and `b` when odd, and rewrites the path prefix `/` to `/v{n}/`, so
//! each echoed response names the version that routed it (its path) and the
//! cluster it went to (`x-upstream`). A response is consistent iff the two
//! agree. `/delay/` is routed the same way without the rewrite, so the echo
//! upstream still sees its delay command.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use strait_test_support::{
    client::{Client, Reply},
    eventually,
    proxy::TestProxy,
    upstream::{Upstream, http_echo},
};
use tokio::net::TcpStream;

/// How long a good config may take to go live, or a bad one to be refused.
const APPLY: Duration = Duration::from_secs(5);

/// The load test measures throughput; other tests here must not compete
/// with it for the CPU.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The two upstreams every config knows.
struct Upstreams {
    a: Upstream,
    b: Upstream,
}

impl Upstreams {
    fn start() -> Upstreams {
        Upstreams {
            a: http_echo("a"),
            b: http_echo("b"),
        }
    }
}

/// Config version `n`, with one listener per `(name, address)`.
fn cfg(n: u64, ups: &Upstreams, listeners: &[(&str, SocketAddr)]) -> String {
    let cluster = if n.is_multiple_of(2) { "a" } else { "b" };
    let listeners: String = listeners
        .iter()
        .map(|(name, addr)| {
            format!(
                r#"
  - name: {name}
    address: {{socket_address: {{address: {ip}, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/delay/"}}
                route: {{cluster: {cluster}}}
              - match: {{prefix: "/"}}
                route: {{cluster: {cluster}, prefix_rewrite: "/v{n}/"}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}"#,
                ip = addr.ip(),
                port = addr.port(),
            )
        })
        .collect();
    let cluster_yaml = |name: &str, addr: SocketAddr| {
        format!(
            r#"
  - name: {name}
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: {ip}, port_value: {port}}}}}}}"#,
            ip = addr.ip(),
            port = addr.port(),
        )
    };
    format!(
        "static_resources:\n  listeners:{listeners}\n  clusters:{}{}\nadmin:\n  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}\n",
        cluster_yaml("a", ups.a.addr),
        cluster_yaml("b", ups.b.addr),
    )
}

fn any_port(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().expect("an IP literal"), 0)
}

/// The version and cluster a response reveals, if they agree.
fn consistent(r: &Reply) -> Result<u64, String> {
    let upstream = r.header("x-upstream").unwrap_or("");
    // The echo's JSON carries "path":"/v{n}/..."; find it without a parse.
    let body = r.text();
    let version = body
        .split_once("\"path\":\"/v")
        .and_then(|(_, rest)| rest.split_once('/'))
        .and_then(|(n, _)| n.parse::<u64>().ok())
        .ok_or_else(|| format!("no version in {body}"))?;
    let expected = if version.is_multiple_of(2) { "a" } else { "b" };
    if upstream == expected {
        Ok(version)
    } else {
        Err(format!(
            "version {version} routed to upstream {upstream:?}, not {expected}"
        ))
    }
}

/// What one load connection saw.
#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    failures: Vec<String>,
    inconsistent: Vec<String>,
    versions: BTreeSet<u64>,
    /// Times a response showed an older version than the one before it on
    /// the same connection.
    regressions: u64,
}

/// One keep-alive connection sending `GET /load/{id}` back to back until
/// `stop`. Publishes the newest version it saw into `newest`.
async fn load(addr: SocketAddr, id: usize, stop: Arc<AtomicBool>, newest: Arc<AtomicU64>) -> Tally {
    let mut tally = Tally::default();
    let path = format!("/load/{id}");
    let mut client = Client::http1(addr).await.expect("load connection");
    let mut last = 0;
    while !stop.load(Ordering::Relaxed) {
        match client.get(&path).await {
            Ok(r) if r.status == 200 => match consistent(&r) {
                Ok(v) => {
                    tally.ok += 1;
                    if v < last {
                        tally.regressions += 1;
                    }
                    last = v;
                    tally.versions.insert(v);
                    newest.fetch_max(v, Ordering::SeqCst);
                }
                Err(e) => tally.inconsistent.push(e),
            },
            Ok(r) => tally.failures.push(format!("{}: {}", r.status, r.text())),
            Err(e) => {
                tally.failures.push(format!("{e:#}"));
                client = Client::http1(addr).await.expect("load reconnection");
            }
        }
    }
    tally
}

/// Waits until the proxy runs version `n` and the load has seen it.
async fn live(proxy: &TestProxy, n: u64, newest: &AtomicU64) {
    eventually(&format!("version {n} live"), APPLY, || async {
        (proxy.version() == n).then_some(())
    })
    .await;
    eventually(&format!("a response from version {n}"), APPLY, || async {
        (newest.load(Ordering::SeqCst) >= n).then_some(())
    })
    .await;
}

/// Writes `yaml`, waits until the watcher has refused it, and checks the
/// running version did not move. Returns the refusal's message.
async fn refused(proxy: &TestProxy, what: &str, yaml: &str) -> String {
    let (version, failures) = (proxy.version(), proxy.reload_failures());
    proxy.rewrite(yaml);
    eventually(&format!("{what} refused"), APPLY, || async {
        (proxy.reload_failures() > failures).then_some(())
    })
    .await;
    assert_eq!(proxy.version(), version, "{what} changed the version");
    proxy
        .last_reload_error()
        .unwrap_or_else(|| panic!("{what}: refused without an error"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_reloads_and_four_bad_configs_under_load() -> anyhow::Result<()> {
    const CONNECTIONS: usize = 24;
    const LAST: u64 = 51;
    let _serial = SERIAL.lock().await;
    let ups = Upstreams::start();
    let listeners = [("listener", any_port("127.0.0.1"))];
    let proxy = TestProxy::start(&cfg(1, &ups, &listeners), 2);
    let addr = proxy.listener("listener");
    assert_eq!(proxy.version(), 1);

    let stop = Arc::new(AtomicBool::new(false));
    let newest = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|id| tokio::spawn(load(addr, id, Arc::clone(&stop), Arc::clone(&newest))))
        .collect();
    live(&proxy, 1, &newest).await;

    // 50 rewrites, alternating the cluster, each live before the next.
    for n in 2..=LAST {
        proxy.rewrite(&cfg(n, &ups, &listeners));
        live(&proxy, n, &newest).await;
    }
    let reloads_done = started.elapsed();

    // Bad configs, each built from what would be the next version: refused,
    // and the last good one keeps serving.
    let next = cfg(LAST + 1, &ups, &listeners);
    let syntax = next.replacen("static_resources:", "static_resources: [", 1);
    let err = refused(&proxy, "a YAML syntax error", &syntax).await;
    assert!(!err.is_empty());
    let typo = next.replace("prefix_rewrite:", "prefix_rewrit:");
    let err = refused(&proxy, "an unknown field", &typo).await;
    assert!(err.contains("prefix_rewrit"), "{err}");
    let cors = next.replace(
        "          http_filters:\n",
        "          http_filters:\n          - name: envoy.filters.http.lua\n            typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua}\n",
    );
    let err = refused(&proxy, "an unsupported filter", &cors).await;
    assert!(err.contains("lua"), "{err}");
    let teapot = next.replace(
        "              routes:\n",
        "              routes:\n              - match: {prefix: \"/teapot\"}\n                direct_response: {status: 999}\n",
    );
    let err = refused(&proxy, "a bad status code", &teapot).await;
    assert!(err.contains("999"), "{err}");
    // The last good config still serves, unchanged.
    let mut probe = Client::http1(addr).await?;
    let r = probe.get("/probe").await?;
    assert_eq!(consistent(&r), Ok(LAST), "{}", r.text());
    // And a good config is taken again.
    proxy.rewrite(&next);
    live(&proxy, LAST + 1, &newest).await;

    stop.store(true, Ordering::SeqCst);
    let elapsed = started.elapsed();
    let mut total = Tally::default();
    let mut regressions = 0;
    for t in tasks {
        let t = t.await?;
        total.ok += t.ok;
        total.failures.extend(t.failures);
        total.inconsistent.extend(t.inconsistent);
        total.versions.extend(t.versions);
        regressions += t.regressions;
    }
    let rate = total.ok as f64 / elapsed.as_secs_f64();
    eprintln!(
        "{} requests in {elapsed:.2?} ({rate:.0}/s) over {CONNECTIONS} connections; \
         50 reloads took {reloads_done:.2?}; {} versions seen",
        total.ok,
        total.versions.len()
    );
    assert!(
        total.failures.is_empty(),
        "{} failed requests, first: {:?}",
        total.failures.len(),
        total.failures.first()
    );
    assert!(
        total.inconsistent.is_empty(),
        "{} inconsistent responses, first: {:?}",
        total.inconsistent.len(),
        total.inconsistent.first()
    );
    assert!(
        ups.a.requests() + ups.b.requests() >= total.ok,
        "every answer came from an upstream"
    );
    assert_eq!(regressions, 0, "a connection saw a version go backwards");
    let all: BTreeSet<u64> = (1..=LAST + 1).collect();
    assert_eq!(total.versions, all, "every version served requests");
    assert_eq!(proxy.version(), LAST + 1);
    assert!(rate >= 2000.0, "load rate {rate:.0}/s is under 2000/s");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_listeners_keep_connections_and_moved_ones_rebind() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let ups = Upstreams::start();
    let before = [
        ("stay", any_port("127.0.0.1")),
        ("moving", any_port("127.0.0.1")),
    ];
    let proxy = TestProxy::start(&cfg(1, &ups, &before), 2);
    let stay = proxy.listener("stay");
    let old = proxy.listener("moving");
    let mut kept = Client::http1(stay).await?;
    let r = kept.get("/first").await?;
    assert_eq!(consistent(&r), Ok(1));
    assert_eq!(ups.b.connections(), 1);

    let after = [
        ("stay", any_port("127.0.0.1")),
        ("moving", any_port("127.0.0.2")),
    ];
    proxy.rewrite(&cfg(2, &ups, &after));
    eventually("version 2 live", APPLY, || async {
        (proxy.version() == 2).then_some(())
    })
    .await;

    // Same client, same TCP connection, new version.
    let r = kept.get("/second").await?;
    assert_eq!(consistent(&r), Ok(2), "{}", r.text());
    assert_eq!(proxy.listener("stay"), stay, "unchanged listener kept");

    let moved = proxy.listener("moving");
    assert_ne!(moved, old);
    assert_eq!(moved.ip().to_string(), "127.0.0.2");
    let r = Client::http1(moved).await?.get("/moved").await?;
    assert_eq!(consistent(&r), Ok(2), "{}", r.text());
    eventually("the old address stops accepting", APPLY, || async {
        TcpStream::connect(old).await.is_err().then_some(())
    })
    .await;
    // The unchanged listener still accepts new connections too.
    let r = Client::http1(stay).await?.get("/new").await?;
    assert_eq!(consistent(&r), Ok(2));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_request_finishes_on_its_version() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let ups = Upstreams::start();
    let listeners = [("listener", any_port("127.0.0.1"))];
    let proxy = TestProxy::start(&cfg(1, &ups, &listeners), 2);
    let addr = proxy.listener("listener");

    // Version 1 routes to b; the request waits there for 500 ms.
    let slow = tokio::spawn(async move {
        let mut c = Client::http1(addr).await?;
        c.get("/delay/500").await
    });
    eventually("the slow request at b", APPLY, || async {
        ups.b
            .paths()
            .contains(&"/delay/500".to_owned())
            .then_some(())
    })
    .await;
    proxy.rewrite(&cfg(2, &ups, &listeners));
    eventually("version 2 live", APPLY, || async {
        (proxy.version() == 2).then_some(())
    })
    .await;
    assert!(!slow.is_finished(), "the slow request outlived the reload");
    let r = Client::http1(addr).await?.get("/now").await?;
    assert_eq!(consistent(&r), Ok(2), "new requests take version 2");

    let r = slow.await??;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-upstream"), Some("b"), "finished where it began");
    assert!(ups.a.paths().iter().all(|p| !p.starts_with("/delay/")));
    Ok(())
}

/// A listener whose chain `x` (connections from 127.0.0.1) answers `x`
/// when `with_x`, and whose default chain answers `fallback`.
fn chains_cfg(with_x: bool, fallback: &str) -> String {
    let hcm = |answer: &str| {
        format!(
            r#"
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: s
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                direct_response: {{status: 200, body: {{inline_string: {answer}}}}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}"#
        )
    };
    let x = if with_x {
        format!(
            r#"
    - name: x
      filter_chain_match: {{source_prefix_ranges: [{{address_prefix: 127.0.0.1, prefix_len: 32}}]}}
      filters:{}"#,
            hcm("x")
        )
    } else {
        String::new()
    };
    format!(
        r#"
static_resources:
  listeners:
  - name: listener
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:{x}
    - name: other
      filter_chain_match: {{source_prefix_ranges: [{{address_prefix: 10.0.0.0, prefix_len: 8}}]}}
      filters:{other}
    default_filter_chain:
      name: default
      filters:{fallback}
"#,
        other = hcm("other"),
        fallback = hcm(fallback),
    )
}

/// Envoy's filter-chain-only update: a connection stays on the chain it
/// was accepted with. When an update removes that chain, the connection is
/// drained (never served by whichever chain now sits at its old place);
/// when the update keeps it, the connection goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_filter_chain_drains_its_connections() -> anyhow::Result<()> {
    let _serial = SERIAL.lock().await;
    let proxy = TestProxy::start(&chains_cfg(true, "default-1"), 2);
    let addr = proxy.listener("listener");
    let mut on_x = Client::http1(addr).await?;
    assert_eq!(on_x.get("/").await?.text(), "x");

    // Only the default chain changes: the connection on `x` goes on.
    proxy.rewrite(&chains_cfg(true, "default-2"));
    eventually("version 2 live", APPLY, || async {
        (proxy.version() == 2).then_some(())
    })
    .await;
    assert_eq!(
        on_x.get("/").await?.text(),
        "x",
        "an unchanged chain keeps its connections"
    );

    // `x` goes: its connection is closed, not served by the chain that
    // now comes first.
    proxy.rewrite(&chains_cfg(false, "default-3"));
    eventually("version 3 live", APPLY, || async {
        (proxy.version() == 3).then_some(())
    })
    .await;
    eventually(
        "the connection on the removed chain is closed",
        APPLY,
        || async { on_x.is_closed().then_some(()) },
    )
    .await;
    let r = Client::http1(addr).await?.get("/").await?;
    assert_eq!(
        r.text(),
        "default-3",
        "a new connection takes the new chain"
    );
    Ok(())
}
