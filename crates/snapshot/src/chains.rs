//! Filter-chain matching, the way Envoy does it: the candidates narrow by
//! destination port, destination IP, server name, transport protocol,
//! application protocols, source type, source IP and source port, in that
//! order. At each step the chains that name the connection's value most
//! specifically survive; chains that leave the criterion empty survive only
//! when none names it. An empty survivor set means no chain matches.

use std::net::{IpAddr, SocketAddr};

use strait_model::{FilterChainMatch, SourceType, tls::CidrRange};

/// What the listener knows about a connection when it picks a chain.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionInfo<'a> {
    /// The local (destination) address.
    pub local: SocketAddr,
    pub peer: SocketAddr,
    /// SNI from the TLS inspector, lower-cased.
    pub server_name: Option<&'a str>,
    /// `tls` when the TLS inspector saw a ClientHello, else `raw_buffer`.
    pub transport_protocol: &'a str,
    /// ALPN from the TLS inspector, or the HTTP inspector's protocol.
    pub application_protocols: &'a [String],
}

/// The index (into `matchers`) of the chain for `conn`, or `None`.
/// Allocates one small vector of candidate indices per call (per
/// connection, not per request).
pub(crate) fn select(matchers: &[&FilterChainMatch], conn: &ConnectionInfo<'_>) -> Option<usize> {
    let mut live: Vec<usize> = (0..matchers.len()).collect();
    narrow(&mut live, |i| {
        matchers[i]
            .destination_port
            .map(|p| u32::from(p == conn.local.port()))
    });
    narrow(&mut live, |i| {
        longest_prefix(&matchers[i].prefix_ranges, conn.local.ip())
    });
    narrow(&mut live, |i| {
        server_name_rank(&matchers[i].server_names, conn.server_name)
    });
    narrow(&mut live, |i| {
        let t = &matchers[i].transport_protocol;
        (!t.is_empty()).then(|| u32::from(t == conn.transport_protocol))
    });
    // Envoy looks the connection's protocols up in order; the first one any
    // chain names decides.
    let wanted = conn.application_protocols.iter().find(|p| {
        live.iter()
            .any(|i| matchers[*i].application_protocols.contains(p))
    });
    narrow(&mut live, |i| {
        let ps = &matchers[i].application_protocols;
        (!ps.is_empty()).then(|| u32::from(wanted.is_some_and(|w| ps.contains(w))))
    });
    narrow(&mut live, |i| match matchers[i].source_type {
        SourceType::Any => None,
        SourceType::SameIpOrLoopback => Some(u32::from(is_local(conn))),
        SourceType::External => Some(u32::from(!is_local(conn))),
    });
    narrow(&mut live, |i| {
        longest_prefix(&matchers[i].source_prefix_ranges, conn.peer.ip())
    });
    narrow(&mut live, |i| {
        let ps = &matchers[i].source_ports;
        (!ps.is_empty()).then(|| u32::from(ps.contains(&conn.peer.port())))
    });
    // Translation refuses identical matchers, so at most one survives; if
    // a tie remains anyway the first in config order wins.
    live.first().copied()
}

/// Keeps the candidates with the best rank. `rank(i)` is `None` when chain
/// `i` leaves the criterion empty, `Some(0)` when it names it but does not
/// match, and a higher number for a more specific match.
fn narrow(live: &mut Vec<usize>, rank: impl Fn(usize) -> Option<u32>) {
    let best = live
        .iter()
        .filter_map(|i| rank(*i))
        .filter(|r| *r > 0)
        .max();
    match best {
        Some(best) => live.retain(|i| rank(*i) == Some(best)),
        None => live.retain(|i| rank(*i).is_none()),
    }
}

/// 1 + the longest matching prefix length; `Some(0)` for no match.
fn longest_prefix(ranges: &[CidrRange], ip: IpAddr) -> Option<u32> {
    if ranges.is_empty() {
        return None;
    }
    Some(
        ranges
            .iter()
            .filter(|r| r.contains(ip))
            .map(|r| u32::from(r.prefix_len) + 1)
            .max()
            .unwrap_or(0),
    )
}

/// An exact name beats any wildcard; a longer wildcard suffix beats a
/// shorter one (`*.a.example.com` over `*.example.com`).
fn server_name_rank(names: &[String], sni: Option<&str>) -> Option<u32> {
    if names.is_empty() {
        return None;
    }
    let Some(sni) = sni else { return Some(0) };
    Some(
        names
            .iter()
            .map(|n| match n.strip_prefix("*.") {
                None if n == sni => u32::MAX,
                None => 0,
                Some(suffix) => {
                    let below = sni.len() > suffix.len()
                        && sni.ends_with(suffix)
                        && sni.as_bytes()[sni.len() - suffix.len() - 1] == b'.';
                    if below {
                        // Suffix length orders wildcards; +1 keeps it > 0.
                        u32::try_from(suffix.len()).unwrap_or(u32::MAX - 1) + 1
                    } else {
                        0
                    }
                }
            })
            .max()
            .unwrap_or(0),
    )
}

fn is_local(conn: &ConnectionInfo<'_>) -> bool {
    conn.peer.ip() == conn.local.ip() || conn.peer.ip().is_loopback()
}

#[cfg(test)]
mod tests;
