//! Envoy's internal/external request handling in the HTTP connection
//! manager: which address is the trusted client (`use_remote_address`,
//! `x-forwarded-for`, `xff_num_trusted_hops`), whether the request is
//! internal (`internal_address_config`), and the request header changes
//! that follow (`x-forwarded-for`, `x-forwarded-proto`, `x-envoy-internal`,
//! `x-envoy-external-address`, and the `x-envoy-*` headers only internal
//! clients may send).
//!
//! Pure functions over a header map, run once per request before routing
//! (as Envoy mutates request headers before the route is chosen): no I/O,
//! no locks, and no allocation beyond the header values they write.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use http::{HeaderMap, HeaderName, HeaderValue};
use strait_model::{HttpConnectionManager, InternalAddresses};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_ENVOY_INTERNAL: HeaderName = HeaderName::from_static("x-envoy-internal");
static X_ENVOY_EXTERNAL_ADDRESS: HeaderName = HeaderName::from_static("x-envoy-external-address");

/// Stripped from requests that enter the trusted network here (external
/// and `use_remote_address`): what an earlier hop of the mesh would have
/// set, so a client must not be able to forge it.
const EDGE_ONLY: [&str; 5] = [
    "x-envoy-decorator-operation",
    "x-envoy-downstream-service-cluster",
    "x-envoy-downstream-service-node",
    "x-envoy-original-path",
    "x-envoy-original-host",
];

/// Stripped from every external request: the router's control headers and
/// the other headers Envoy honours only from internal clients (Envoy's
/// `cleanInternalHeaders`, checked against Envoy 1.40).
const INTERNAL_ONLY: [&str; 15] = [
    "x-envoy-retriable-status-codes",
    "x-envoy-retriable-header-names",
    "x-envoy-retry-on",
    "x-envoy-retry-grpc-on",
    "x-envoy-max-retries",
    "x-envoy-upstream-alt-stat-name",
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-upstream-rq-timeout-alt-response",
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-force-trace",
    "x-envoy-ip-tags",
    "x-envoy-original-url",
    "x-envoy-hedge-on-per-try-timeout",
    "x-envoy-upstream-stream-duration-ms",
];

/// Where a request comes from, as the connection manager decides it once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Origin {
    /// The trusted client address (Envoy's "final remote address"): from
    /// `x-forwarded-for` when a trusted hop wrote it, else the peer.
    pub(crate) client: IpAddr,
    /// The request is internal: `x-envoy-*` control headers are honoured.
    pub(crate) internal: bool,
    /// External and `use_remote_address`: the request enters the trusted
    /// network here.
    pub(crate) edge: bool,
}

impl Origin {
    /// Classifies a request from its headers as received (before
    /// `x-forwarded-for` is appended to) and the connection's peer.
    /// Allocation-free.
    pub(crate) fn classify(
        headers: &HeaderMap,
        peer: SocketAddr,
        hcm: &HttpConnectionManager,
    ) -> Origin {
        // A dual-stack socket reports IPv4 peers as mapped IPv6; Envoy's
        // accepted sockets report them as IPv4.
        let peer = peer.ip().to_canonical();
        let hops = hcm.client.xff_num_trusted_hops;
        let (client, single) = if hcm.use_remote_address {
            // Trusted proxies in front wrote the client into XFF; the
            // address is taken before the peer is appended.
            let trusted = match hops {
                0 => None,
                n => last_xff_address(headers, n - 1).0,
            };
            // Only a request that came with no XFF at all is judged by
            // its own address.
            (
                trusted.unwrap_or(peer),
                !headers.contains_key(&X_FORWARDED_FOR),
            )
        } else {
            match last_xff_address(headers, hops) {
                (Some(ip), single) => (ip, single),
                // No (usable) XFF: the request counts as external even
                // from an internal peer, as in Envoy.
                (None, _) => (peer, false),
            }
        };
        let internal = single && is_internal(client, hcm.client.internal_addresses.as_ref());
        Origin {
            client,
            internal,
            edge: !internal && hcm.use_remote_address,
        }
    }
}

/// Applies the connection manager's request header changes that depend on
/// the origin: `x-forwarded-for` and `x-forwarded-proto`, `x-envoy-internal`,
/// the internal-only headers of external requests, `x-envoy-external-address`
/// and a fresh `x-request-id` at the edge. `tls`: the downstream connection
/// is TLS. Allocates only the header values it writes.
pub(crate) fn mutate(
    h: &mut HeaderMap,
    origin: &Origin,
    peer: SocketAddr,
    hcm: &HttpConnectionManager,
    tls: bool,
) {
    let scheme = HeaderValue::from_static(if tls { "https" } else { "http" });
    // Every header stripped below is an `x-envoy-` one, and most requests
    // carry none: one pass over the names instead of twenty lookups.
    let has_envoy_headers = h.keys().any(|k| k.as_str().starts_with("x-envoy-"));
    if has_envoy_headers {
        h.remove(&X_ENVOY_INTERNAL);
    }
    if hcm.use_remote_address {
        if !hcm.client.skip_xff_append {
            append_xff(h, peer.ip().to_canonical());
        }
        // Trusted hops in front may have said how the client connected.
        if hcm.client.xff_num_trusted_hops == 0 || !h.contains_key(&X_FORWARDED_PROTO) {
            h.insert(X_FORWARDED_PROTO.clone(), scheme.clone());
        }
    }
    if !h.contains_key(&X_FORWARDED_PROTO) {
        h.insert(X_FORWARDED_PROTO.clone(), scheme);
    }
    if origin.internal {
        h.insert(X_ENVOY_INTERNAL.clone(), HeaderValue::from_static("true"));
        return;
    }
    if has_envoy_headers {
        if origin.edge {
            for name in EDGE_ONLY {
                h.remove(name);
            }
        }
        for name in INTERNAL_ONLY {
            h.remove(name);
        }
    }
    if origin.edge {
        if let Ok(v) = HeaderValue::try_from(origin.client.to_string()) {
            h.insert(X_ENVOY_EXTERNAL_ADDRESS.clone(), v);
        }
        // A client's own request id is not trusted at the edge.
        if hcm.generate_request_id {
            h.insert(X_REQUEST_ID.clone(), strait_codec::headers::request_id());
        }
    }
}

/// Appends `ip` to `x-forwarded-for` as Envoy does (comma, no space).
/// Envoy appends its own host address for a loopback peer; Strait appends
/// the peer.
fn append_xff(h: &mut HeaderMap, ip: IpAddr) {
    let value = match h.get(&X_FORWARDED_FOR).map(HeaderValue::as_bytes) {
        Some(prev) if !prev.is_empty() => {
            let mut v = Vec::with_capacity(prev.len() + 40);
            v.extend_from_slice(prev);
            v.push(b',');
            v.extend_from_slice(ip.to_string().as_bytes());
            HeaderValue::from_bytes(&v)
        }
        _ => HeaderValue::try_from(ip.to_string()),
    };
    if let Ok(v) = value {
        h.insert(X_FORWARDED_FOR.clone(), v);
    }
}

/// Envoy's `getLastAddressFromXFF`: the address `skip` entries before the
/// end of `x-forwarded-for` (lines taken as one comma-separated list), and
/// whether it is the header's only entry (never when `skip > 0`). `None`
/// when there are too few entries or the entry is not a bare IP address.
fn last_xff_address(headers: &HeaderMap, skip: u32) -> (Option<IpAddr>, bool) {
    let mut entries = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .rev()
        .flat_map(|line| line.as_bytes().rsplit(|b| *b == b','));
    let Some(entry) = entries.nth(skip as usize) else {
        return (None, false);
    };
    let single = skip == 0 && entries.next().is_none();
    let ip = std::str::from_utf8(entry)
        .ok()
        .and_then(|s| s.trim().parse::<IpAddr>().ok());
    (ip, single)
}

/// Whether the trusted client address is internal. Only a configured
/// `internal_address_config` makes any address internal (its CIDR ranges,
/// or Envoy's default ranges when it lists none): without one, no address
/// is, as in Envoy since 1.36 (before, the default ranges applied unless
/// the runtime feature `explicit_internal_address_config` was set; Envoy
/// 1.40, the differential tests' oracle, was checked to behave so).
pub(crate) fn is_internal(ip: IpAddr, configured: Option<&InternalAddresses>) -> bool {
    match configured {
        Some(c) if !c.cidr_ranges.is_empty() => c.cidr_ranges.iter().any(|r| r.contains(ip)),
        Some(_) => is_default_internal(ip),
        None => false,
    }
}

/// Envoy's `Network::Utility::isInternalAddress`: RFC 1918, `127.0.0.1`
/// (only that one), `fd00::/8` and `::1`. A v4-mapped IPv6 address is not
/// internal (Envoy compares it as IPv6).
fn is_default_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || v4 == Ipv4Addr::LOCALHOST,
        IpAddr::V6(v6) => v6.octets()[0] == 0xfd || v6.is_loopback(),
    }
}

#[cfg(test)]
mod tests {
    use strait_model::{ClientTrust, RouteConfig, RouteSource, tls::CidrRange};

    use super::*;

    /// Trust with `internal_address_config: {}`: Envoy's default ranges.
    fn defaults() -> ClientTrust {
        ClientTrust {
            internal_addresses: Some(InternalAddresses::default()),
            ..ClientTrust::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    fn peer(s: &str) -> SocketAddr {
        SocketAddr::new(ip(s), 40000)
    }

    fn hcm(use_remote_address: bool, client: ClientTrust) -> HttpConnectionManager {
        HttpConnectionManager {
            use_remote_address,
            client,
            ..HttpConnectionManager::new("x", RouteSource::Inline(RouteConfig::default()))
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn cidr(a: &str, len: u8) -> CidrRange {
        CidrRange {
            address: ip(a),
            prefix_len: len,
        }
    }

    #[test]
    fn default_internal_addresses_are_envoys() {
        let table = [
            ("10.1.2.3", true),
            ("172.16.0.1", true),
            ("172.31.255.255", true),
            ("172.32.0.1", false),
            ("192.168.0.1", true),
            ("127.0.0.1", true),
            // Envoy counts only the canonical loopback address.
            ("127.0.0.2", false),
            ("203.0.113.7", false),
            ("::1", true),
            ("fd00::1", true),
            // fc00::/8 is not assigned yet; Envoy does not count it.
            ("fc00::1", false),
            ("2001:db8::1", false),
            // Mapped addresses are IPv6 to Envoy.
            ("::ffff:10.1.1.1", false),
        ];
        let defaults = InternalAddresses::default();
        for (addr, want) in table {
            assert_eq!(is_internal(ip(addr), Some(&defaults)), want, "{addr}");
            // Without `internal_address_config`, nothing is internal.
            assert!(!is_internal(ip(addr), None), "unconfigured: {addr}");
        }
    }

    #[test]
    fn internal_address_config_replaces_the_defaults() {
        let ranges = InternalAddresses {
            unix_sockets: false,
            cidr_ranges: vec![cidr("203.0.113.0", 24), cidr("2001:db8::", 32)],
        };
        let c = Some(&ranges);
        assert!(is_internal(ip("203.0.113.7"), c));
        assert!(is_internal(ip("2001:db8::9"), c));
        assert!(!is_internal(ip("10.0.0.1"), c));
        assert!(!is_internal(ip("127.0.0.1"), c));
        // An empty config means the default ranges.
        let empty = InternalAddresses::default();
        assert!(is_internal(ip("10.0.0.1"), Some(&empty)));
        assert!(!is_internal(ip("203.0.113.7"), Some(&empty)));
    }

    #[test]
    fn use_remote_address_judges_the_peer_of_a_request_without_xff() {
        let h = hcm(true, defaults());
        let o = Origin::classify(&HeaderMap::new(), peer("10.0.0.5"), &h);
        assert_eq!(
            (o.client, o.internal, o.edge),
            (ip("10.0.0.5"), true, false)
        );
        let o = Origin::classify(&HeaderMap::new(), peer("203.0.113.7"), &h);
        assert_eq!(
            (o.client, o.internal, o.edge),
            (ip("203.0.113.7"), false, true)
        );
        // A dual-stack listener's view of an IPv4 peer.
        let o = Origin::classify(&HeaderMap::new(), peer("::ffff:10.0.0.5"), &h);
        assert_eq!((o.client, o.internal), (ip("10.0.0.5"), true));
        // Any XFF from the client makes the request external.
        let xff = headers(&[("x-forwarded-for", "10.0.0.9")]);
        let o = Origin::classify(&xff, peer("10.0.0.5"), &h);
        assert_eq!(
            (o.client, o.internal, o.edge),
            (ip("10.0.0.5"), false, true)
        );
        // Without `internal_address_config`, nothing is internal.
        let unconfigured = hcm(true, ClientTrust::default());
        let o = Origin::classify(&HeaderMap::new(), peer("127.0.0.1"), &unconfigured);
        assert!(o.edge);
    }

    #[test]
    fn trusted_hops_take_the_client_from_xff() {
        let trust = |hops| ClientTrust {
            xff_num_trusted_hops: hops,
            ..defaults()
        };
        let xff = headers(&[("x-forwarded-for", "198.51.100.1, 10.0.0.2")]);
        let o = Origin::classify(&xff, peer("10.0.0.3"), &hcm(true, trust(1)));
        assert_eq!((o.client, o.internal), (ip("10.0.0.2"), false));
        let o = Origin::classify(&xff, peer("10.0.0.3"), &hcm(true, trust(2)));
        assert_eq!(o.client, ip("198.51.100.1"));
        // Too few entries: the peer is the client.
        let o = Origin::classify(&xff, peer("10.0.0.3"), &hcm(true, trust(3)));
        assert_eq!(o.client, ip("10.0.0.3"));
        // Without use_remote_address, hops are skipped from the end and
        // such a request is never internal.
        let o = Origin::classify(&xff, peer("10.0.0.3"), &hcm(false, trust(1)));
        assert_eq!((o.client, o.internal), (ip("198.51.100.1"), false));
    }

    #[test]
    fn without_use_remote_address_a_single_internal_xff_entry_is_internal() {
        let h = hcm(false, defaults());
        let table: &[(&[(&str, &str)], bool)] = &[
            (&[("x-forwarded-for", "10.1.1.1")], true),
            (&[("x-forwarded-for", " 10.1.1.1 ")], true),
            (&[("x-forwarded-for", "fd00::1")], true),
            (&[("x-forwarded-for", "203.0.113.7")], false),
            (&[("x-forwarded-for", "203.0.113.7, 10.1.1.1")], false),
            // Two lines are one list.
            (
                &[
                    ("x-forwarded-for", "203.0.113.7"),
                    ("x-forwarded-for", "10.1.1.1"),
                ],
                false,
            ),
            (&[("x-forwarded-for", "10.1.1.1,")], false),
            (&[("x-forwarded-for", "not-an-ip")], false),
            (&[("x-forwarded-for", "10.1.1.1:80")], false),
            // No XFF: external even from a loopback peer.
            (&[], false),
        ];
        for (pairs, want) in table {
            let o = Origin::classify(&headers(pairs), peer("127.0.0.1"), &h);
            assert_eq!(o.internal, *want, "{pairs:?}");
            assert!(!o.edge, "never an edge request: {pairs:?}");
        }
        let xff = headers(&[("x-forwarded-for", "203.0.113.7, 10.1.1.1")]);
        let o = Origin::classify(&xff, peer("127.0.0.1"), &h);
        assert_eq!(o.client, ip("10.1.1.1"));
    }

    fn sent() -> HeaderMap {
        headers(&[
            ("x-envoy-internal", "true"),
            ("x-envoy-external-address", "1.2.3.4"),
            ("x-envoy-retry-on", "5xx"),
            ("x-envoy-ip-tags", "t"),
            ("x-envoy-decorator-operation", "op"),
            ("x-envoy-original-path", "/p"),
            ("x-request-id", "given"),
            ("x-envoy-attempt-count", "3"),
        ])
    }

    #[test]
    fn internal_requests_keep_their_headers_and_are_marked() {
        let h = hcm(true, defaults());
        let mut m = sent();
        let origin = Origin::classify(&HeaderMap::new(), peer("10.0.0.5"), &h);
        mutate(&mut m, &origin, peer("10.0.0.5"), &h, false);
        let v = |n: &str| m.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
        assert_eq!(v("x-envoy-internal").as_deref(), Some("true"));
        assert_eq!(v("x-envoy-external-address").as_deref(), Some("1.2.3.4"));
        assert_eq!(v("x-envoy-retry-on").as_deref(), Some("5xx"));
        assert_eq!(v("x-request-id").as_deref(), Some("given"));
        assert_eq!(v("x-forwarded-for").as_deref(), Some("10.0.0.5"));
        assert_eq!(v("x-forwarded-proto").as_deref(), Some("http"));
    }

    #[test]
    fn edge_requests_are_sanitized() {
        let h = hcm(true, defaults());
        let mut m = sent();
        m.insert("x-forwarded-for", HeaderValue::from_static("10.9.9.9"));
        let origin = Origin::classify(&m, peer("203.0.113.7"), &h);
        mutate(&mut m, &origin, peer("203.0.113.7"), &h, true);
        let v = |n: &str| m.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
        for gone in [
            "x-envoy-internal",
            "x-envoy-retry-on",
            "x-envoy-ip-tags",
            "x-envoy-decorator-operation",
            "x-envoy-original-path",
        ] {
            assert_eq!(v(gone), None, "{gone}");
        }
        assert_eq!(
            v("x-envoy-external-address").as_deref(),
            Some("203.0.113.7")
        );
        assert_eq!(
            v("x-forwarded-for").as_deref(),
            Some("10.9.9.9,203.0.113.7")
        );
        assert_eq!(v("x-forwarded-proto").as_deref(), Some("https"));
        assert_eq!(v("x-envoy-attempt-count").as_deref(), Some("3"));
        assert!(v("x-request-id").is_some_and(|id| id != "given"));
    }

    #[test]
    fn external_requests_behind_a_trusted_proxy_keep_edge_headers() {
        let h = hcm(false, defaults());
        let mut m = sent();
        m.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.7"));
        m.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let origin = Origin::classify(&m, peer("10.0.0.1"), &h);
        mutate(&mut m, &origin, peer("10.0.0.1"), &h, false);
        let v = |n: &str| m.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
        assert_eq!(v("x-envoy-internal"), None);
        assert_eq!(v("x-envoy-retry-on"), None);
        assert_eq!(v("x-envoy-ip-tags"), None);
        assert_eq!(v("x-envoy-decorator-operation").as_deref(), Some("op"));
        assert_eq!(v("x-envoy-original-path").as_deref(), Some("/p"));
        assert_eq!(v("x-envoy-external-address").as_deref(), Some("1.2.3.4"));
        assert_eq!(v("x-forwarded-for").as_deref(), Some("203.0.113.7"));
        assert_eq!(v("x-forwarded-proto").as_deref(), Some("https"));
        assert_eq!(v("x-request-id").as_deref(), Some("given"));
    }

    #[test]
    fn skip_xff_append_and_trusted_proto() {
        let h = hcm(
            true,
            ClientTrust {
                xff_num_trusted_hops: 1,
                skip_xff_append: true,
                internal_addresses: None,
            },
        );
        let mut m = headers(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-proto", "https"),
        ]);
        let origin = Origin::classify(&m, peer("10.0.0.1"), &h);
        mutate(&mut m, &origin, peer("10.0.0.1"), &h, false);
        let v = |n: &str| m.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
        assert_eq!(v("x-forwarded-for").as_deref(), Some("203.0.113.7"));
        // A trusted hop said how the client connected.
        assert_eq!(v("x-forwarded-proto").as_deref(), Some("https"));
        assert_eq!(
            v("x-envoy-external-address").as_deref(),
            Some("203.0.113.7")
        );
    }
}
