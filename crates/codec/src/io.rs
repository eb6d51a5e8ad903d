//! Byte counting on a connection, for Envoy's `*_cx_rx_bytes_total` and
//! `*_cx_tx_bytes_total` stats.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Receives byte counts as they move. Called once per read or write
/// syscall, so implementations should be an atomic add.
pub trait ByteCounter: Send + Sync + 'static {
    fn received(&self, bytes: u64);
    fn sent(&self, bytes: u64);
}

impl<T: ByteCounter> ByteCounter for std::sync::Arc<T> {
    fn received(&self, bytes: u64) {
        (**self).received(bytes);
    }
    fn sent(&self, bytes: u64) {
        (**self).sent(bytes);
    }
}

/// A stream that reports every byte read and written to `C`.
#[derive(Debug)]
pub struct Counted<S, C> {
    inner: S,
    counter: C,
}

impl<S, C> Counted<S, C> {
    pub fn new(inner: S, counter: C) -> Self {
        Counted { inner, counter }
    }
}

impl<S: AsyncRead + Unpin, C: ByteCounter + Unpin> AsyncRead for Counted<S, C> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.counter.received(n as u64);
        }
        res
    }
}

impl<S: AsyncWrite + Unpin, C: ByteCounter + Unpin> AsyncWrite for Counted<S, C> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = res {
            self.counter.sent(n as u64);
        }
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = res {
            self.counter.sent(n as u64);
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[derive(Default)]
    struct Tally(AtomicU64, AtomicU64);

    impl ByteCounter for Tally {
        fn received(&self, n: u64) {
            self.0.fetch_add(n, Ordering::Relaxed);
        }
        fn sent(&self, n: u64) {
            self.1.fetch_add(n, Ordering::Relaxed);
        }
    }

    #[tokio::test]
    async fn counts_both_directions() {
        let (a, mut b) = tokio::io::duplex(64);
        let tally = Arc::new(Tally::default());
        let mut counted = Counted::new(a, Arc::clone(&tally));
        counted.write_all(b"hello").await.expect("write");
        b.write_all(b"abc").await.expect("write");
        let mut buf = [0u8; 3];
        counted.read_exact(&mut buf).await.expect("read");
        assert_eq!(tally.0.load(Ordering::Relaxed), 3);
        assert_eq!(tally.1.load(Ordering::Relaxed), 5);
    }
}
