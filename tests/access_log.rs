//! Access logs against the real Envoy 1.40: the same bootstrap (its log
//! paths in a directory of each proxy's own), the same requests and
//! connections through both, and every log file compared line by line.
//! Only what must differ is normalised: times, durations, request ids and
//! ports (ephemeral ones, and each proxy's own listener ports).

use std::{collections::HashMap, net::SocketAddr, path::Path, time::Duration};

use http::Request;
use http_body_util::Full;
use regex::Regex;
use strait_test_support::{
    TempDir,
    client::Client,
    differential::Req,
    envoy::Envoy,
    eventually,
    proxy::TestProxy,
    upstream::{Upstream, http_echo, tcp_echo},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Istio's default text format (`meshConfig.accessLogFile`), as its
/// sidecars carry it.
const ISTIO: &str = r#"[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%"#;

/// OSM's JSON format (its sidecar bootstrap), as YAML under `json_format`.
const OSM: &str = r#"{authority: "%REQ(:AUTHORITY)%", bytes_received: "%BYTES_RECEIVED%", bytes_sent: "%BYTES_SENT%", duration: "%DURATION%", method: "%REQ(:METHOD)%", path: "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", protocol: "%PROTOCOL%", request_id: "%REQ(X-REQUEST-ID)%", requested_server_name: "%REQUESTED_SERVER_NAME%", response_code: "%RESPONSE_CODE%", response_code_details: "%RESPONSE_CODE_DETAILS%", response_flags: "%RESPONSE_FLAGS%", start_time: "%START_TIME%", time_to_first_byte: "%RESPONSE_DURATION%", upstream_cluster: "%UPSTREAM_CLUSTER%", upstream_host: "%UPSTREAM_HOST%", upstream_service_time: "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%", user_agent: "%REQ(USER-AGENT)%", x_forwarded_for: "%REQ(X-FORWARDED-FOR)%"}"#;

/// Typed JSON values: numbers stay numbers, absent values become `null`,
/// literals pass through, nested structs and lists, a mixed string.
const TYPED: &str = r#"{code: "%RESPONSE_CODE%", attempts: "%UPSTREAM_REQUEST_ATTEMPT_COUNT%", rx: "%BYTES_RECEIVED%", tx: "%BYTES_SENT%", flags: "%RESPONSE_FLAGS%", long: "%RESPONSE_FLAGS_LONG%", md: "%DYNAMIC_METADATA(a:b)%", fs: "%FILTER_STATE(k)%", lit: 5, yes: true, nothing: null, nest: {p: "%PROTOCOL%", mix: "c=%RESPONSE_CODE% %UPSTREAM_CLUSTER%"}, list: ["%RESPONSE_CODE%", "x"], trunc: "%REQ(:PATH):4%", local: "%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%", year: "%START_TIME(%Y)%", host: "%HOSTNAME%", details: "%RESPONSE_CODE_DETAILS%"}"#;

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().map_or(1, |a| a.port())
}

fn file_log(dir: &Path, name: &str, format: &str, filter: &str) -> String {
    let path = dir.join(format!("{name}.log"));
    format!(
        "    - name: envoy.access_loggers.file\n{filter}      typed_config:\n        \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n        path: {}\n{format}",
        path.display()
    )
}

/// A `text_format` of `f` and a newline, as Istio writes it.
fn text(f: &str) -> String {
    let line = format!("{f}\n");
    format!(
        "        log_format:\n          text_format: {}\n",
        serde_json::json!(line)
    )
}

fn json(f: &str) -> String {
    format!("        log_format:\n          json_format: {f}\n")
}

/// Indents `s` by `n` more spaces.
fn indent(s: &str, n: usize) -> String {
    s.lines()
        .map(|l| format!("{}{l}\n", " ".repeat(n)))
        .collect()
}

/// HTTP (`/bytes` and `/count` to the echo upstream, `/dead` to a closed
/// port, the rest 404), a TCP proxy to a TCP echo, one to the closed port,
/// and a listener no connection matches a chain of; each with access logs
/// writing into `dir`.
fn bootstrap(dir: &Path, http: &Upstream, tcp: &Upstream, dead: u16) -> String {
    let filter = |f: &str| format!("      filter: {f}\n");
    let hcm_logs = [
        file_log(dir, "istio", &text(ISTIO), ""),
        file_log(dir, "osm", &json(OSM), ""),
        file_log(dir, "default", "", ""),
        file_log(dir, "typed", &json(TYPED), ""),
        file_log(
            dir,
            "status",
            "",
            &filter("{status_code_filter: {comparison: {op: GE, value: {default_value: 500, runtime_key: k}}}}"),
        ),
        file_log(dir, "flag", "", &filter("{response_flag_filter: {flags: [NR]}}")),
        file_log(
            dir,
            "header",
            "",
            &filter("{header_filter: {header: {name: x-log, present_match: true}}}"),
        ),
        file_log(
            dir,
            "and",
            "",
            &filter("{and_filter: {filters: [{not_health_check_filter: {}}, {runtime_filter: {runtime_key: r, percent_sampled: {numerator: 100}}}, {or_filter: {filters: [{traceable_filter: {}}, {duration_filter: {comparison: {op: GE, value: {default_value: 0, runtime_key: d}}}}]}}]}}"),
        ),
        file_log(dir, "never", "", &filter("{runtime_filter: {runtime_key: r}}")),
    ]
    .concat();
    let tcp_logs = |name: &str| {
        [
            file_log(dir, &format!("{name}-istio"), &text(ISTIO), ""),
            file_log(dir, &format!("{name}-osm"), &json(OSM), ""),
            file_log(dir, &format!("{name}-default"), "", ""),
        ]
        .concat()
    };
    let cluster = |name: &str, port: u16| {
        format!(
            "  - name: {name}\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}\n"
        )
    };
    let tcp_proxy = |name: &str, cluster: &str| {
        format!(
            "  - name: {name}\n    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}\n    filter_chains:\n    - filters:\n      - name: envoy.filters.network.tcp_proxy\n        typed_config:\n          \"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy\n          stat_prefix: {name}\n          cluster: {cluster}\n          access_log:\n{}",
            indent(&tcp_logs(name), 8)
        )
    };
    format!(
        r#"
static_resources:
  listeners:
  - name: http
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: logged
          access_log:
{hcm_logs}          route_config:
            name: r
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - name: r-bytes
                match: {{prefix: "/bytes"}}
                route: {{cluster: a}}
              - match: {{prefix: "/count"}}
                route: {{cluster: a}}
              - name: r-dead
                match: {{prefix: "/dead"}}
                route: {{cluster: dead}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
{tcp}{tcpdead}  - name: nochain
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    access_log:
{listener_logs}    filter_chains:
    - filter_chain_match: {{destination_port: 1}}
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: never
          cluster: tcp
  clusters:
{a}{t}{d}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
"#,
        hcm_logs = indent(&hcm_logs, 6),
        tcp = tcp_proxy("tcp", "tcp"),
        tcpdead = tcp_proxy("tcpdead", "dead"),
        listener_logs = [
            file_log(dir, "listener-istio", &text(ISTIO), ""),
            file_log(dir, "listener-osm", &json(OSM), ""),
            file_log(dir, "listener-default", "", ""),
        ]
        .concat(),
        a = cluster("a", http.addr.port()),
        t = cluster("tcp", tcp.addr.port()),
        d = cluster("dead", dead),
    )
}

/// Every log file and how many lines each proxy must write to it.
const FILES: &[(&str, usize)] = &[
    ("istio", 4),
    ("osm", 4),
    ("default", 4),
    ("typed", 4),
    ("status", 1),
    ("flag", 1),
    ("header", 1),
    ("and", 4),
    ("tcp-istio", 1),
    ("tcp-osm", 1),
    ("tcp-default", 1),
    ("tcpdead-istio", 1),
    ("tcpdead-osm", 1),
    ("tcpdead-default", 1),
    ("listener-istio", 1),
    ("listener-osm", 1),
    ("listener-default", 1),
];

/// Writes `data` on a new TCP connection to `addr`, shuts the write half
/// and reads until the proxy closes.
async fn tcp_round_trip(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let _ = s.write_all(data).await;
    let _ = s.shutdown().await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    out
}

/// Replaces what legitimately differs between two runs: times, durations,
/// request ids, and ports other than the upstreams' (`keep`); each
/// listener's own port becomes its name.
struct Normalise {
    rules: Vec<(Regex, &'static str)>,
    port: Regex,
    keep: Vec<u16>,
    listeners: HashMap<u16, String>,
}

impl Normalise {
    fn new(keep: Vec<u16>, listeners: HashMap<u16, String>) -> Self {
        let r = |s: &str| Regex::new(s).expect("regex");
        Normalise {
            rules: vec![
                (r(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"), "<TIME>"),
                (
                    r(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
                    "<ID>",
                ),
                // Text formats: bytes received, bytes sent, duration and
                // the upstream service time, before a quoted field.
                (r(r#"(\d+) (\d+) \d+ \d+ ""#), r#"$1 $2 <MS> <MS> ""#),
                (r(r#"(\d+) (\d+) \d+ - ""#), r#"$1 $2 <MS> - ""#),
                (r(r#""(duration|time_to_first_byte)":\d+"#), r#""$1":<MS>"#),
                (
                    r(r#""upstream_service_time":"\d+""#),
                    r#""upstream_service_time":"<MS>""#,
                ),
            ],
            port: r(r"127\.0\.0\.1:(\d+)"),
            keep,
            listeners,
        }
    }

    fn line(&self, line: &str) -> String {
        let mut s = line.to_owned();
        for (re, to) in &self.rules {
            s = re.replace_all(&s, *to).into_owned();
        }
        self.port
            .replace_all(&s, |c: &regex::Captures<'_>| {
                let port: u16 = c[1].parse().unwrap_or(0);
                if self.keep.contains(&port) {
                    c[0].to_owned()
                } else if let Some(name) = self.listeners.get(&port) {
                    format!("127.0.0.1:<{name}>")
                } else {
                    "127.0.0.1:<PORT>".to_owned()
                }
            })
            .into_owned()
    }
}

/// Waits until every file has its lines; returns them.
async fn read_logs(dir: &Path) -> HashMap<&'static str, String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let read = |name: &str| std::fs::read_to_string(dir.join(format!("{name}.log")));
    loop {
        let short: Vec<_> = FILES
            .iter()
            .filter(|(name, lines)| read(name).unwrap_or_default().matches('\n').count() < *lines)
            .collect();
        if short.is_empty() {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            let seen: Vec<_> = short
                .iter()
                .map(|(n, l)| format!("{n} (want {l}): {:?}", read(n)))
                .collect();
            panic!(
                "log files in {} short of lines:\n{}",
                dir.display(),
                seen.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    FILES
        .iter()
        .map(|(name, _)| (*name, read(name).unwrap_or_default()))
        .collect()
}

/// Sends `req` on a new HTTP/1.1 connection: the status and body.
async fn send(addr: SocketAddr, req: &Req) -> anyhow::Result<(u16, String)> {
    let mut c = Client::http1(addr).await?;
    let mut b = Request::builder()
        .method(req.method.as_str())
        .uri(&req.path)
        .header("host", &req.authority);
    for (k, v) in &req.headers {
        b = b.header(k, v);
    }
    let r = c.send(b.body(Full::new(req.body.clone()))?).await?;
    Ok((r.status.as_u16(), r.text()))
}

/// The requests and connections of the comparison.
async fn drive(
    http: SocketAddr,
    tcp: SocketAddr,
    tcpdead: SocketAddr,
    nochain: SocketAddr,
) -> anyhow::Result<Vec<String>> {
    let mut seen = Vec::new();
    for req in requests() {
        seen.push(format!("{:?}", send(http, &req).await?));
    }
    seen.push(format!("{:?}", tcp_round_trip(tcp, b"hello tcp").await));
    seen.push(format!("{:?}", tcp_round_trip(tcpdead, b"lost").await));
    seen.push(format!("{:?}", tcp_round_trip(nochain, b"nobody").await));
    Ok(seen)
}

fn requests() -> Vec<Req> {
    vec![
        Req::get("h", "/bytes/6"),
        Req::get("h", "/nope").header("x-log", "1"),
        Req::get("h", "/dead"),
        Req::post("h", "/count", "hello body"),
    ]
}

/// The same bootstrap, requests and connections through Strait and Envoy:
/// every line of every log the same once normalised (Istio's and OSM's
/// formats, Envoy's default, typed JSON, filters; HTTP 200, 404 `NR`, 503
/// `UF` from a closed port, a POST with a body; a TCP proxy connection, a
/// TCP connect failure `UF,URX`; a listener without a matching chain).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_logs_match_envoy() -> anyhow::Result<()> {
    let (http, tcp) = (http_echo("a"), tcp_echo());
    let dead = closed_port();
    let (ours, theirs) = (TempDir::new("al-strait"), TempDir::new("al-envoy"));
    let strait = TestProxy::start(&bootstrap(ours.path(), &http, &tcp, dead), 1);
    let envoy = Envoy::start(&bootstrap(theirs.path(), &http, &tcp, dead));
    let names = ["http", "tcp", "tcpdead", "nochain"];
    let at = |f: &dyn Fn(&str) -> SocketAddr| names.map(f);
    let s = at(&|n| strait.listener(n));
    let e = at(&|n| envoy.listener(n));
    let ours_seen = drive(s[0], s[1], s[2], s[3]).await?;
    let theirs_seen = drive(e[0], e[1], e[2], e[3]).await?;
    assert_eq!(ours_seen, theirs_seen, "clients saw different answers");
    let keep = vec![http.addr.port(), tcp.addr.port(), dead];
    let named = |addrs: [SocketAddr; 4]| {
        addrs
            .iter()
            .zip(names)
            .map(|(a, n)| (a.port(), n.to_owned()))
            .collect::<HashMap<_, _>>()
    };
    let (ns, ne) = (
        Normalise::new(keep.clone(), named(s)),
        Normalise::new(keep, named(e)),
    );
    let (ours_logs, theirs_logs) = (read_logs(ours.path()).await, read_logs(theirs.path()).await);
    // Envoy writes `never` (a 0 % runtime filter) nothing; nor may Strait.
    assert!(
        !ours.path().join("never.log").exists()
            || std::fs::read_to_string(ours.path().join("never.log"))?.is_empty()
    );
    let mut diffs = Vec::new();
    for (name, _) in FILES {
        let o: Vec<String> = ours_logs[name].lines().map(|l| ns.line(l)).collect();
        let t: Vec<String> = theirs_logs[name].lines().map(|l| ne.line(l)).collect();
        if std::env::var_os("DIFF_VERBOSE").is_some() {
            eprintln!("{name}:\n  strait: {o:#?}\n  envoy:  {t:#?}");
        }
        if o != t {
            diffs.push(format!("{name}.log:\n  strait: {o:#?}\n  envoy:  {t:#?}"));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} files differ:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    Ok(())
}

/// `POST /reopen_logs` lets go of a rotated file: the next line goes to a
/// new file at the configured path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_logs_starts_a_new_file() -> anyhow::Result<()> {
    let (http, tcp) = (http_echo("a"), tcp_echo());
    let dir = TempDir::new("al-reopen");
    let strait = TestProxy::start(&bootstrap(dir.path(), &http, &tcp, closed_port()), 1);
    let addr = strait.listener("http");
    let path = dir.path().join("default.log");
    let rotated = dir.path().join("default.log.1");
    let lines = |p: &Path| std::fs::read_to_string(p).map_or(0, |s| s.lines().count());
    send(addr, &Req::get("h", "/bytes/1")).await?;
    eventually("the first line", Duration::from_secs(10), || {
        let n = lines(&path);
        async move { (n == 1).then_some(()) }
    })
    .await;
    std::fs::rename(&path, &rotated)?;
    let mut admin = Client::http1(strait.admin()).await?;
    let reply = admin
        .send(Request::post("/reopen_logs").body(Full::default())?)
        .await?;
    assert_eq!(reply.status, 200);
    send(addr, &Req::get("h", "/bytes/2")).await?;
    eventually(
        "a new file with the second line",
        Duration::from_secs(10),
        || {
            let n = lines(&path);
            async move { (n == 1).then_some(()) }
        },
    )
    .await;
    assert_eq!(
        lines(&rotated),
        1,
        "the rotated file keeps the first line only"
    );
    Ok(())
}
