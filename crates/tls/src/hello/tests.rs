use std::sync::Arc;

use super::*;

/// The bytes a real rustls client sends first.
fn client_hello(sni: &str, alpn: &[&str]) -> Vec<u8> {
    let provider = Arc::new(crate::provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    let name = rustls::pki_types::ServerName::try_from(sni.to_owned()).expect("name");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("conn");
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).expect("write");
    }
    out
}

#[test]
fn real_client_hello_gives_sni_and_alpn() {
    let hello = client_hello("Reviews.Default.svc", &["h2", "http/1.1"]);
    assert_eq!(
        peek(&hello),
        Peek::ClientHello(HelloInfo {
            server_name: Some("reviews.default.svc".into()),
            alpn: vec!["h2".into(), "http/1.1".into()],
        })
    );
}

#[test]
fn every_prefix_is_incomplete() {
    let hello = client_hello("a.example", &["istio-peer-exchange", "istio"]);
    for n in 0..hello.len() {
        assert_eq!(peek(&hello[..n]), Peek::Incomplete, "prefix {n}");
    }
}

#[test]
fn hello_split_over_records_is_reassembled() {
    let hello = client_hello("split.example", &["h2"]);
    let body = &hello[5..];
    let (a, b) = body.split_at(body.len() / 3);
    let mut two = Vec::new();
    for part in [a, b] {
        two.extend_from_slice(&[22, 3, 1]);
        two.extend_from_slice(&u16::try_from(part.len()).expect("len").to_be_bytes());
        two.extend_from_slice(part);
    }
    let Peek::ClientHello(info) = peek(&two) else {
        panic!("not parsed: {:?}", peek(&two));
    };
    assert_eq!(info.server_name.as_deref(), Some("split.example"));
}

#[test]
fn garbage_and_plaintext_are_not_tls() {
    assert_eq!(peek(b"GET / HTTP/1.1\r\n"), Peek::NotTls);
    assert_eq!(peek(b"PRI * HTTP/2.0\r\n"), Peek::NotTls);
    assert_eq!(peek(&[0x16, 0x07]), Peek::NotTls);
    // A handshake record that is not a ClientHello.
    assert_eq!(peek(&[22, 3, 1, 0, 4, 2, 0, 0, 0]), Peek::NotTls);
    // A ClientHello whose declared length runs past its vectors.
    assert_eq!(peek(&[22, 3, 1, 0, 6, 1, 0, 0, 2, 3, 3]), Peek::NotTls);
    // An oversized declared hello is refused without waiting for it.
    assert_eq!(
        peek(&[22, 3, 1, 0x40, 0, 1, 0xff, 0xff, 0xff]),
        Peek::NotTls
    );
}

#[test]
fn arbitrary_bytes_never_panic() {
    let hello = client_hello("fuzz.example", &["h2"]);
    let mut state: u64 = 0x1234_5678;
    for _ in 0..20_000 {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        let mut bytes = hello.clone();
        let i = (state >> 33) as usize % bytes.len();
        bytes[i] = (state >> 20) as u8;
        let cut = (state >> 40) as usize % (bytes.len() + 1);
        let _ = peek(&bytes[..cut]);
    }
}
