//! The set of running listeners: binding on config change, accept loops on
//! every worker (each accepted connection goes to `strait_listener::serve`),
//! and draining listeners that are removed or moved.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::Arc,
    time::Duration,
};

use strait_model::Config;
use strait_net::{Drain, DrainWatch, NetError};
use tokio::runtime::Handle;

use strait_listener::ListenerStats;

use crate::shared::Shared;

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
    /// Every listener that cannot be bound is reported, by name.
    pub(crate) fn plan(&self, config: &Config) -> Result<Plan, Vec<(String, NetError)>> {
        let mut new = Vec::new();
        let mut failed = Vec::new();
        for l in config.listeners.iter().filter(|l| l.bind_to_port) {
            if self.stopped.contains(&l.name) {
                continue;
            }
            match self.active.get(&l.name) {
                Some(a) if a.configured == l.address => {}
                _ => match strait_net::bind(l.address) {
                    Ok(socket) => new.push((l.name.clone(), l.address, socket)),
                    Err(e) => failed.push((l.name.clone(), e)),
                },
            }
        }
        if !failed.is_empty() {
            return Err(failed);
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
        tokio::spawn(strait_listener::serve(
            stream,
            peer,
            Arc::clone(&name),
            Arc::clone(&shared.conn),
            drain.clone(),
            Arc::clone(&lstats),
        ));
    }
}
