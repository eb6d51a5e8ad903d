//! HTTP/1.1 Upgrade (WebSocket) through the proxy, from a raw TCP client: the
//! handshake is proxied when `upgrade_configs` allows it, and the connection
//! then carries opaque bytes both ways; otherwise Envoy's 403.

use std::{net::SocketAddr, time::Duration};

use strait_test_support::{
    proxy::{TestProxy, http_config},
    upstream::http_echo,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::timeout,
};

const WEBSOCKET: &str = "          upgrade_configs: [{upgrade_type: websocket}]";
const WAIT: Duration = Duration::from_secs(10);

fn upgrade_request(token: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: {token}\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Sends `request` and reads the response head (up to the blank line),
/// leaving anything after it unread.
async fn handshake(addr: SocketAddr, request: &str) -> anyhow::Result<(TcpStream, String)> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = timeout(WAIT, s.read(&mut byte)).await??;
        anyhow::ensure!(
            n == 1,
            "connection closed mid-head: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    Ok((s, String::from_utf8(head)?.to_ascii_lowercase()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_tunnels_bytes_both_ways() -> anyhow::Result<()> {
    let up = http_echo("ws");
    let proxy = TestProxy::start(&http_config(up.addr, WEBSOCKET, ""), 1);
    let (mut s, head) =
        handshake(proxy.listener("listener"), &upgrade_request("websocket")).await?;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("\r\nupgrade: websocket\r\n"), "{head}");
    assert!(head.contains("\r\nconnection: upgrade\r\n"), "{head}");

    // Small messages, one at a time, each echoed before the next.
    for msg in [&b"ping"[..], b"\x81\x05hello", b"\x00\xffbinary\r\n\r\n"] {
        s.write_all(msg).await?;
        let mut back = vec![0u8; msg.len()];
        timeout(WAIT, s.read_exact(&mut back)).await??;
        assert_eq!(back, msg);
    }
    // A large burst, written while the echo streams back.
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let (mut rd, mut wr) = s.into_split();
    let to_send = big.clone();
    let writer = tokio::spawn(async move {
        wr.write_all(&to_send).await?;
        Ok::<_, std::io::Error>(wr)
    });
    let mut back = vec![0u8; big.len()];
    timeout(WAIT, rd.read_exact(&mut back)).await??;
    assert!(back == big, "1 MB echoed intact through the tunnel");
    // Closing our side ends the tunnel: the upstream sees EOF, closes, and
    // the proxy closes toward us.
    let mut wr = writer.await??;
    wr.shutdown().await?;
    let mut rest = Vec::new();
    timeout(WAIT, rd.read_to_end(&mut rest)).await??;
    assert!(rest.is_empty(), "nothing after the echo: {rest:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_is_refused_with_403_unless_configured() -> anyhow::Result<()> {
    let up = http_echo("ws");
    // No upgrade_configs at all.
    let proxy = TestProxy::start(&http_config(up.addr, "", ""), 1);
    let (_, head) = handshake(proxy.listener("listener"), &upgrade_request("websocket")).await?;
    assert!(head.starts_with("http/1.1 403"), "{head}");
    // WebSocket allowed, another upgrade type is still refused.
    let proxy = TestProxy::start(&http_config(up.addr, WEBSOCKET, ""), 1);
    let (_, head) = handshake(proxy.listener("listener"), &upgrade_request("foo-proto")).await?;
    assert!(head.starts_with("http/1.1 403"), "{head}");
    assert_eq!(
        up.requests(),
        0,
        "refused upgrades never reach the upstream"
    );
    Ok(())
}
