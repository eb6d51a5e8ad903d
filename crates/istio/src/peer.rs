//! A peer's workload metadata as the exchange headers carry it:
//! `x-envoy-peer-metadata` is a `google.protobuf.Struct`,
//! protobuf-encoded, base64 (Istio reads it with or without padding);
//! `x-envoy-peer-metadata-id` names the peer (its node id), which keys a
//! bounded cache so a known peer costs one lookup and no decoding.
//!
//! The `Struct` is read by hand (only string fields and the nested
//! `LABELS` struct matter), so no protobuf library is needed.

use std::{collections::HashMap, sync::Arc};

use arc_swap::ArcSwap;
use base64::Engine as _;
pub use strait_model::istio::Workload;

/// How many peers a cache keeps; past it, new peers are decoded per
/// request and not kept (a flood of made-up ids cannot grow it).
const MAX_PEERS: usize = 1024;

/// Istio's label keys for the canonical service and revision.
const CANONICAL_NAME: &str = "service.istio.io/canonical-name";
const CANONICAL_REVISION: &str = "service.istio.io/canonical-revision";

/// The request's downstream peer (filter state).
#[derive(Debug, Clone)]
pub struct DownstreamPeer(pub Arc<Workload>);

/// The request's upstream peer (filter state).
#[derive(Debug, Clone)]
pub struct UpstreamPeer(pub Arc<Workload>);

/// Decoded peers by id. Lock-free reads; a new peer copies the map (rare,
/// and bounded).
#[derive(Debug, Default)]
pub struct PeerCache {
    by_id: ArcSwap<HashMap<Box<str>, Arc<Workload>>>,
}

impl PeerCache {
    /// The peer `value` describes, from the cache when `id` is known.
    /// `additional` names the labels kept besides Istio's own.
    pub fn lookup(&self, id: &str, value: &[u8], additional: &[String]) -> Option<Arc<Workload>> {
        if !id.is_empty()
            && let Some(w) = self.by_id.load().get(id)
        {
            return Some(Arc::clone(w));
        }
        let w = Arc::new(decode(value, additional)?);
        if !id.is_empty() && self.by_id.load().len() < MAX_PEERS {
            self.by_id.rcu(|m| {
                let mut m = HashMap::clone(m);
                m.insert(id.into(), Arc::clone(&w));
                m
            });
        }
        Some(w)
    }
}

/// The workload a header value describes; `None` when it is not base64 of
/// a `Struct`.
pub fn decode(value: &[u8], additional: &[String]) -> Option<Workload> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let bytes = LENIENT.decode(value).ok()?;
    decode_struct(&bytes, additional)
}

/// The workload a protobuf-encoded `Struct` describes.
pub fn decode_struct(bytes: &[u8], additional: &[String]) -> Option<Workload> {
    let mut w = Workload::default();
    for (key, v) in entries(bytes)? {
        match (key, v) {
            ("NAME", Field::Text(s)) => w.name = s.to_owned(),
            ("NAMESPACE", Field::Text(s)) => w.namespace = s.to_owned(),
            ("WORKLOAD_NAME", Field::Text(s)) => w.workload_name = s.to_owned(),
            ("CLUSTER_ID", Field::Text(s)) => w.cluster_id = s.to_owned(),
            ("OWNER", Field::Text(s)) => w.owner = s.to_owned(),
            ("LABELS", Field::Struct(labels)) => {
                for (k, v) in entries(labels)? {
                    let Field::Text(v) = v else { continue };
                    match k {
                        CANONICAL_NAME => w.canonical_name = v.to_owned(),
                        CANONICAL_REVISION => w.canonical_revision = v.to_owned(),
                        "app" => w.app = v.to_owned(),
                        "version" => w.version = v.to_owned(),
                        k if additional.iter().any(|a| a == k) => {
                            w.labels.push((k.to_owned(), v.to_owned()))
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some(w)
}

/// A `Struct` field's value, as far as it matters here.
pub(crate) enum Field<'a> {
    Text(&'a str),
    Struct(&'a [u8]),
    Other,
}

/// A `Struct`'s entries (`map<string, Value> fields = 1`).
pub(crate) fn entries(mut buf: &[u8]) -> Option<Vec<(&str, Field<'_>)>> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (field, wire) = key(&mut buf)?;
        if field != 1 || wire != 2 {
            skip(&mut buf, wire)?;
            continue;
        }
        let mut entry = delimited(&mut buf)?;
        let (mut name, mut value) = ("", Field::Other);
        while !entry.is_empty() {
            let (f, w) = key(&mut entry)?;
            match (f, w) {
                (1, 2) => name = std::str::from_utf8(delimited(&mut entry)?).ok()?,
                (2, 2) => value = read_value(delimited(&mut entry)?)?,
                _ => skip(&mut entry, w)?,
            }
        }
        out.push((name, value));
    }
    Some(out)
}

/// A `Value`: `string_value = 3`, `struct_value = 5`.
fn read_value(mut buf: &[u8]) -> Option<Field<'_>> {
    let mut out = Field::Other;
    while !buf.is_empty() {
        let (f, w) = key(&mut buf)?;
        match (f, w) {
            (3, 2) => out = Field::Text(std::str::from_utf8(delimited(&mut buf)?).ok()?),
            (5, 2) => out = Field::Struct(delimited(&mut buf)?),
            _ => skip(&mut buf, w)?,
        }
    }
    Some(out)
}

fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

pub(crate) fn key(buf: &mut &[u8]) -> Option<(u64, u64)> {
    let k = varint(buf)?;
    Some((k >> 3, k & 7))
}

pub(crate) fn delimited<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(varint(buf)?).ok()?;
    if buf.len() < len {
        return None;
    }
    let (head, rest) = buf.split_at(len);
    *buf = rest;
    Some(head)
}

pub(crate) fn skip(buf: &mut &[u8], wire: u64) -> Option<()> {
    match wire {
        0 => varint(buf).map(drop),
        1 => (buf.len() >= 8).then(|| *buf = &buf[8..]),
        2 => delimited(buf).map(drop),
        5 => (buf.len() >= 4).then(|| *buf = &buf[4..]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `{"NAME": "p", "NAMESPACE": "ns", "LABELS": {"app": "a", "role": "r"}}`
    /// encoded as protobuf by hand.
    fn sample() -> Vec<u8> {
        fn ld(tag: u8, body: &[u8]) -> Vec<u8> {
            let mut v = vec![(tag << 3) | 2, u8::try_from(body.len()).expect("short")];
            v.extend_from_slice(body);
            v
        }
        let text = |s: &str| ld(3, s.as_bytes());
        let entry = |k: &str, v: Vec<u8>| ld(1, &[ld(1, k.as_bytes()), ld(2, &v)].concat());
        let labels = [entry("app", text("a")), entry("role", text("r"))].concat();
        [
            entry("NAME", text("p")),
            entry("NAMESPACE", text("ns")),
            entry("LABELS", ld(5, &labels)),
        ]
        .concat()
    }

    #[test]
    fn decodes_with_and_without_padding() {
        let bytes = sample();
        let padded = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let bare = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&bytes);
        for v in [padded, bare] {
            let w = decode(v.as_bytes(), &["role".into()]).expect("decodes");
            assert_eq!((w.name.as_str(), w.namespace.as_str()), ("p", "ns"));
            assert_eq!(w.app, "a");
            assert_eq!(w.labels, vec![("role".to_owned(), "r".to_owned())]);
        }
        assert!(decode(b"%%%", &[]).is_none());
        assert!(decode(b"AAAA", &[]).is_none(), "not a Struct");
    }

    #[test]
    fn the_cache_is_bounded() {
        let c = PeerCache::default();
        let v = base64::engine::general_purpose::STANDARD.encode(sample());
        for i in 0..(MAX_PEERS + 10) {
            assert!(c.lookup(&i.to_string(), v.as_bytes(), &[]).is_some());
        }
        assert_eq!(c.by_id.load().len(), MAX_PEERS);
    }
}
