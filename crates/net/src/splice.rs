//! The TCP proxy's data path: copy both ways until both sides are done.

use std::{
    io,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};

/// Bytes moved, readable while the splice runs (for stats and idle checks).
#[derive(Debug, Default)]
pub struct Counters {
    /// Downstream to upstream.
    pub sent: AtomicU64,
    /// Upstream to downstream.
    pub received: AtomicU64,
}

/// Copies `downstream` ↔ `upstream` until both directions have seen EOF or an
/// error. Half-close is kept: when one side shuts its write half, the other
/// side's write half is shut and the reverse direction keeps flowing. Ends
/// early when no byte moves for `idle` (Envoy tcp_proxy `idle_timeout`).
/// Returns (bytes sent upstream, bytes sent downstream).
pub async fn splice(
    downstream: TcpStream,
    upstream: TcpStream,
    idle: Option<Duration>,
    counters: Arc<Counters>,
) -> io::Result<(u64, u64)> {
    let (dr, dw) = downstream.into_split();
    let (ur, uw) = upstream.into_split();
    run(dr, dw, ur, uw, idle, counters).await
}

/// [`splice`] for any byte streams (a TLS-terminated downstream, a
/// listener-filter replay). Each side is split with `tokio::io::split`,
/// which costs a short critical section per read and write; plain TCP on
/// both sides should use [`splice`].
pub async fn splice_io<D, U>(
    downstream: D,
    upstream: U,
    idle: Option<Duration>,
    counters: Arc<Counters>,
) -> io::Result<(u64, u64)>
where
    D: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (dr, dw) = tokio::io::split(downstream);
    let (ur, uw) = tokio::io::split(upstream);
    run(dr, dw, ur, uw, idle, counters).await
}

async fn run<DR, DW, UR, UW>(
    mut dr: DR,
    mut dw: DW,
    mut ur: UR,
    mut uw: UW,
    idle: Option<Duration>,
    counters: Arc<Counters>,
) -> io::Result<(u64, u64)>
where
    DR: AsyncRead + Unpin,
    DW: AsyncWrite + Unpin,
    UR: AsyncRead + Unpin,
    UW: AsyncWrite + Unpin,
{
    let up = copy_half(&mut dr, &mut uw, &counters.sent);
    let down = copy_half(&mut ur, &mut dw, &counters.received);
    let both = async { tokio::try_join!(up, down) };
    match idle {
        None => {
            both.await?;
        }
        Some(idle) => {
            tokio::pin!(both);
            let mut last = total(&counters);
            loop {
                tokio::select! {
                    res = &mut both => { res?; break; }
                    () = tokio::time::sleep(idle) => {
                        let now = total(&counters);
                        if now == last {
                            return Err(io::Error::new(io::ErrorKind::TimedOut, "tcp proxy idle timeout"));
                        }
                        last = now;
                    }
                }
            }
        }
    };
    Ok((
        counters.sent.load(Ordering::Relaxed),
        counters.received.load(Ordering::Relaxed),
    ))
}

fn total(c: &Counters) -> u64 {
    c.sent.load(Ordering::Relaxed) + c.received.load(Ordering::Relaxed)
}

async fn copy_half<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    from: &mut R,
    to: &mut W,
    count: &AtomicU64,
) -> io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            // Propagate the half-close and keep the other direction open.
            let _ = to.shutdown().await;
            return Ok(());
        }
        to.write_all(&buf[..n]).await?;
        count.fetch_add(n as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn half_close_keeps_the_reverse_direction() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let up_addr = upstream.local_addr().expect("addr");
        let front = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let front_addr = front.local_addr().expect("addr");
        let counters = Arc::new(Counters::default());
        let c2 = Arc::clone(&counters);
        tokio::spawn(async move {
            let (down, _) = front.accept().await.expect("accept");
            let up = TcpStream::connect(up_addr).await.expect("connect");
            splice(down, up, Some(Duration::from_secs(5)), c2).await
        });
        // Upstream: read everything until EOF, then answer.
        let server = tokio::spawn(async move {
            let (mut s, _) = upstream.accept().await.expect("accept");
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.expect("read");
            s.write_all(b"got:").await.expect("write");
            s.write_all(&got).await.expect("write");
        });
        let mut client = TcpStream::connect(front_addr).await.expect("connect");
        client.write_all(b"hello").await.expect("write");
        client.shutdown().await.expect("half close");
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.expect("read");
        assert_eq!(answer, b"got:hello");
        server.await.expect("server");
        assert_eq!(counters.sent.load(Ordering::Relaxed), 5);
        assert_eq!(counters.received.load(Ordering::Relaxed), 9);
    }
}
