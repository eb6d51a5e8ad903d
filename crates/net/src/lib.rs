//! Sockets and byte streams, below any protocol.
//!
//! Owns: binding listening sockets ([`bind`]), the table of bound listener
//! addresses ([`BoundListeners`], which `/listeners` shows and port-0 tests
//! read), the original destination of a redirected connection
//! ([`original_dst`]), the drain signal ([`Drain`]) and the TCP proxy's bidirectional copy
//! with half-close and idle timeout ([`splice`]).
//! Must not depend on config, HTTP or upstream crates.

mod backoff;
mod drain;
mod splice;

use std::{collections::BTreeMap, io, net::SocketAddr, sync::Arc};

use arc_swap::ArcSwap;
use socket2::{Domain, Protocol, Socket, Type};

pub use backoff::{BASE_BACKOFF, MAX_BACKOFF, reconnect_backoff};
pub use drain::{Drain, DrainWatch};
pub use splice::{Counters, splice, splice_io};

/// Errors from socket set-up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// The destination a connection had before a NAT `REDIRECT` sent it here
/// (`SO_ORIGINAL_DST`, IPv4 and IPv6), else its local address: a socket that
/// was not redirected has no original destination, and Envoy's
/// `original_dst` filter then keeps the local address too. One system call
/// per connection, on the accepting worker; never blocks.
pub fn original_dst(stream: &tokio::net::TcpStream) -> io::Result<SocketAddr> {
    let local = stream.local_addr()?;
    let sock = socket2::SockRef::from(stream);
    let original = if local.is_ipv4() {
        sock.original_dst_v4()
    } else {
        sock.original_dst_v6()
    };
    Ok(original.ok().and_then(|a| a.as_socket()).unwrap_or(local))
}

/// Binds a non-blocking listening socket with `SO_REUSEADDR` (so a restart or
/// a re-bind after a config change is not refused while old connections sit in
/// TIME_WAIT). Each worker accepts on a clone of the returned socket.
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, NetError> {
    let mk = || -> io::Result<std::net::TcpListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        Ok(socket.into())
    };
    mk().map_err(|source| NetError::Bind { addr, source })
}

/// Listener name → the address actually bound (port 0 resolved). Written by
/// the listener set-up path, read by admin; lock-free for readers.
#[derive(Debug, Default)]
pub struct BoundListeners {
    map: ArcSwap<BTreeMap<String, SocketAddr>>,
}

impl BoundListeners {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn get(&self, name: &str) -> Option<SocketAddr> {
        self.map.load().get(name).copied()
    }

    pub fn all(&self) -> Vec<(String, SocketAddr)> {
        self.map
            .load()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    pub fn insert(&self, name: &str, addr: SocketAddr) {
        self.map.rcu(|m| {
            let mut m = BTreeMap::clone(m);
            m.insert(name.to_owned(), addr);
            m
        });
    }

    pub fn remove(&self, name: &str) {
        self.map.rcu(|m| {
            let mut m = BTreeMap::clone(m);
            m.remove(name);
            m
        });
    }
}

#[cfg(test)]
mod tests {
    use super::original_dst;

    /// Without a NAT redirect there is no original destination: the local
    /// address stands in, as in Envoy. (The redirected case needs iptables;
    /// `tests/istio_dumps.rs` covers it in a network namespace.)
    #[tokio::test]
    async fn a_connection_that_was_not_redirected_keeps_its_local_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let _client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        assert_eq!(original_dst(&server).expect("original dst"), addr);
    }
}
