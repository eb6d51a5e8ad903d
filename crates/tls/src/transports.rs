//! A cluster's compiled transport sockets: its `transport_socket` and one
//! per `transport_socket_matches` entry, chosen per host by endpoint
//! metadata.

use strait_model as model;

use crate::{ClientTls, TlsError};

/// Which of a cluster's transport sockets failed to compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportSource {
    /// The cluster's own `transport_socket`.
    Cluster,
    /// `transport_socket_matches[index]`, named `name`.
    Match { index: usize, name: String },
}

impl std::fmt::Display for TransportSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportSource::Cluster => f.write_str("transport_socket"),
            TransportSource::Match { index, name } => {
                write!(
                    f,
                    "transport_socket_matches[{index}] ({name}).transport_socket"
                )
            }
        }
    }
}

/// Compiled transport sockets of one cluster. `None` entries are
/// plaintext (`raw_buffer`). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ClusterTransports {
    default: Option<ClientTls>,
    matches: Vec<Option<ClientTls>>,
}

impl ClusterTransports {
    /// Compiles every TLS context of `cluster`. Blocks on file I/O: call
    /// when compiling a snapshot.
    pub fn compile(cluster: &model::Cluster) -> Result<Self, (TransportSource, TlsError)> {
        Self::compile_with(cluster, ClientTls::compile)
    }

    /// Like [`ClusterTransports::compile`], each context compiled by
    /// `compile` (which resolves SDS secrets by name, say).
    pub fn compile_with(
        cluster: &model::Cluster,
        compile: impl Fn(&model::tls::UpstreamTls) -> Result<ClientTls, TlsError>,
    ) -> Result<Self, (TransportSource, TlsError)> {
        let default = cluster
            .tls
            .as_ref()
            .map(&compile)
            .transpose()
            .map_err(|e| (TransportSource::Cluster, e))?;
        let mut matches = Vec::with_capacity(cluster.transport_socket_matches.len());
        for (index, m) in cluster.transport_socket_matches.iter().enumerate() {
            let tls = m.tls.as_ref().map(&compile).transpose().map_err(|e| {
                let source = TransportSource::Match {
                    index,
                    name: m.name.clone(),
                };
                (source, e)
            })?;
            matches.push(tls);
        }
        Ok(ClusterTransports { default, matches })
    }

    /// True when every transport socket is plaintext.
    pub fn is_plaintext(&self) -> bool {
        self.default.is_none() && self.matches.iter().all(Option::is_none)
    }

    /// The cluster's own `transport_socket` (`None`: plaintext).
    pub fn default_tls(&self) -> Option<&ClientTls> {
        self.default.as_ref()
    }

    /// The transport for a host whose endpoint chose `choice` (from
    /// [`model::Cluster::transport_match`]): that match's socket, or the
    /// cluster's own for `None` or an index this cluster does not have.
    pub fn get(&self, choice: Option<usize>) -> Option<&ClientTls> {
        match choice.and_then(|i| self.matches.get(i)) {
            Some(m) => m.as_ref(),
            None => self.default.as_ref(),
        }
    }
}
