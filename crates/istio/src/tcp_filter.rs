//! Istio's TCP metadata exchange as Strait runs it: a chain's read filter
//! that wraps the downstream stream (inbound), and a cluster filter that
//! wraps the TCP proxy's upstream stream (outbound), each only on a
//! connection whose TLS handshake negotiated the config's `protocol`
//! (`istio-peer-exchange`). The peer learnt goes to the connection's
//! [`TcpPeers`], where the TCP stats session reads it.

use std::sync::Arc;

use strait_listener::{
    BoxIo, ConnectionSession, ConnectionView, ReadDecision, ReadFilter, ReadFilterFactory,
    UpstreamFilter,
};
use strait_model::{
    extension::Extension,
    istio::{TcpMetadataExchange, type_url},
};

use crate::{
    tcp_exchange::{PeerSlot, TcpPeers, preamble},
    tcp_stream::Exchanged,
};

/// A config made ready to run: the preamble encoded once.
#[derive(Debug)]
struct Prepared {
    protocol: Box<[u8]>,
    preamble: Arc<[u8]>,
    additional_labels: Arc<[String]>,
}

impl Prepared {
    fn new(c: &TcpMetadataExchange) -> Prepared {
        Prepared {
            protocol: c.protocol.as_bytes().into(),
            preamble: preamble(&c.metadata, &c.id).into(),
            additional_labels: c.additional_labels.clone().into(),
        }
    }

    /// `io` with the exchange on it when `alpn` is the config's protocol
    /// (Istio's filter does nothing otherwise, and the peer stays unknown).
    fn wrap(&self, alpn: Option<&[u8]>, io: BoxIo, slot: &Arc<PeerSlot>) -> BoxIo {
        if alpn != Some(&self.protocol[..]) {
            return io;
        }
        Box::new(Exchanged::new(
            io,
            Arc::clone(&self.preamble),
            Arc::clone(slot),
            Arc::clone(&self.additional_labels),
        ))
    }
}

fn config(config: &Extension) -> Result<&TcpMetadataExchange, String> {
    config
        .get::<TcpMetadataExchange>()
        .ok_or_else(|| "TCP metadata exchange config of the wrong type".to_owned())
}

/// The factory of the exchange: a read filter for a chain, a cluster filter
/// for a cluster.
#[derive(Debug, Default, Clone, Copy)]
pub struct TcpExchangeFactory;

impl ReadFilterFactory for TcpExchangeFactory {
    fn type_url(&self) -> &str {
        type_url::TCP_METADATA_EXCHANGE
    }

    fn create(&self, c: &Extension) -> Result<Arc<dyn ReadFilter>, String> {
        Ok(Arc::new(TcpExchangeFilter(Prepared::new(config(c)?))))
    }
}

impl UpstreamFilter for TcpExchangeFactory {
    fn type_url(&self) -> &str {
        type_url::TCP_METADATA_EXCHANGE
    }

    fn wrap(
        &self,
        c: &Extension,
        alpn: Option<&[u8]>,
        io: BoxIo,
        state: &mut http::Extensions,
    ) -> BoxIo {
        let Ok(c) = config(c) else {
            // Validated by the front end: only a composition bug lands
            // here, and the bytes pass unchanged.
            return io;
        };
        if alpn != Some(c.protocol.as_bytes()) {
            return io;
        }
        // Once per upstream connection that runs the exchange: the
        // cluster's config is model data, encoded here.
        let peers = TcpPeers::of(state);
        Prepared::new(c).wrap(alpn, io, &peers.upstream)
    }
}

/// The exchange in a filter chain's network filters (the downstream side).
#[derive(Debug)]
pub struct TcpExchangeFilter(Prepared);

impl ReadFilter for TcpExchangeFilter {
    fn on_connection<'a>(
        &'a self,
        _conn: &'a ConnectionView<'a>,
        _metadata: &'a mut strait_http::DynamicMetadata,
    ) -> ReadDecision<'a> {
        // Never stops a connection.
        ReadDecision::Continue
    }

    fn wants_session(&self) -> bool {
        // For the connection's filter state, where the peer is kept.
        true
    }

    fn session(
        &self,
        _conn: &ConnectionView<'_>,
        state: &mut http::Extensions,
    ) -> Option<Box<dyn ConnectionSession>> {
        TcpPeers::of(state);
        None
    }

    fn wraps(&self) -> bool {
        true
    }

    fn wrap(&self, alpn: Option<&[u8]>, io: BoxIo, state: &mut http::Extensions) -> BoxIo {
        let peers = TcpPeers::of(state);
        self.0.wrap(alpn, io, &peers.downstream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn mx() -> Extension {
        Extension::new(
            type_url::TCP_METADATA_EXCHANGE,
            TcpMetadataExchange {
                protocol: "istio-peer-exchange".into(),
                additional_labels: Vec::new(),
                id: "id-a".into(),
                metadata: Vec::new(),
            },
        )
    }

    /// Only a connection that negotiated the protocol gets the exchange:
    /// the preamble goes out before the data, and the slot expects a peer.
    #[tokio::test]
    async fn the_cluster_filter_runs_only_on_the_negotiated_protocol() {
        for (alpn, exchanged) in [
            (Some(&b"istio-peer-exchange"[..]), true),
            (Some(&b"istio"[..]), false),
            (None, false),
        ] {
            let (a, mut b) = tokio::io::duplex(4096);
            let mut state = http::Extensions::new();
            let mut io = TcpExchangeFactory.wrap(&mx(), alpn, Box::new(a), &mut state);
            let peers = TcpPeers::of(&mut state);
            assert_eq!(peers.upstream.settled(), !exchanged, "{alpn:?}");
            io.write_all(b"data").await.expect("write");
            io.shutdown().await.expect("shutdown");
            let mut got = Vec::new();
            b.read_to_end(&mut got).await.expect("read");
            let want_prefix = if exchanged {
                preamble(&[], "id-a")
            } else {
                Vec::new()
            };
            assert_eq!(&got[..want_prefix.len()], &want_prefix[..], "{alpn:?}");
            assert_eq!(&got[want_prefix.len()..], b"data", "{alpn:?}");
        }
    }
}
