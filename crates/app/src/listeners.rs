//! The set of running listeners: binding on config change, accept loops on
//! every worker, and draining listeners that are removed or moved.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::Arc,
    time::Duration,
};

use strait_model::{Config, NetworkFilter};
use strait_net::{Drain, DrainWatch, NetError};
use strait_snapshot::ConnectionInfo;
use strait_tls::{MaybeTls, PeerChain};
use tokio::{net::TcpStream, runtime::Handle};

use crate::{
    extensions::{CompiledNetworkFilter, NetworkConnection},
    inspect::{self, Downstream},
    shared::Shared,
    stats::{ListenerStats, TcpStats},
    tcp,
};

#[derive(Debug, Default)]
pub(crate) struct ListenerSet {
    active: HashMap<String, Active>,
    /// Set by `/drain_listeners`: stopped listeners stay stopped whatever
    /// later configs say (Envoy's `stopListeners`).
    stopped: Stopped,
}

#[derive(Debug, Default)]
enum Stopped {
    #[default]
    None,
    Named(HashSet<String>),
    All,
}

impl Stopped {
    fn contains(&self, name: &str) -> bool {
        match self {
            Stopped::None => false,
            Stopped::Named(names) => names.contains(name),
            Stopped::All => true,
        }
    }
}

#[derive(Debug)]
struct Active {
    /// The address as configured (port 0 stays 0), to detect a move.
    configured: SocketAddr,
    stop: Drain,
}

/// Sockets bound for a new config, not yet serving. Dropping a plan closes
/// them, so a config that fails later leaves nothing behind.
#[derive(Debug)]
pub(crate) struct Plan {
    new: Vec<(String, SocketAddr, std::net::TcpListener)>,
    removed: Vec<String>,
}

impl ListenerSet {
    /// Binds sockets for listeners that are new or moved. Unchanged
    /// addresses keep their sockets (and open connections). Listeners with
    /// `bind_to_port: false` get no socket: only a `use_original_dst`
    /// listener's hand-off reaches them.
    pub(crate) fn plan(&self, config: &Config) -> Result<Plan, NetError> {
        let mut new = Vec::new();
        for l in config.listeners.iter().filter(|l| l.bind_to_port) {
            if self.stopped.contains(&l.name) {
                continue;
            }
            match self.active.get(&l.name) {
                Some(a) if a.configured == l.address => {}
                _ => new.push((l.name.clone(), l.address, strait_net::bind(l.address)?)),
            }
        }
        let removed = self
            .active
            .iter()
            .filter(|(name, a)| {
                config
                    .listeners
                    .iter()
                    .all(|l| &l.name != *name || !l.bind_to_port)
                    || new
                        .iter()
                        .any(|(n, addr, _)| n == *name && *addr != a.configured)
            })
            .map(|(n, _)| n.clone())
            .collect();
        Ok(Plan { new, removed })
    }

    /// Starts accepting on the plan's sockets and drains removed listeners.
    /// Call after the snapshot that names the new listeners is live.
    pub(crate) fn commit(&mut self, plan: Plan, shared: &Arc<Shared>, workers: &[Handle]) {
        for name in plan.removed {
            if let Some(old) = self.active.remove(&name) {
                old.stop.signal();
                shared.bound.remove(&name);
            }
        }
        for (name, configured, socket) in plan.new {
            let bound = socket.local_addr().unwrap_or(configured);
            let (stop, watch) = Drain::new();
            let name: Arc<str> = Arc::from(name.as_str());
            // Envoy names listener stats by the configured address (a port
            // 0 listener is `listener.127.0.0.1_0.*`), not the bound one.
            let lstats = Arc::new(shared.register(|| ListenerStats::new(&configured.to_string())));
            for worker in workers {
                match socket.try_clone() {
                    Ok(s) => {
                        worker.spawn(accept_loop(
                            s,
                            Arc::clone(&name),
                            Arc::clone(shared),
                            watch.clone(),
                            Arc::clone(&lstats),
                        ));
                    }
                    Err(e) => {
                        tracing::error!(listener = %name, error = %e, "cannot share listening socket")
                    }
                }
            }
            shared.bound.insert(&name, bound);
            tracing::info!(listener = %name, address = %bound, "listening");
            self.active
                .insert(name.to_string(), Active { configured, stop });
        }
    }

    /// `/drain_listeners`: stops accepting on the listeners named (every
    /// one when `None`), drains their connections, and keeps them stopped
    /// across later configs.
    pub(crate) fn stop_listeners(&mut self, only: Option<HashSet<String>>, shared: &Shared) {
        let stopped = match only {
            None => Stopped::All,
            Some(mut names) => {
                if let Stopped::Named(before) = &self.stopped {
                    names.extend(before.iter().cloned());
                }
                Stopped::Named(names)
            }
        };
        self.active.retain(|name, a| {
            let stop = stopped.contains(name);
            if stop {
                a.stop.signal();
                shared.bound.remove(name);
            }
            !stop
        });
        if !matches!(self.stopped, Stopped::All) {
            self.stopped = stopped;
        }
    }

    /// Stops accepting everywhere and asks every connection to finish.
    pub(crate) fn drain_all(&mut self) {
        for (_, a) in self.active.drain() {
            a.stop.signal();
        }
    }
}

async fn accept_loop(
    socket: std::net::TcpListener,
    name: Arc<str>,
    shared: Arc<Shared>,
    drain: DrainWatch,
    lstats: Arc<ListenerStats>,
) {
    let listener = match tokio::net::TcpListener::from_std(socket) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(listener = %name, error = %e, "cannot register listener");
            return;
        }
    };
    let stop = drain.clone().signaled();
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            res = listener.accept() => match res {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(listener = %name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => return,
        };
        tokio::spawn(connection(
            stream,
            peer,
            Arc::clone(&name),
            Arc::clone(&shared),
            drain.clone(),
            Arc::clone(&lstats),
        ));
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    name: Arc<str>,
    shared: Arc<Shared>,
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
    fn take(shared: &'a Shared, listener: &str) -> Option<GlobalSlot<'a>> {
        use std::sync::atomic::Ordering;
        let snapshot = shared.store.load();
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
/// terminal filter. Every early return closes the connection, as Envoy does.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    name: Arc<str>,
    shared: Arc<Shared>,
    drain: DrainWatch,
) {
    let _ = stream.set_nodelay(true);
    let mut local = stream.local_addr().unwrap_or(peer);
    // The listener entry (not the whole snapshot) is held until the chain is
    // known; requests load the snapshot afresh.
    let snapshot = shared.store.load();
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
    let inspected = match inspect::run(stream, &entry.spec.listener_filters, local.port()).await {
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
            drop(entry);
            let conn = strait_http::Connection {
                listener: name,
                chain: index,
                tls: io.is_tls(),
                local,
                peer,
                xfcc,
            };
            strait_http::serve_connection(io, &hcm, conn, Arc::clone(&shared.http), drain).await;
        }
        NetworkFilter::Tcp(proxy) => {
            let proxy = proxy.clone();
            drop(entry);
            let stats: Arc<TcpStats> = shared.tcp_stats(&proxy.stat_prefix);
            tcp::serve(io, &proxy, &shared, &stats, local).await;
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
                store: Arc::clone(&shared.store),
                clusters: Arc::clone(&shared.registry),
                drain,
            };
            filter.serve(conn).await;
        }
    }
}
