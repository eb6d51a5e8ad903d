//! Network filters that sit on a TCP proxy connection's bytes: a chain's
//! read filter on the downstream stream ([`crate::ReadFilter::wrap`]) and
//! a cluster's filter (Envoy's `Cluster.filters`) on the upstream stream
//! ([`UpstreamFilter`]). Istio's TCP metadata exchange is both. A
//! connection without such a filter is spliced as before, with nothing
//! boxed.

use strait_model::extension::Extension;
use tokio::io::{AsyncRead, AsyncWrite};

/// A connection's byte stream, as a filter that wraps it sees it.
pub trait StreamIo: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> StreamIo for T {}

/// A byte stream a filter wrapped.
pub type BoxIo = Box<dyn StreamIo>;

/// A cluster filter on the TCP proxy's upstream connections, by the type
/// URL of its config. Its configs are validated by the front end and live
/// in the cluster's model (`Cluster::filters`); the proxy calls
/// [`UpstreamFilter::wrap`] once per connection, off the data path.
pub trait UpstreamFilter: Send + Sync + 'static {
    /// The type URL of the filter's config.
    fn type_url(&self) -> &str;

    /// Puts the filter `config` configures on `io`, an upstream connection
    /// that negotiated `alpn` (`None` on plaintext); `io` is handed back as
    /// it is when the filter does not apply. `state` is the connection's
    /// filter state, which the chain's sessions read.
    fn wrap(
        &self,
        config: &Extension,
        alpn: Option<&[u8]>,
        io: BoxIo,
        state: &mut http::Extensions,
    ) -> BoxIo;
}
