//! Replaying bytes a listener filter has already read.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `inner` with `prefix` read first. Listener filters read the start of a
/// connection to decide on a filter chain; this gives the chosen chain the
/// connection as if nothing had been read. The prefix is freed once
/// replayed.
#[derive(Debug)]
pub struct Rewind<IO> {
    prefix: Vec<u8>,
    pos: usize,
    inner: IO,
}

impl<IO> Rewind<IO> {
    pub fn new(prefix: Vec<u8>, inner: IO) -> Self {
        Rewind {
            prefix,
            pos: 0,
            inner,
        }
    }

    /// Queues `bytes` to be read before anything more from the
    /// connection, after what is still queued.
    pub fn replay(&mut self, mut bytes: Vec<u8>) {
        if self.pos == self.prefix.len() {
            self.prefix = bytes;
            self.pos = 0;
        } else {
            self.prefix.append(&mut bytes);
        }
    }

    /// The bytes not yet replayed, and the connection.
    pub fn into_parts(mut self) -> (Vec<u8>, IO) {
        let rest = self.prefix.split_off(self.pos);
        (rest, self.inner)
    }

    pub fn get_ref(&self) -> &IO {
        &self.inner
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Rewind<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.prefix.len() {
            let n = buf.remaining().min(this.prefix.len() - this.pos);
            buf.put_slice(&this.prefix[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Rewind<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn replays_prefix_then_queued_bytes_then_the_connection() {
        let mut r = Rewind::new(b"ab".to_vec(), &b"xyz"[..]);
        let mut one = [0u8; 1];
        r.read_exact(&mut one).await.expect("read");
        assert_eq!(&one, b"a");
        // Queued behind the unread rest of the prefix.
        r.replay(b"cd".to_vec());
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).await.expect("read");
        assert_eq!(rest, b"bcdxyz");
        // Once everything is replayed, a new replay starts afresh.
        let mut r = Rewind::new(Vec::new(), &b"z"[..]);
        r.replay(b"y".to_vec());
        let mut all = Vec::new();
        r.read_to_end(&mut all).await.expect("read");
        assert_eq!(all, b"yz");
    }
}
