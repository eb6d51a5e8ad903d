//! Listener filters: Envoy's `tls_inspector` and `http_inspector`. They read
//! the start of a connection (never more than a ClientHello's worth) to
//! learn what the filter-chain match needs; the bytes are replayed to the
//! chosen chain.

use std::time::Duration;

use strait_model::{ListenerFilters, predicate::ListenerFilterPredicate};
use strait_snapshot::CompiledFilters;
use strait_tls::{
    Rewind,
    hello::{self, MAX_CLIENT_HELLO, Peek},
};
use tokio::{io::AsyncReadExt, net::TcpStream, time::Instant};

use crate::registered::{CompiledListenerFilter, Inspection, ListenerFilter, Sniffed};

/// The HTTP/2 connection preface (prior knowledge, h2c).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// How much of a request line the HTTP inspector reads before deciding the
/// connection is not HTTP/1.x.
const MAX_REQUEST_LINE: usize = 8 * 1024;

/// What the listener filters learned, and the connection to continue with.
#[derive(Debug)]
pub(crate) struct Inspected {
    pub(crate) stream: Rewind<TcpStream>,
    /// The TLS inspector saw a ClientHello (transport protocol `tls`).
    pub(crate) tls: bool,
    pub(crate) server_name: Option<String>,
    /// ALPN from the ClientHello, or the HTTP inspector's protocol.
    pub(crate) protocols: Vec<String>,
}

impl Inspected {
    pub(crate) fn transport_protocol(&self) -> &'static str {
        if self.tls { "tls" } else { "raw_buffer" }
    }
}

/// Why a connection was closed by its listener filters.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InspectError {
    #[error("listener filters timed out")]
    Timeout,
    #[error("peer closed the connection during listener filters")]
    Closed,
    #[error("read failed during listener filters: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs the configured inspectors on `stream`, except those whose
/// `filter_disabled` matches `destination_port` (the original destination's
/// port when the listener restores it). Reads at most [`MAX_CLIENT_HELLO`]
/// bytes, bounded by `filters.timeout`; without inspectors it reads nothing.
/// `registered` are the listener's registered filters, compiled, in
/// `filters.registered` order; they run after the built-in inspectors.
pub(crate) async fn run(
    mut stream: TcpStream,
    filters: &ListenerFilters,
    registered: &[CompiledFilters],
    destination_port: u16,
) -> Result<Inspected, InspectError> {
    let (mut tls_pending, mut http_pending) = enabled(filters, destination_port);
    // The registered filters still asking for bytes (no allocation for a
    // listener without any).
    let mut others: Vec<&dyn ListenerFilter> = filters
        .registered
        .iter()
        .zip(registered)
        .filter(|(spec, _)| {
            !spec
                .disabled
                .as_ref()
                .is_some_and(|p| p.matches(destination_port))
        })
        .filter_map(|(_, c)| c.downcast_ref::<CompiledListenerFilter>())
        .map(|f| &**f)
        .collect();
    let mut buf = Vec::new();
    let mut tls = false;
    let mut server_name = None;
    let mut protocols = Vec::new();
    let deadline = filters.timeout.map(|t| Instant::now() + t);
    loop {
        if tls_pending {
            match hello::peek(&buf) {
                Peek::Incomplete => {}
                Peek::NotTls => tls_pending = false,
                Peek::ClientHello(info) => {
                    tls_pending = false;
                    tls = true;
                    server_name = info.server_name;
                    protocols = info.alpn;
                    // Envoy's HTTP inspector stands aside for TLS.
                    http_pending = false;
                }
            }
        }
        if http_pending && !tls_pending {
            match http_protocol(&buf) {
                Sniff::More => {}
                Sniff::NotHttp => http_pending = false,
                Sniff::Protocol(p) => {
                    http_pending = false;
                    protocols = vec![p.to_owned()];
                }
            }
        }
        if !tls_pending && !http_pending && !others.is_empty() {
            let mut found = Inspection {
                server_name: server_name.take(),
                protocols: std::mem::take(&mut protocols),
            };
            others.retain(|f| f.inspect(&buf, &mut found) == Sniffed::More);
            server_name = found.server_name;
            protocols = found.protocols;
        }
        if !tls_pending && !http_pending && others.is_empty() {
            break;
        }
        if buf.len() >= MAX_CLIENT_HELLO {
            break;
        }
        let mut chunk = [0u8; 4096];
        let want = chunk.len().min(MAX_CLIENT_HELLO - buf.len());
        let read = stream.read(&mut chunk[..want]);
        let n = match deadline {
            Some(d) => match tokio::time::timeout_at(d, read).await {
                Ok(r) => r?,
                Err(_) if filters.continue_on_timeout => break,
                Err(_) => return Err(InspectError::Timeout),
            },
            None => read.await?,
        };
        if n == 0 {
            return Err(InspectError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(Inspected {
        stream: Rewind::new(buf, stream),
        tls,
        server_name,
        protocols,
    })
}

/// Which inspectors run for a connection to `destination_port`: those
/// configured whose `filter_disabled` does not match it.
fn enabled(filters: &ListenerFilters, destination_port: u16) -> (bool, bool) {
    let on = |configured: bool, disabled: &Option<ListenerFilterPredicate>| {
        configured
            && !disabled
                .as_ref()
                .is_some_and(|p| p.matches(destination_port))
    };
    (
        on(filters.tls_inspector, &filters.tls_inspector_disabled),
        on(filters.http_inspector, &filters.http_inspector_disabled),
    )
}

/// The HTTP inspector's verdict so far.
#[derive(Debug, PartialEq, Eq)]
enum Sniff {
    More,
    NotHttp,
    Protocol(&'static str),
}

/// `h2c` for the HTTP/2 preface, `http/1.1` or `http/1.0` for a request
/// line ending in that version, else not HTTP.
fn http_protocol(buf: &[u8]) -> Sniff {
    if buf.starts_with(H2_PREFACE) {
        return Sniff::Protocol("h2c");
    }
    if buf.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(buf) {
        return Sniff::More;
    }
    // A method is a token: anything else in the first bytes is not HTTP/1.
    let method_end = buf.iter().position(|b| *b == b' ');
    let method = &buf[..method_end.unwrap_or(buf.len())];
    if !method
        .iter()
        .all(|b| b.is_ascii_alphabetic() || *b == b'-' || *b == b'_')
    {
        return Sniff::NotHttp;
    }
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= MAX_REQUEST_LINE {
            Sniff::NotHttp
        } else {
            Sniff::More
        };
    };
    let line = &buf[..end];
    if line.ends_with(b" HTTP/1.1") {
        Sniff::Protocol("http/1.1")
    } else if line.ends_with(b" HTTP/1.0") {
        Sniff::Protocol("http/1.0")
    } else {
        Sniff::NotHttp
    }
}

/// `f`, bounded by `limit` when there is one; `None` when time ran out.
pub(crate) async fn within<F: std::future::Future>(
    limit: Option<Duration>,
    f: F,
) -> Option<F::Output> {
    match limit {
        Some(t) => tokio::time::timeout(t, f).await.ok(),
        None => Some(f.await),
    }
}

/// A downstream connection after its listener filters and transport
/// socket: the replayed bytes first, TLS-terminated or not.
pub(crate) type Downstream =
    strait_tls::MaybeTls<Rewind<TcpStream>, strait_tls::ServerTlsStream<Rewind<TcpStream>>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_inspector_detects_versions() {
        assert_eq!(
            http_protocol(b"GET / HTTP/1.1\r\nHost: a\r\n"),
            Sniff::Protocol("http/1.1")
        );
        assert_eq!(
            http_protocol(b"GET / HTTP/1.0\r\n"),
            Sniff::Protocol("http/1.0")
        );
        assert_eq!(http_protocol(H2_PREFACE), Sniff::Protocol("h2c"));
        assert_eq!(http_protocol(b"PRI * HT"), Sniff::More);
        assert_eq!(http_protocol(b"GET /long"), Sniff::More);
        assert_eq!(http_protocol(b"\x16\x03\x01"), Sniff::NotHttp);
        assert_eq!(http_protocol(b"GET / SPDY/3\r\n"), Sniff::NotHttp);
    }

    #[test]
    fn filter_disabled_skips_an_inspector_by_destination_port() {
        let filters = ListenerFilters {
            tls_inspector: true,
            http_inspector: true,
            tls_inspector_disabled: Some(ListenerFilterPredicate::DestinationPorts(80..81)),
            http_inspector_disabled: Some(ListenerFilterPredicate::Not(Box::new(
                ListenerFilterPredicate::DestinationPorts(80..81),
            ))),
            ..ListenerFilters::default()
        };
        assert_eq!(enabled(&filters, 80), (false, true));
        assert_eq!(enabled(&filters, 443), (true, false));
        // A predicate on a filter that is not configured turns nothing on.
        let none = ListenerFilters {
            tls_inspector_disabled: Some(ListenerFilterPredicate::Not(Box::new(
                ListenerFilterPredicate::Any,
            ))),
            ..ListenerFilters::default()
        };
        assert_eq!(enabled(&none, 80), (false, false));
    }
}
