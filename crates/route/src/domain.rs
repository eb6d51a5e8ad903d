//! Virtual host selection by `:authority`, with Envoy's precedence: exact
//! name, then the longest `*suffix` wildcard, then the longest `prefix*`
//! wildcard, then the `*` default.

use std::collections::{BTreeMap, HashMap, hash_map::Entry};

/// Hosts up to this length are lower-cased on the stack. A DNS name is at
/// most 253 octets; with brackets and `:65535` every sane authority fits, and
/// longer ones only cost one allocation.
const STACK_HOST_LEN: usize = 320;

/// One entry of a virtual host's `domains`, classified the way Envoy does: the
/// first matching rule wins, so `*` alone is the default, a leading `*` makes
/// a suffix wildcard even if another `*` follows, and only then is a trailing
/// `*` a prefix wildcard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DomainPattern<'a> {
    /// `*`: the default virtual host.
    Any,
    /// `*<suffix>`: the host ends with the suffix and has at least one more
    /// byte before it.
    Suffix(&'a str),
    /// `<prefix>*`: the host starts with the prefix and has at least one more
    /// byte after it.
    Prefix(&'a str),
    /// Anything else, compared whole (port included).
    Exact(&'a str),
}

impl<'a> DomainPattern<'a> {
    /// Classifies an already lower-cased domain.
    pub(crate) fn parse(domain: &'a str) -> Self {
        if domain == "*" {
            Self::Any
        } else if let Some(suffix) = domain.strip_prefix('*') {
            Self::Suffix(suffix)
        } else if let Some(prefix) = domain.strip_suffix('*') {
            Self::Prefix(prefix)
        } else {
            Self::Exact(domain)
        }
    }
}

/// Maps a host to the index of the virtual host that serves it.
///
/// Lookup costs one hash probe for exact names plus at most one probe per
/// distinct wildcard length shorter than the host, so it grows with the host's
/// length and the variety of wildcard lengths, never with the number of
/// virtual hosts.
#[derive(Debug, Clone)]
pub(crate) struct DomainIndex {
    exact: HashMap<Box<[u8]>, usize>,
    /// Longest first, so the first hit is the longest wildcard.
    suffixes: Box<[WildcardGroup]>,
    /// Longest first, as for `suffixes`.
    prefixes: Box<[WildcardGroup]>,
    default: Option<usize>,
}

/// Every wildcard of one length, keyed by its literal part.
#[derive(Debug, Clone)]
struct WildcardGroup {
    len: usize,
    literals: HashMap<Box<[u8]>, usize>,
}

/// Collects domains, refusing duplicates, then freezes into a [`DomainIndex`].
#[derive(Debug, Default)]
pub(crate) struct DomainIndexBuilder {
    exact: HashMap<Box<[u8]>, usize>,
    suffixes: BTreeMap<usize, HashMap<Box<[u8]>, usize>>,
    prefixes: BTreeMap<usize, HashMap<Box<[u8]>, usize>>,
    default: Option<usize>,
}

impl DomainIndexBuilder {
    /// Registers `domain` (any case) for virtual host `vhost`.
    ///
    /// Fails with the index of the virtual host that already holds the same
    /// pattern: Envoy rejects a route configuration with a duplicate domain,
    /// or with two `*` defaults, even within one virtual host.
    pub(crate) fn insert(&mut self, domain: &str, vhost: usize) -> Result<(), usize> {
        let lower = domain.to_ascii_lowercase();
        let (map, literal) = match DomainPattern::parse(&lower) {
            DomainPattern::Any => {
                return match self.default {
                    Some(first) => Err(first),
                    None => {
                        self.default = Some(vhost);
                        Ok(())
                    }
                };
            }
            DomainPattern::Suffix(s) => (self.suffixes.entry(s.len()).or_default(), s),
            DomainPattern::Prefix(p) => (self.prefixes.entry(p.len()).or_default(), p),
            DomainPattern::Exact(e) => (&mut self.exact, e),
        };
        match map.entry(literal.as_bytes().into()) {
            Entry::Occupied(first) => Err(*first.get()),
            Entry::Vacant(slot) => {
                slot.insert(vhost);
                Ok(())
            }
        }
    }

    pub(crate) fn build(self) -> DomainIndex {
        fn longest_first(
            groups: BTreeMap<usize, HashMap<Box<[u8]>, usize>>,
        ) -> Box<[WildcardGroup]> {
            groups
                .into_iter()
                .rev()
                .map(|(len, literals)| WildcardGroup { len, literals })
                .collect()
        }
        DomainIndex {
            exact: self.exact,
            suffixes: longest_first(self.suffixes),
            prefixes: longest_first(self.prefixes),
            default: self.default,
        }
    }
}

impl DomainIndex {
    /// The virtual host serving `host` (an `:authority`, port included when
    /// the request carried one), if any.
    ///
    /// Case-insensitive. Does not block; allocates only when `host` has an
    /// upper-case letter and is longer than any real host name.
    pub(crate) fn find(&self, host: &str) -> Option<usize> {
        // Envoy short-cuts a table with only `*`: every request, even one
        // without an authority, lands on the default.
        if self.exact.is_empty() && self.suffixes.is_empty() && self.prefixes.is_empty() {
            return self.default;
        }
        let host = host.as_bytes();
        if !host.iter().any(u8::is_ascii_uppercase) {
            return self.find_lowercase(host);
        }
        if host.len() <= STACK_HOST_LEN {
            let mut buf = [0u8; STACK_HOST_LEN];
            let lower = &mut buf[..host.len()];
            lower.copy_from_slice(host);
            lower.make_ascii_lowercase();
            self.find_lowercase(lower)
        } else {
            self.find_lowercase(&host.to_ascii_lowercase())
        }
    }

    fn find_lowercase(&self, host: &[u8]) -> Option<usize> {
        if let Some(&vhost) = self.exact.get(host) {
            return Some(vhost);
        }
        let suffix = find_wildcard(&self.suffixes, host, |h, len| &h[h.len() - len..]);
        suffix
            .or_else(|| find_wildcard(&self.prefixes, host, |h, len| &h[..len]))
            .or(self.default)
    }
}

/// The first (so longest) group whose literal is the part of `host` that
/// `literal_of` cuts out. The `*` must stand for at least one byte, so only
/// literals strictly shorter than the host are tried: `*.foo.com` does not
/// match `.foo.com`.
fn find_wildcard(
    groups: &[WildcardGroup],
    host: &[u8],
    literal_of: impl Fn(&[u8], usize) -> &[u8],
) -> Option<usize> {
    let shorter = groups.partition_point(|group| group.len >= host.len());
    groups[shorter..]
        .iter()
        .find_map(|group| group.literals.get(literal_of(host, group.len)).copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(vhosts: &[&[&str]]) -> DomainIndex {
        let mut builder = DomainIndexBuilder::default();
        for (vhost, domains) in vhosts.iter().enumerate() {
            for domain in *domains {
                builder.insert(domain, vhost).expect("unique domain");
            }
        }
        builder.build()
    }

    #[test]
    fn classifies_domains_like_envoy() {
        use DomainPattern::*;
        let cases = [
            ("*", Any),
            ("*.foo.com", Suffix(".foo.com")),
            ("*-bar.foo.com", Suffix("-bar.foo.com")),
            ("*foo*", Suffix("foo*")),
            ("**", Suffix("*")),
            ("foo.*", Prefix("foo.")),
            ("foo*", Prefix("foo")),
            ("foo.com", Exact("foo.com")),
            ("foo.com:8080", Exact("foo.com:8080")),
            ("f*o.com", Exact("f*o.com")),
            ("", Exact("")),
        ];
        for (domain, want) in cases {
            assert_eq!(DomainPattern::parse(domain), want, "{domain}");
        }
    }

    #[test]
    fn precedence_and_wildcard_semantics() {
        let idx = index(&[
            /* 0 */ &["foo.com", "www.foo.com"],
            /* 1 */ &["*.foo.com"],
            /* 2 */ &["*-bar.foo.com"],
            /* 3 */ &["api.*"],
            /* 4 */ &["api*"],
            /* 5 */ &["*"],
            /* 6 */ &["example.com:8080", "[::1]:80", "[::1]"],
            /* 7 */ &["*.com"],
            /* 8 */ &["*:9090"],
        ]);
        let cases: &[(&str, usize, &str)] = &[
            ("foo.com", 0, "exact"),
            ("www.foo.com", 0, "exact beats a matching suffix wildcard"),
            ("a.foo.com", 1, "suffix wildcard"),
            ("a.b.foo.com", 1, "suffix wildcard spans dots"),
            ("x-bar.foo.com", 2, "longer suffix beats shorter"),
            (
                "-bar.foo.com",
                1,
                "`*` needs one byte, so the shorter suffix",
            ),
            (
                ".foo.com",
                7,
                "`*.foo.com` needs one byte before `.foo.com`",
            ),
            ("bar.com", 7, "shorter suffix"),
            ("api.foo.com", 1, "suffix wildcard beats prefix wildcard"),
            ("api.example.org", 3, "prefix wildcard"),
            ("apix", 4, "shorter prefix wildcard"),
            ("api.", 4, "`api.*` needs one byte after `api.`"),
            ("api", 5, "`api*` needs one byte after `api`"),
            ("other.org", 5, "default last"),
            ("", 5, "empty authority falls to the default"),
            ("FOO.Com", 0, "exact is case-insensitive"),
            ("A.FOO.COM", 1, "suffix is case-insensitive"),
            ("API.ORG", 3, "prefix is case-insensitive"),
            ("example.com:8080", 6, "exact with port"),
            ("EXAMPLE.COM:8080", 6, "exact with port, any case"),
            ("example.com", 7, "port-less host is not the port domain"),
            (
                "example.com:9090",
                8,
                "port is not stripped: only wildcards",
            ),
            ("foo.com:80", 5, "port is not stripped for exact names"),
            ("a.foo.com:80", 5, "nor for suffix wildcards"),
            ("api.foo.com:80", 3, "prefix wildcards see the port too"),
            ("[::1]:80", 6, "IPv6 literal with port"),
            ("[::1]", 6, "IPv6 literal"),
            ("[::1]:81", 5, "IPv6 literal, other port"),
            ("[::2]:9090", 8, "IPv6 literal, port wildcard"),
        ];
        for &(host, want, why) in cases {
            assert_eq!(idx.find(host), Some(want), "{host:?}: {why}");
        }
    }

    #[test]
    fn without_default_unmatched_hosts_find_nothing() {
        let idx = index(&[&["foo.com"], &["*.bar.com"], &["baz.*"]]);
        for host in ["", "qux.com", "bar.com", "baz.", "foo.com:80"] {
            assert_eq!(idx.find(host), None, "{host:?}");
        }
        assert_eq!(idx.find("x.bar.com"), Some(1));
        assert_eq!(idx.find("baz.io"), Some(2));
    }

    #[test]
    fn default_only_table_serves_everything() {
        let idx = index(&[&["*"]]);
        for host in ["", "anything", "UPPER.case:80", "[::1]:80"] {
            assert_eq!(idx.find(host), Some(0), "{host:?}");
        }
        assert_eq!(index(&[]).find("foo.com"), None);
    }

    #[test]
    fn long_upper_case_hosts_are_lowered_too() {
        let name = format!("{}.example.com", "a".repeat(STACK_HOST_LEN));
        let idx = index(&[&[name.as_str()], &["*.example.com"]]);
        assert_eq!(idx.find(&name.to_ascii_uppercase()), Some(0));
        let other = format!("{}.EXAMPLE.COM", "B".repeat(STACK_HOST_LEN));
        assert_eq!(idx.find(&other), Some(1));
    }

    #[test]
    fn non_ascii_hosts_do_not_panic() {
        let idx = index(&[&["*.é.com"], &["ü*"], &["*"]]);
        assert_eq!(idx.find("x.é.com"), Some(0));
        assert_eq!(idx.find("üx"), Some(1));
        // A literal length that falls inside a multi-byte character only
        // compares bytes, so it cannot split a `str`.
        assert_eq!(idx.find("xé"), Some(2));
    }

    #[test]
    fn duplicates_are_refused_with_the_first_owner() {
        let cases: &[(&str, &str)] = &[
            ("foo.com", "FOO.com"),
            ("*.foo.com", "*.FOO.COM"),
            ("foo.*", "foo.*"),
            ("*", "*"),
        ];
        for &(first, second) in cases {
            let mut builder = DomainIndexBuilder::default();
            builder.insert(first, 3).expect("first is new");
            assert_eq!(builder.insert(second, 4), Err(3), "{first} then {second}");
        }
        // Same literal, different kinds: all distinct.
        let mut builder = DomainIndexBuilder::default();
        for (vhost, domain) in ["foo", "*foo", "foo*", "*"].into_iter().enumerate() {
            builder.insert(domain, vhost).expect("distinct kinds");
        }
    }
}
