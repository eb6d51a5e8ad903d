//! Istio's TCP metadata exchange (`envoy.tcp.metadataexchange.config.MetadataExchange`):
//! the wire format, and where a connection keeps the peers it learns.
//!
//! On a connection whose TLS handshake negotiated ALPN
//! `istio-peer-exchange`, each side sends, before its first byte of data,
//! a preamble:
//!
//! ```text
//! magic      u32 big-endian  0x3D230467
//! length     u32 big-endian  the length of what follows
//! data       google.protobuf.Any {
//!              type_url = "type.googleapis.com/google.protobuf.Struct",
//!              value    = Struct {
//!                "x-envoy-peer-metadata":    struct_value (the node metadata)
//!                "x-envoy-peer-metadata-id": string_value (the node id)
//!              } }
//! ```
//!
//! and reads (and removes) the peer's before its first byte of data.
//! The `Struct`'s entries are written in key order, as Istio's
//! deterministic serialisation does.

use std::sync::{Arc, OnceLock};

use crate::peer::Workload;

/// The preamble's magic number.
pub const MAGIC: u32 = 0x3D23_0467;
/// The `Any`'s type URL.
const STRUCT_TYPE_URL: &str = "type.googleapis.com/google.protobuf.Struct";
/// The outer `Struct`'s keys.
const METADATA_KEY: &str = "x-envoy-peer-metadata";
const METADATA_ID_KEY: &str = "x-envoy-peer-metadata-id";
/// A peer's preamble longer than this is refused (Istio has no bound; a
/// node's metadata is a few kilobytes).
pub const MAX_PREAMBLE: usize = 64 * 1024;

/// The preamble a side sends: `metadata` is the node metadata as a
/// protobuf-encoded `google.protobuf.Struct`, `id` the node id.
pub fn preamble(metadata: &[u8], id: &str) -> Vec<u8> {
    // The outer Struct: one map entry per key, in key order.
    let mut outer = Vec::new();
    // `Value.struct_value = 5`.
    let mut value = Vec::new();
    put_bytes(&mut value, 5, metadata);
    put_entry(&mut outer, METADATA_KEY, &value);
    if !id.is_empty() {
        // `Value.string_value = 3`.
        let mut value = Vec::new();
        put_bytes(&mut value, 3, id.as_bytes());
        put_entry(&mut outer, METADATA_ID_KEY, &value);
    }
    let mut any = Vec::new();
    put_bytes(&mut any, 1, STRUCT_TYPE_URL.as_bytes());
    put_bytes(&mut any, 2, &outer);
    let mut out = Vec::with_capacity(8 + any.len());
    out.extend_from_slice(&MAGIC.to_be_bytes());
    out.extend_from_slice(&u32::try_from(any.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&any);
    out
}

/// What the first bytes from a peer are.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Too few bytes yet.
    NeedMore,
    /// Not a preamble (wrong magic, too long, or an undecodable `Any`):
    /// Istio then treats the peer as unknown and passes the bytes on.
    Invalid,
    /// A preamble of `len` bytes: the peer's node metadata (a `Struct`'s
    /// bytes) and id.
    Peer {
        len: usize,
        metadata: Vec<u8>,
        id: String,
    },
}

/// Reads a preamble from the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    if buf.len() < 8 {
        return Parsed::NeedMore;
    }
    let word = |i: usize| u32::from_be_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
    if word(0) != MAGIC {
        return Parsed::Invalid;
    }
    let len = word(4) as usize;
    if len > MAX_PREAMBLE {
        return Parsed::Invalid;
    }
    let Some(data) = buf.get(8..8 + len) else {
        return Parsed::NeedMore;
    };
    let Some((metadata, id)) = read_any(data) else {
        return Parsed::Invalid;
    };
    Parsed::Peer {
        len: 8 + len,
        metadata,
        id,
    }
}

/// The `Any`'s `Struct`: the metadata struct's bytes and the id.
fn read_any(mut buf: &[u8]) -> Option<(Vec<u8>, String)> {
    let (mut type_url, mut value): (&[u8], &[u8]) = (b"", b"");
    while !buf.is_empty() {
        let (f, w) = pb::key(&mut buf)?;
        match (f, w) {
            (1, 2) => type_url = pb::delimited(&mut buf)?,
            (2, 2) => value = pb::delimited(&mut buf)?,
            _ => pb::skip(&mut buf, w)?,
        }
    }
    if type_url != STRUCT_TYPE_URL.as_bytes() {
        return None;
    }
    let (mut metadata, mut id) = (Vec::new(), String::new());
    for (k, v) in pb::struct_entries(value)? {
        match (k, v) {
            (METADATA_KEY, pb::Field::Struct(s)) => metadata = s.to_vec(),
            (METADATA_ID_KEY, pb::Field::Text(t)) => id = t.to_owned(),
            _ => {}
        }
    }
    Some((metadata, id))
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field.
fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, (field << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A `Struct` map entry (`fields = 1`: `key = 1`, `value = 2`).
fn put_entry(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let mut entry = Vec::with_capacity(key.len() + value.len() + 4);
    put_bytes(&mut entry, 1, key.as_bytes());
    put_bytes(&mut entry, 2, value);
    put_bytes(out, 1, &entry);
}

/// The protobuf reading the exchange needs, shared with [`crate::peer`].
pub(crate) mod pb {
    pub(crate) use crate::peer::{Field, delimited, entries as struct_entries, key, skip};
}

/// Where one side's peer is kept on a connection.
#[derive(Debug, Default)]
pub struct PeerSlot {
    /// Set when an exchange started on this side (ALPN negotiated).
    expected: std::sync::atomic::AtomicBool,
    /// The peer, or `None` when the exchange failed.
    value: OnceLock<Option<Arc<Workload>>>,
    settled: tokio::sync::Notify,
}

impl PeerSlot {
    /// An exchange started: the peer is to come.
    pub fn expect(&self) {
        self.expected
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// The exchange ended: the peer, or `None` when it did not speak it.
    pub fn set(&self, peer: Option<Arc<Workload>>) {
        let _ = self.value.set(peer);
        self.settled.notify_waiters();
    }

    /// The peer, once exchanged.
    pub fn get(&self) -> Option<&Arc<Workload>> {
        self.value.get().and_then(Option::as_ref)
    }

    /// No exchange is pending.
    pub fn settled(&self) -> bool {
        !self.expected.load(std::sync::atomic::Ordering::Acquire) || self.value.get().is_some()
    }

    /// Waits until [`PeerSlot::settled`].
    pub async fn wait(&self) {
        loop {
            let notified = self.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.settled() {
                return;
            }
            notified.await;
        }
    }
}

/// A connection's peers, in its filter state: the downstream one (learnt
/// by the exchange on an inbound chain) and the upstream one (learnt by
/// the exchange a cluster runs on its connection).
#[derive(Debug, Default)]
pub struct TcpPeers {
    pub downstream: Arc<PeerSlot>,
    pub upstream: Arc<PeerSlot>,
}

impl TcpPeers {
    /// The connection's peers, made on first use.
    pub fn of(state: &mut http::Extensions) -> Arc<TcpPeers> {
        Arc::clone(state.get_or_insert_with(|| Arc::new(TcpPeers::default())))
    }

    /// The connection's peers, if a filter made them.
    pub fn find(state: &http::Extensions) -> Option<&Arc<TcpPeers>> {
        state.get::<Arc<TcpPeers>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes Istio's filter writes for node metadata
    /// `{NAME: "a"}` and id `x`, worked out field by field from
    /// `metadata_exchange.cc` / `metadata_exchange_initial_header.h`.
    #[test]
    fn preamble_bytes_are_istios() {
        // Struct {fields: {"NAME": Value{string_value: "a"}}}
        let metadata: &[u8] = &[
            0x0a, 0x0b, // fields entry, 11 bytes
            0x0a, 0x04, b'N', b'A', b'M', b'E', // key
            0x12, 0x03, 0x1a, 0x01, b'a', // value: string_value "a"
        ];
        let got = preamble(metadata, "x");
        let mut want: Vec<u8> = vec![0x3d, 0x23, 0x04, 0x67];
        let mut any = Vec::new();
        // type_url
        any.push(0x0a);
        any.push(42);
        any.extend_from_slice(b"type.googleapis.com/google.protobuf.Struct");
        // value: the outer Struct
        let mut outer = Vec::new();
        // entry "x-envoy-peer-metadata" -> struct_value(metadata)
        let mut e1 = vec![0x0a, 21];
        e1.extend_from_slice(b"x-envoy-peer-metadata");
        e1.extend_from_slice(&[0x12, 15, 0x2a, 13]);
        e1.extend_from_slice(metadata);
        outer.push(0x0a);
        outer.push(e1.len() as u8);
        outer.extend_from_slice(&e1);
        // entry "x-envoy-peer-metadata-id" -> string_value("x")
        let mut e2 = vec![0x0a, 24];
        e2.extend_from_slice(b"x-envoy-peer-metadata-id");
        e2.extend_from_slice(&[0x12, 3, 0x1a, 1, b'x']);
        outer.push(0x0a);
        outer.push(e2.len() as u8);
        outer.extend_from_slice(&e2);
        any.push(0x12);
        any.push(outer.len() as u8);
        any.extend_from_slice(&outer);
        want.extend_from_slice(&(any.len() as u32).to_be_bytes());
        want.extend_from_slice(&any);
        assert_eq!(got, want);
        // And it reads back.
        assert_eq!(
            parse(&got),
            Parsed::Peer {
                len: got.len(),
                metadata: metadata.to_vec(),
                id: "x".into()
            }
        );
    }

    #[test]
    fn partial_wrong_and_oversized_preambles() {
        let p = preamble(&[], "id");
        for cut in [0, 3, 8, p.len() - 1] {
            assert_eq!(parse(&p[..cut]), Parsed::NeedMore, "cut at {cut}");
        }
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Parsed::Invalid);
        let mut big = MAGIC.to_be_bytes().to_vec();
        big.extend_from_slice(&(MAX_PREAMBLE as u32 + 1).to_be_bytes());
        assert_eq!(parse(&big), Parsed::Invalid);
        // A preamble followed by data: only the preamble is consumed.
        let mut with_data = p.clone();
        with_data.extend_from_slice(b"hello");
        assert!(matches!(parse(&with_data), Parsed::Peer { len, .. } if len == p.len()));
    }
}
