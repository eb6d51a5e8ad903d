//! The route's `hash_policy`: a request hash for RING_HASH and MAGLEV.

use std::net::IpAddr;

use http::{HeaderMap, header};
use strait_model::policy::{HashPolicy, HashSource};

/// Hashes the request by the route's policies, combining several as Envoy
/// does (rotate the running hash left by one, then xor). `None` when no
/// policy produced a value; a `terminal` policy that produced one ends the
/// walk. `hasher` is the balancer's string hash. Allocation-free.
pub(crate) fn request_hash(
    policies: &[HashPolicy],
    headers: &HeaderMap,
    query: Option<&str>,
    peer: IpAddr,
    hasher: impl Fn(&[u8]) -> u64,
) -> Option<u64> {
    let mut out: Option<u64> = None;
    for p in policies {
        let one = match &p.source {
            HashSource::Header(name) => headers.get(name.as_str()).map(|v| hasher(v.as_bytes())),
            HashSource::Cookie(name) => cookie(headers, name).map(|v| hasher(v.as_bytes())),
            HashSource::SourceIp => Some(match peer {
                IpAddr::V4(v4) => hasher(&v4.octets()),
                IpAddr::V6(v6) => hasher(&v6.octets()),
            }),
            HashSource::QueryParameter(name) => {
                query_param(query, name).map(|v| hasher(v.as_bytes()))
            }
        };
        if let Some(h) = one {
            out = Some(match out {
                Some(prev) => prev.rotate_left(1) ^ h,
                None => h,
            });
            if p.terminal {
                break;
            }
        }
    }
    out
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn h(b: &[u8]) -> u64 {
        b.iter()
            .fold(7u64, |a, x| a.wrapping_mul(31).wrapping_add(u64::from(*x)))
    }

    fn p(source: HashSource, terminal: bool) -> HashPolicy {
        HashPolicy { source, terminal }
    }

    #[test]
    fn sources_and_terminal() {
        let mut headers = HeaderMap::new();
        headers.insert("x-user", HeaderValue::from_static("jason"));
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; session=abc"));
        let ip: IpAddr = [10, 0, 0, 1].into();
        let q = Some("x=1&user=bob");
        let one = |s: HashSource| request_hash(&[p(s, false)], &headers, q, ip, h);
        assert_eq!(one(HashSource::Header("x-user".into())), Some(h(b"jason")));
        assert_eq!(one(HashSource::Cookie("session".into())), Some(h(b"abc")));
        assert_eq!(
            one(HashSource::QueryParameter("user".into())),
            Some(h(b"bob"))
        );
        assert_eq!(one(HashSource::SourceIp), Some(h(&[10, 0, 0, 1])));
        assert_eq!(one(HashSource::Header("missing".into())), None);
        let both = [
            p(HashSource::Header("x-user".into()), true),
            p(HashSource::SourceIp, false),
        ];
        assert_eq!(request_hash(&both, &headers, q, ip, h), Some(h(b"jason")));
        let combined = [
            p(HashSource::Header("x-user".into()), false),
            p(HashSource::SourceIp, false),
        ];
        assert_eq!(
            request_hash(&combined, &headers, q, ip, h),
            Some(h(b"jason").rotate_left(1) ^ h(&[10, 0, 0, 1]))
        );
    }
}
