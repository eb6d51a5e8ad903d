//! A byte stream with Istio's TCP metadata exchange on it: the local
//! preamble is written before the first byte of data (or at once, with
//! [`Exchanged::new`]'s caller flushing), the peer's is read and removed
//! before the first byte of data is handed on. A peer that sends no
//! preamble (wrong magic) is passed through untouched, as Istio's filter
//! does, and its side is marked unknown.

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use strait_tls::Rewind;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::{
    peer::decode_struct,
    tcp_exchange::{MAX_PREAMBLE, Parsed, PeerSlot, parse},
};

/// `inner` with the exchange on it; the peer goes to `slot`.
pub struct Exchanged<S> {
    /// The connection; bytes read past the peer's preamble are replayed
    /// from here before more reads.
    inner: Rewind<S>,
    /// The local preamble still to write, from `written`.
    preamble: Arc<[u8]>,
    written: usize,
    /// The peer's first bytes while its preamble is incomplete; `None`
    /// once it is read (or found missing).
    head: Option<Vec<u8>>,
    slot: Arc<PeerSlot>,
    additional_labels: Arc<[String]>,
}

impl<S> Exchanged<S> {
    pub fn new(
        inner: S,
        preamble: Arc<[u8]>,
        slot: Arc<PeerSlot>,
        additional_labels: Arc<[String]>,
    ) -> Self {
        slot.expect();
        Exchanged {
            inner: Rewind::new(Vec::new(), inner),
            preamble,
            written: 0,
            head: Some(Vec::new()),
            slot,
            additional_labels,
        }
    }
}

impl<S: AsyncWrite + Unpin> Exchanged<S> {
    /// Writes what is left of the local preamble.
    fn poll_preamble(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.preamble.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.preamble[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Exchanged<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Istio writes its own preamble when it first reads, too: a
        // server-first protocol still gets the exchange. Reading does not
        // wait for it: two sides each writing a preamble larger than the
        // buffers between them would wait on each other.
        if this.written < this.preamble.len()
            && let Poll::Ready(Err(e)) = this.poll_preamble(cx)
        {
            return Poll::Ready(Err(e));
        }
        while let Some(head) = this.head.as_mut() {
            let mut chunk = [0u8; 2048];
            let mut rb = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            let got = rb.filled();
            if got.is_empty() {
                // The peer closed before a whole preamble: what came is data.
                this.slot.set(None);
                this.inner.replay(this.head.take().unwrap_or_default());
                break;
            }
            head.extend_from_slice(got);
            match parse(head) {
                Parsed::NeedMore if head.len() <= MAX_PREAMBLE + 8 => continue,
                Parsed::NeedMore | Parsed::Invalid => {
                    this.slot.set(None);
                    this.inner.replay(this.head.take().unwrap_or_default());
                }
                Parsed::Peer { len, metadata, .. } => {
                    let peer = decode_struct(&metadata, &this.additional_labels).map(Arc::new);
                    this.slot.set(peer);
                    let mut head = this.head.take().unwrap_or_default();
                    this.inner.replay(head.split_off(len));
                }
            }
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Exchanged<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_preamble(cx))?;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_preamble(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_preamble(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp_exchange::preamble;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// `NAME: a`, `WORKLOAD_NAME: w`.
    fn metadata() -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in [("NAME", "a"), ("WORKLOAD_NAME", "w")] {
            let mut value = vec![0x1a, v.len() as u8];
            value.extend_from_slice(v.as_bytes());
            let mut entry = vec![0x0a, k.len() as u8];
            entry.extend_from_slice(k.as_bytes());
            entry.push(0x12);
            entry.push(value.len() as u8);
            entry.extend_from_slice(&value);
            out.push(0x0a);
            out.push(entry.len() as u8);
            out.extend_from_slice(&entry);
        }
        out
    }

    #[tokio::test]
    async fn both_sides_exchange_and_data_passes_after() {
        let (a, b) = tokio::io::duplex(64);
        let (sa, sb) = (Arc::new(PeerSlot::default()), Arc::new(PeerSlot::default()));
        let ours: Arc<[u8]> = preamble(&metadata(), "id-a").into();
        let theirs: Arc<[u8]> = preamble(&[], "id-b").into();
        let mut a = Exchanged::new(a, ours, Arc::clone(&sa), Arc::from(vec![]));
        let mut b = Exchanged::new(b, theirs, Arc::clone(&sb), Arc::from(vec![]));
        let writer = tokio::spawn(async move {
            a.write_all(b"hello").await.expect("write");
            a.shutdown().await.expect("shutdown");
            let mut back = Vec::new();
            a.read_to_end(&mut back).await.expect("read");
            back
        });
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, b"hello");
        b.write_all(b"bye").await.expect("write");
        b.shutdown().await.expect("shutdown");
        assert_eq!(writer.await.expect("join"), b"bye");
        assert_eq!(sb.get().map(|w| w.workload_name.as_str()), Some("w"));
        // `b`'s metadata was empty: a peer, with nothing known.
        assert_eq!(sa.get().map(|w| w.name.as_str()), Some(""));
        assert!(sa.settled() && sb.settled());
    }

    #[tokio::test]
    async fn a_peer_without_the_exchange_is_passed_through() {
        let (a, mut b) = tokio::io::duplex(1024);
        let slot = Arc::new(PeerSlot::default());
        let ours: Arc<[u8]> = preamble(&metadata(), "id-a").into();
        let mut a = Exchanged::new(a, Arc::clone(&ours), Arc::clone(&slot), Arc::from(vec![]));
        assert!(!slot.settled());
        b.write_all(b"plain bytes").await.expect("write");
        b.shutdown().await.expect("shutdown");
        let mut got = Vec::new();
        a.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, b"plain bytes");
        assert!(slot.settled() && slot.get().is_none());
        // Our preamble went out before we read.
        let mut seen = vec![0u8; ours.len()];
        b.read_exact(&mut seen).await.expect("read");
        assert_eq!(&seen[..], &ours[..]);
    }
}
