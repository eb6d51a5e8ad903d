//! Opening upstream connections: TCP (from the cluster's source address,
//! with its keepalive), then TLS when the host's transport socket says so,
//! then the HTTP handshake; all within `connect_timeout`.

use std::sync::Arc;

use strait_codec::{ClientConn, ConnectError, Protocol};
use strait_tls::{ApplicationProtocols, ClientTlsStream, DefaultAlpn, MaybeTls};
use tokio::net::TcpStream;

use crate::{
    cluster::Cluster, host::Host, lease::UpstreamError, outlier::Outcome, stats::ByteStats,
};

/// A TCP proxy's upstream connection: plaintext, or TLS per the cluster's
/// `UpstreamTlsContext`.
pub type UpstreamStream = MaybeTls<TcpStream, ClientTlsStream<TcpStream>>;

impl Cluster {
    /// TCP connect plus, when the host's transport socket is TLS, the TLS
    /// handshake (offering `alpn_override` instead of the context's ALPN
    /// when set), all within `connect_timeout` (Envoy counts both as
    /// connecting).
    async fn transport(
        &self,
        host: &Host,
        alpn: DefaultAlpn,
        alpn_override: Option<&ApplicationProtocols>,
    ) -> Result<UpstreamStream, ConnectError> {
        let timeout = self.connect_timeout();
        let attempt = async {
            // Copied out: the spec guard is not held across the connect.
            let (source, keepalive_opts) = {
                let spec = self.spec.load();
                (spec.source_address, spec.tcp_keepalive)
            };
            let tcp = strait_codec::client::connect_tcp_from(host.addr(), source, timeout).await?;
            if let Some(k) = keepalive_opts {
                keepalive(&tcp, k)?;
            }
            match host.transport() {
                None => Ok(MaybeTls::Plain(tcp)),
                Some(tls) => tls
                    .connect_offering(tcp, host.addr().ip(), alpn, alpn_override)
                    .await
                    .map(|s| MaybeTls::Tls(Box::new(s)))
                    .map_err(ConnectError::Tls),
            }
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .map_err(|_| ConnectError::Timeout)?
    }

    /// A new HTTP connection to `host`: transport, then the HTTP handshake.
    pub(crate) async fn open(
        &self,
        host: &Host,
        protocol: Protocol,
        bytes: Arc<ByteStats>,
        alpn_override: Option<&ApplicationProtocols>,
    ) -> Result<ClientConn, ConnectError> {
        let alpn = match protocol {
            Protocol::Http1 => DefaultAlpn::Http1,
            Protocol::Http2 => DefaultAlpn::Http2,
        };
        let transport = self.transport(host, alpn, alpn_override).await?;
        let (local, peer_san) = match &transport {
            MaybeTls::Plain(tcp) => (tcp.local_addr().ok(), None),
            MaybeTls::Tls(tls) => (
                tls.get_ref().0.local_addr().ok(),
                // Once per connection, not per request.
                strait_tls::PeerChain::of_upstream(tls)
                    .and_then(|p| p.uri_sans().next().map(Arc::<str>::from)),
            ),
        };
        let mut conn = match transport {
            MaybeTls::Plain(tcp) => ClientConn::handshake(tcp, protocol, bytes).await?,
            tls @ MaybeTls::Tls(_) => ClientConn::handshake(tls, protocol, bytes).await?,
        };
        conn.set_facts(strait_codec::ConnFacts {
            local,
            peer_uri_san: peer_san,
        });
        Ok(conn)
    }

    /// Opens a connection to `host` for the TCP proxy (TLS when the cluster
    /// has it), counted in the cluster's connection stats.
    pub async fn connect_tcp(&self, host: &Host) -> Result<UpstreamStream, UpstreamError> {
        match self.transport(host, DefaultAlpn::None, None).await {
            Ok(s) => {
                self.stats.cx_total.increment(1);
                Ok(s)
            }
            Err(e) => {
                self.stats.cx_connect_fail.increment(1);
                if matches!(e, ConnectError::Timeout) {
                    self.stats.cx_connect_timeout.increment(1);
                }
                self.report(host, Outcome::LocalFailure);
                Err(UpstreamError::Connect(e))
            }
        }
    }
}

/// Envoy's upstream `tcp_keepalive`: SO_KEEPALIVE, with the values the
/// config sets (the rest left to the OS).
fn keepalive(tcp: &TcpStream, k: strait_model::TcpKeepalive) -> std::io::Result<()> {
    let mut ka = socket2::TcpKeepalive::new();
    if let Some(t) = k.time {
        ka = ka.with_time(t);
    }
    if let Some(i) = k.interval {
        ka = ka.with_interval(i);
    }
    if let Some(n) = k.probes {
        ka = ka.with_retries(n);
    }
    socket2::SockRef::from(tcp).set_tcp_keepalive(&ka)
}

#[cfg(test)]
mod keepalive_tests {
    use std::time::Duration;

    use super::keepalive;

    #[tokio::test]
    async fn tcp_keepalive_options_reach_the_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let k = strait_model::TcpKeepalive {
            probes: Some(3),
            time: Some(Duration::from_secs(300)),
            interval: Some(Duration::from_secs(20)),
        };
        keepalive(&tcp, k).expect("set");
        let s = socket2::SockRef::from(&tcp);
        assert!(s.keepalive().expect("SO_KEEPALIVE"));
        assert_eq!(
            s.tcp_keepalive_time().expect("time"),
            Duration::from_secs(300)
        );
        assert_eq!(
            s.tcp_keepalive_interval().expect("interval"),
            Duration::from_secs(20)
        );
        assert_eq!(s.tcp_keepalive_retries().expect("probes"), 3);
    }
}
