//! What one downstream connection knows about itself, and its open streams
//! (for the connection manager's `idle_timeout`).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use http::HeaderValue;
use strait_snapshot::{ChainRef, ListenerEntry, Snapshot};
use strait_tls::PeerIdentity;

use crate::{shared::Shared, stats::HttpStats};

/// What the connection manager needs to know of a connection's set-up
/// (listener filters, filter-chain match, transport socket).
#[derive(Debug, Clone)]
pub struct Connection {
    /// The listener that accepted it (after any `use_original_dst`
    /// hand-off).
    pub listener: Arc<str>,
    /// The filter chain it matched, in the listener entry it was accepted
    /// on. Requests read the live copy of that chain while the live config
    /// has it, and the accepted one while the connection drains.
    pub chain: ChainRef,
    /// TLS-terminated (`x-forwarded-proto: https`).
    pub tls: bool,
    /// Its destination: the local address, or the original destination
    /// when the listener restores it.
    pub local: SocketAddr,
    pub peer: SocketAddr,
    /// This hop's `x-forwarded-client-cert` element ([`crate::xfcc_element`]),
    /// when the client presented a certificate.
    pub xfcc: Option<HeaderValue>,
    /// The TLS server name the client asked for (TLS inspector or
    /// handshake), for RBAC's `requested_server_name`.
    pub server_name: Option<Arc<str>>,
    /// The client certificate's identities, read once at the handshake,
    /// for RBAC's `authenticated` principal.
    pub peer_cert: Option<Arc<PeerIdentity>>,
    /// The URI SANs of the certificate this side presented, joined by `,`
    /// (the access log's `%DOWNSTREAM_LOCAL_URI_SAN%`).
    pub local_uri_san: Option<Arc<str>>,
}

impl Connection {
    /// A plaintext connection of chain `chain` of listener `listener` as
    /// the live config has it, from `peer` to `local`; `None` when the live
    /// config has no such listener or chain. For embedders that accept
    /// connections themselves.
    pub fn live(
        shared: &Shared,
        listener: &str,
        chain: usize,
        local: SocketAddr,
        peer: SocketAddr,
    ) -> Option<Self> {
        let snapshot = shared.store.load();
        let chain = ChainRef::new(Arc::clone(snapshot.listener(listener)?), chain)?;
        Some(Connection::new(Arc::from(listener), chain, local, peer))
    }

    /// A plaintext connection of `listener`'s chain `chain`, from `peer` to
    /// `local`.
    pub fn new(listener: Arc<str>, chain: ChainRef, local: SocketAddr, peer: SocketAddr) -> Self {
        Connection {
            listener,
            chain,
            tls: false,
            local,
            peer,
            xfcc: None,
            server_name: None,
            peer_cert: None,
            local_uri_san: None,
        }
    }
}

/// What one downstream connection knows about itself.
#[derive(Debug)]
pub(crate) struct ConnCtx {
    pub(crate) shared: Arc<Shared>,
    pub(crate) listener: Arc<str>,
    /// The filter chain the connection matched, as of the newest snapshot
    /// seen that still has it (see [`ConnCtx::chain_in`]).
    pub(crate) chain: ArcSwap<ChainRef>,
    /// The connection is TLS-terminated (`x-forwarded-proto: https`).
    pub(crate) tls: bool,
    /// This hop's `x-forwarded-client-cert` element, built at the
    /// handshake; `None` unless the client presented a certificate.
    pub(crate) xfcc: Option<HeaderValue>,
    pub(crate) server_name: Option<Arc<str>>,
    pub(crate) peer_cert: Option<Arc<PeerIdentity>>,
    pub(crate) local_uri_san: Option<Arc<str>>,
    pub(crate) peer: SocketAddr,
    /// The connection's destination: the local address it was accepted
    /// on, or its original destination when the listener restores it
    /// (`use_original_dst`, the `original_dst` listener filter). Its port
    /// decides `strip_matching_host_port`; ORIGINAL_DST clusters connect
    /// to it.
    pub(crate) local: SocketAddr,
    pub(crate) stats: Arc<HttpStats>,
    pub(crate) streams: StreamCount,
    /// Data filters keep for the connection's lifetime (Envoy's
    /// connection-lived filter state), such as per-connection rate
    /// limiters. Locked only by filters that use it, and then once per
    /// request of this one connection.
    pub(crate) filter_state: ConnectionState,
}

/// Typed values that live as long as the connection (see
/// [`crate::RequestInfo::connection_state`]).
pub type ConnectionState = std::sync::Mutex<http::Extensions>;

impl ConnCtx {
    pub(crate) fn new(shared: Arc<Shared>, conn: Connection, stats: Arc<HttpStats>) -> Self {
        let Connection {
            listener,
            chain,
            tls,
            local,
            peer,
            xfcc,
            server_name,
            peer_cert,
            local_uri_san,
        } = conn;
        ConnCtx {
            shared,
            listener,
            chain: ArcSwap::from_pointee(chain),
            tls,
            xfcc,
            server_name,
            peer_cert,
            local_uri_san,
            peer,
            local,
            stats,
            streams: StreamCount::new(),
            filter_state: ConnectionState::default(),
        }
    }
}

impl ConnCtx {
    /// The connection's listener and chain index in `snapshot`: the live
    /// copy of its chain while `snapshot` has it (so routes are the newest),
    /// else the copy in `held`, the entry it was accepted on, which it
    /// finishes on while it drains. A pointer comparison per request; a
    /// scan of the listener's chains once per listener change.
    pub(crate) fn chain_in<'a>(
        &self,
        snapshot: &'a Snapshot,
        held: &'a ChainRef,
    ) -> (&'a ListenerEntry, usize) {
        let Some(live) = snapshot.listener(&self.listener) else {
            return (held.entry(), held.index());
        };
        if Arc::ptr_eq(live, held.entry()) {
            return (live, held.index());
        }
        match held
            .follow(live)
            .and_then(|i| ChainRef::new(Arc::clone(live), i))
        {
            Some(moved) => {
                let index = moved.index();
                // Later requests find it at once, and the old entry is freed.
                self.chain.store(Arc::new(moved));
                (live, index)
            }
            None => (held.entry(), held.index()),
        }
    }
}

/// Open streams on one connection, for Envoy's connection `idle_timeout`
/// ("no active streams for this long").
#[derive(Debug)]
pub(crate) struct StreamCount {
    born: Instant,
    active: AtomicUsize,
    /// Milliseconds after `born` when the last stream ended.
    last_end_ms: AtomicU64,
}

impl StreamCount {
    pub(crate) fn new() -> Self {
        StreamCount {
            born: Instant::now(),
            active: AtomicUsize::new(0),
            last_end_ms: AtomicU64::new(0),
        }
    }

    /// How long the connection has had no stream; `None` while one is open.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        if self.active.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = Duration::from_millis(self.last_end_ms.load(Ordering::Acquire));
        Some(self.born.elapsed().saturating_sub(since))
    }
}

/// Counts a stream open from its request until its response body is done
/// (or dropped).
#[derive(Debug)]
pub struct StreamGuard(Arc<ConnCtx>);

impl StreamGuard {
    pub(crate) fn open(conn: &Arc<ConnCtx>) -> Self {
        conn.streams.active.fetch_add(1, Ordering::AcqRel);
        StreamGuard(Arc::clone(conn))
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let s = &self.0.streams;
        let now = u64::try_from(s.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        s.last_end_ms.store(now, Ordering::Release);
        s.active.fetch_sub(1, Ordering::AcqRel);
    }
}
