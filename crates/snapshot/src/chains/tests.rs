use super::*;

fn m() -> FilterChainMatch {
    FilterChainMatch::default()
}

fn conn<'a>(sni: Option<&'a str>, transport: &'a str, alpn: &'a [String]) -> ConnectionInfo<'a> {
    ConnectionInfo {
        local: "10.0.0.1:443".parse().expect("addr"),
        peer: "10.0.0.2:5555".parse().expect("addr"),
        server_name: sni,
        transport_protocol: transport,
        application_protocols: alpn,
    }
}

fn names(list: &[&str]) -> FilterChainMatch {
    FilterChainMatch {
        server_names: list.iter().map(|s| (*s).to_owned()).collect(),
        ..m()
    }
}

#[test]
fn server_names_exact_then_longest_wildcard_then_catch_all() {
    let chains = [
        names(&["*.example.com"]),
        names(&["api.example.com"]),
        names(&["*.eu.example.com"]),
        m(),
    ];
    let refs: Vec<&FilterChainMatch> = chains.iter().collect();
    let pick = |sni| select(&refs, &conn(sni, "tls", &[]));
    assert_eq!(pick(Some("api.example.com")), Some(1));
    assert_eq!(pick(Some("x.eu.example.com")), Some(2));
    assert_eq!(pick(Some("a.b.example.com")), Some(0));
    assert_eq!(pick(Some("example.com")), Some(3));
    assert_eq!(pick(Some("other.org")), Some(3));
    assert_eq!(pick(None), Some(3));
}

#[test]
fn no_catch_all_means_no_chain() {
    let chains = [names(&["a.example"])];
    let refs: Vec<&FilterChainMatch> = chains.iter().collect();
    assert_eq!(select(&refs, &conn(Some("b.example"), "tls", &[])), None);
}

#[test]
fn destination_port_is_judged_before_server_name() {
    // Envoy: a chain naming the port wins even though another names the SNI;
    // then, among port-matching chains, the SNI has no candidate → none.
    let chains = [
        FilterChainMatch {
            destination_port: Some(443),
            ..m()
        },
        names(&["a.example"]),
    ];
    let refs: Vec<&FilterChainMatch> = chains.iter().collect();
    assert_eq!(select(&refs, &conn(Some("a.example"), "tls", &[])), Some(0));
}

#[test]
fn transport_and_application_protocols() {
    let h2 = vec!["h2".to_owned(), "http/1.1".to_owned()];
    let chains = [
        FilterChainMatch {
            transport_protocol: "tls".into(),
            application_protocols: vec!["http/1.1".into()],
            ..m()
        },
        FilterChainMatch {
            transport_protocol: "tls".into(),
            application_protocols: vec!["h2".into()],
            ..m()
        },
        FilterChainMatch {
            transport_protocol: "raw_buffer".into(),
            ..m()
        },
    ];
    let refs: Vec<&FilterChainMatch> = chains.iter().collect();
    assert_eq!(select(&refs, &conn(None, "tls", &h2)), Some(1));
    assert_eq!(select(&refs, &conn(None, "tls", &h2[1..])), Some(0));
    assert_eq!(select(&refs, &conn(None, "raw_buffer", &[])), Some(2));
    assert_eq!(select(&refs, &conn(None, "tls", &[])), None);
}

#[test]
fn longest_prefix_and_source_rules() {
    let cidr = |s: &str, l| CidrRange {
        address: s.parse().expect("ip"),
        prefix_len: l,
    };
    let chains = [
        FilterChainMatch {
            prefix_ranges: vec![cidr("10.0.0.0", 8)],
            ..m()
        },
        FilterChainMatch {
            prefix_ranges: vec![cidr("10.0.0.0", 24)],
            source_ports: vec![1],
            ..m()
        },
        FilterChainMatch {
            prefix_ranges: vec![cidr("10.0.0.0", 24)],
            source_prefix_ranges: vec![cidr("10.0.0.2", 32)],
            ..m()
        },
    ];
    let refs: Vec<&FilterChainMatch> = chains.iter().collect();
    assert_eq!(select(&refs, &conn(None, "raw_buffer", &[])), Some(2));
    let refs2: Vec<&FilterChainMatch> = chains[..2].iter().collect();
    // /24 wins the destination step, then its source port does not match.
    assert_eq!(select(&refs2, &conn(None, "raw_buffer", &[])), None);
}
