//! One accepted connection, from the listener's accept to its terminal
//! network filter.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Instant, SystemTime},
};

use strait_access_log::Record;

use strait_model::NetworkFilter;
use strait_net::DrainWatch;
use strait_snapshot::{ChainRef, ConnectionInfo};
use strait_tls::{MaybeTls, PeerChain};
use tokio::net::TcpStream;

use crate::{
    context::Context,
    inspect::{self, Downstream},
    network::{CompiledNetworkFilter, NetworkConnection},
    read::{self, ConnectionView, Sessions, UpstreamFacts},
    stats::{ListenerStats, TcpStats},
    stream::BoxIo,
    tcp,
};

/// Serves one accepted connection of listener `name` to its end: the
/// global connection limit, listener filters, filter-chain match, transport
/// socket, then the chain's terminal filter. Every early return closes the
/// connection, as Envoy does.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    name: Arc<str>,
    shared: Arc<Context>,
    drain: DrainWatch,
    lstats: Arc<ListenerStats>,
) {
    let Some(slot) = GlobalSlot::take(&shared, &name) else {
        // Envoy closes a connection over the global limit at once.
        lstats.global_cx_overflow.increment(1);
        return;
    };
    lstats.cx_total.increment(1);
    lstats.cx_active.increment(1.0);
    serve_connection(stream, peer, name, Arc::clone(&shared), drain).await;
    lstats.cx_active.decrement(1.0);
    drop(slot);
}

/// A connection's place under the global downstream connection limit;
/// given back when dropped.
struct GlobalSlot<'a>(Option<&'a std::sync::atomic::AtomicU64>);

impl<'a> GlobalSlot<'a> {
    /// `None` when the limit is reached. Connections on listeners with
    /// `ignore_global_conn_limit` take no place (Envoy does not count them).
    fn take(shared: &'a Context, listener: &str) -> Option<GlobalSlot<'a>> {
        use std::sync::atomic::Ordering;
        let snapshot = shared.http.store.load();
        if snapshot
            .listener(listener)
            .is_some_and(|e| e.spec.ignore_global_conn_limit)
        {
            return Some(GlobalSlot(None));
        }
        let limit = snapshot.config().max_downstream_connections;
        let open = shared.downstream_cx.fetch_add(1, Ordering::AcqRel);
        let slot = GlobalSlot(Some(&shared.downstream_cx));
        match limit {
            Some(max) if open >= max => None,
            _ => Some(slot),
        }
    }
}

impl Drop for GlobalSlot<'_> {
    fn drop(&mut self) {
        if let Some(count) = self.0 {
            count.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
    }
}

/// Listener filters, filter-chain match, transport socket, then the chain's
/// terminal filter.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    name: Arc<str>,
    shared: Arc<Context>,
    drain: DrainWatch,
) {
    let _ = stream.set_nodelay(true);
    let started = Instant::now();
    let mut local = stream.local_addr().unwrap_or(peer);
    // The listener entry (not the whole snapshot) is held until the chain is
    // known; requests load the snapshot afresh.
    let snapshot = shared.http.store.load();
    let Some(mut entry) = snapshot.listener(&name).cloned() else {
        return;
    };
    let mut name = name;
    if entry.spec.use_original_dst || entry.spec.listener_filters.original_dst {
        // The destination the client meant, before iptables sent it here.
        local = strait_net::original_dst(&stream).unwrap_or(local);
    }
    if entry.spec.use_original_dst
        && let Some(target) = snapshot.listener_for_destination(local)
        && target.spec.name != *name
    {
        // Envoy's hand-off: the listener of the original destination takes
        // the connection, with its own listener filters and chains.
        name = Arc::from(target.spec.name.as_str());
        entry = Arc::clone(target);
    }
    drop(snapshot);
    let inspected = match inspect::run(
        stream,
        &entry.spec.listener_filters,
        &entry.listener_filters,
        local.port(),
    )
    .await
    {
        Ok(i) => i,
        Err(e) => {
            tracing::debug!(listener = %name, %peer, error = %e, "connection closed");
            return;
        }
    };
    let info = ConnectionInfo {
        local,
        peer,
        server_name: inspected.server_name.as_deref(),
        transport_protocol: inspected.transport_protocol(),
        application_protocols: &inspected.protocols,
    };
    let Some((index, (chain, compiled))) = entry
        .select(&info)
        .and_then(|i| entry.chain(i).map(|c| (i, c)))
    else {
        tracing::debug!(listener = %name, %peer, sni = ?info.server_name, "no matching filter chain");
        if !entry.spec.access_logs.is_empty() {
            // Envoy's listener access log: the connection never reached a
            // filter chain (flag `NR`, no response code).
            let mut r = Record::new(SystemTime::now() - started.elapsed(), local, peer);
            r.flags = "NR";
            r.details = Some("filter_chain_not_found");
            r.duration = Some(started.elapsed());
            r.server_name = info.server_name;
            strait_access_log::write_all(&shared.http.access_logs, &entry.spec.access_logs, &r);
        }
        return;
    };
    let mut local_uris: Option<Arc<[String]>> = None;
    let io: Downstream = match &compiled.tls {
        None => MaybeTls::Plain(inspected.stream),
        Some(tls) => {
            let tls = tls.clone();
            let handshake = tls.accept_identified(inspected.stream);
            match inspect::within(chain.handshake_timeout, handshake).await {
                Some(Ok((s, uris))) => {
                    local_uris = Some(uris);
                    MaybeTls::Tls(Box::new(s))
                }
                Some(Err(e)) => {
                    tracing::debug!(listener = %name, %peer, error = %e, "TLS handshake failed");
                    return;
                }
                None => {
                    tracing::debug!(listener = %name, %peer, "TLS handshake timed out");
                    return;
                }
            }
        }
    };
    // Once per connection: what RBAC and the HTTP filters read of the TLS
    // session (the server name asked for, the client's identities). As in
    // Envoy, the requested server name is the TLS inspector's: a handshake
    // without the inspector leaves it empty.
    let server_name: Option<Arc<str>> = inspected.server_name.as_deref().map(Arc::from);
    let peer_cert = match &io {
        MaybeTls::Tls(s) => PeerChain::of(s).map(|p| Arc::new(p.identity())),
        MaybeTls::Plain(_) => None,
    };
    let mut sessions: Option<Sessions> = None;
    let mut alpn: Option<Vec<u8>> = None;
    if !compiled.read_filters.is_empty() {
        alpn = match &io {
            MaybeTls::Tls(s) => s.get_ref().1.alpn_protocol().map(<[u8]>::to_vec),
            MaybeTls::Plain(_) => None,
        };
        let view = ConnectionView {
            listener: &name,
            peer,
            local,
            tls: io.is_tls(),
            server_name: server_name.as_deref(),
            peer_cert: peer_cert.as_deref(),
            alpn: alpn.as_deref(),
            local_uri_san: local_uris
                .as_deref()
                .and_then(|u| u.first())
                .map(String::as_str),
        };
        if let Some(delay) = read::judge(&compiled.read_filters, &view).await {
            tracing::debug!(listener = %name, %peer, "connection closed by a network filter");
            if let Some(delay) = delay {
                // Envoy's `delay_deny`: hold the connection, reading nothing.
                tokio::time::sleep(delay).await;
            }
            return;
        }
        sessions = Sessions::start(&compiled.read_filters, &view);
    }
    // Sessions of a terminal other than the TCP proxy hear only of the end.
    let mut sessions = SessionGuard(sessions);
    match &chain.terminal {
        NetworkFilter::Http(hcm) => {
            // Once per connection: this hop's XFCC element, when the
            // client presented a certificate.
            let xfcc = match (&io, &local_uris) {
                (MaybeTls::Tls(s), Some(uris)) => PeerChain::of(s)
                    .map(|p| strait_http::xfcc_element(hcm.client_cert_details, uris, &p)),
                _ => None,
            };
            let hcm = hcm.clone();
            let Some(chain) = ChainRef::new(Arc::clone(&entry), index) else {
                return;
            };
            let conn = strait_http::Connection {
                listener: name,
                chain,
                tls: io.is_tls(),
                local,
                peer,
                xfcc,
                server_name,
                peer_cert,
                local_uri_san: local_uri_san(local_uris.as_deref()),
            };
            strait_http::serve_connection(io, &hcm, conn, Arc::clone(&shared.http), drain).await;
        }
        NetworkFilter::Tcp(proxy) => {
            // Read filters on the downstream bytes (Istio's TCP metadata
            // exchange): the stream is boxed only when one is in the chain.
            let wrapping = compiled.read_filters.iter().any(|f| {
                f.downcast_ref::<read::CompiledReadFilter>()
                    .is_some_and(|f| f.wraps())
            });
            let io = if wrapping {
                let mut scratch = http::Extensions::new();
                let state = sessions.0.as_mut().map_or(&mut scratch, |s| &mut s.state);
                let mut boxed: BoxIo = Box::new(io);
                for f in &compiled.read_filters {
                    if let Some(f) = f.downcast_ref::<read::CompiledReadFilter>()
                        && f.wraps()
                    {
                        boxed = f.wrap(alpn.as_deref(), boxed, state);
                    }
                }
                tcp::Down::Wrapped(boxed)
            } else {
                tcp::Down::Direct(io)
            };
            let proxy = proxy.clone();
            drop(entry);
            let stats: Arc<TcpStats> = shared.tcp_stats(&proxy.stat_prefix);
            let facts = tcp::ConnFacts {
                started,
                local,
                peer,
                server_name: server_name.as_deref(),
                peer_uri_san: peer_cert
                    .as_deref()
                    .filter(|c| !c.uri_sans.is_empty())
                    .map(|c| c.uri_sans.join(",")),
                local_uri_san: local_uri_san(local_uris.as_deref()),
            };
            tcp::serve(
                io,
                &proxy,
                &shared,
                &stats,
                &facts,
                sessions.0.take().as_mut(),
            )
            .await;
        }
        NetworkFilter::Extension(_) => {
            // Built by its factory when the snapshot compiled.
            let Some(filter) = compiled
                .network
                .as_deref()
                .and_then(|f| f.downcast_ref::<CompiledNetworkFilter>())
                .map(Arc::clone)
            else {
                return;
            };
            drop(entry);
            let conn = NetworkConnection {
                tls: io.is_tls(),
                io: Box::new(io),
                listener: name,
                peer,
                local,
                store: Arc::clone(&shared.http.store),
                clusters: Arc::clone(&shared.http.registry),
                drain,
            };
            filter.serve(conn).await;
        }
    }
}

/// Closes the sessions still held on any way out.
struct SessionGuard(Option<Sessions>);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if let Some(mut s) = self.0.take() {
            s.close(&UpstreamFacts::default());
        }
    }
}

/// The URI SANs of the certificate this side presented, joined by `,` as
/// Envoy prints `%DOWNSTREAM_LOCAL_URI_SAN%`.
fn local_uri_san(uris: Option<&[String]>) -> Option<Arc<str>> {
    uris.filter(|u| !u.is_empty())
        .map(|u| Arc::from(u.join(",")))
}
