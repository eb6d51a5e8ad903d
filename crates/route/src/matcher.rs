//! What a route matches against ([`RequestView`]) and the compiled form of a
//! route's `match` block.
//!
//! A [`RouteMatcher`] is a conjunction of conditions, checked cheapest and
//! most selective first: the path, then the runtime fraction, gRPC,
//! headers and query parameters.

use http::{HeaderMap, HeaderName, Method, Uri, header::HOST, request::Parts};
use regex::Regex;
use strait_model::{FractionalPercent, PathMatch, RouteMatch};

use crate::RouteError;

mod header;
mod value;

use header::{CompiledHeaderMatcher, CompiledQueryMatcher};
pub(crate) use header::{first, header_name, is_grpc};
pub(crate) use value::{full_match_regex, search_regex};

/// `x-forwarded-proto`, which Envoy's redirects read for the request scheme.
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// The parts of a request that routing may look at, borrowed from wherever
/// the codec keeps them.
///
/// Construct it with [`RequestView::new`], [`RequestView::from_parts`] or
/// [`RequestView::from_request`], then [`RequestView::with_random`] (and
/// [`RequestView::with_scheme`] on TLS listeners).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RequestView<'a> {
    /// `:authority`, or `Host` for HTTP/1, port included when present. The
    /// codec rejects requests without one (as Envoy's connection manager
    /// does), so an empty string is matched literally.
    pub authority: &'a str,
    /// `:path` as received: path, then `?query`. Empty when the request has
    /// none (CONNECT's authority form), in which case no path-based route
    /// matches, as in Envoy.
    pub path: &'a str,
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    /// `:scheme`: the URI's scheme when it has one, else `http`. What header
    /// matchers on `:scheme` see; redirects prefer `x-forwarded-proto`.
    pub scheme: &'a str,
    /// The request's random value, as Envoy draws one per stream: it decides
    /// `runtime_fraction` matches and the weighted cluster. The caller
    /// supplies it (0 by default) so that routing stays deterministic.
    pub random: u64,
}

impl<'a> RequestView<'a> {
    /// A view with scheme `http` and random value 0.
    pub fn new(
        authority: &'a str,
        path: &'a str,
        method: &'a Method,
        headers: &'a HeaderMap,
    ) -> Self {
        Self {
            authority,
            path,
            method,
            headers,
            scheme: "http",
            random: 0,
        }
    }

    /// Views a request head. The authority is the URI's (HTTP/2, or HTTP/1's
    /// absolute form, which Envoy also prefers over `Host`), else the `Host`
    /// header; a `Host` that is not visible ASCII counts as empty.
    pub fn from_parts(parts: &'a Parts) -> Self {
        Self::from_head(&parts.uri, &parts.method, &parts.headers)
    }

    /// As [`RequestView::from_parts`], for a whole request.
    pub fn from_request<B>(request: &'a http::Request<B>) -> Self {
        Self::from_head(request.uri(), request.method(), request.headers())
    }

    /// Sets the random value (see [`RequestView::random`]).
    pub fn with_random(mut self, random: u64) -> Self {
        self.random = random;
        self
    }

    /// Sets `:scheme` (e.g. `https` for a TLS listener's HTTP/1 requests).
    pub fn with_scheme(mut self, scheme: &'a str) -> Self {
        self.scheme = scheme;
        self
    }

    /// Replaces the authority, e.g. with the port stripped by
    /// [`crate::strip_host_port`].
    pub fn with_authority(mut self, authority: &'a str) -> Self {
        self.authority = authority;
        self
    }

    /// The scheme redirects start from: `x-forwarded-proto` when present
    /// (the connection manager sets it before routing), else `:scheme`.
    pub fn forwarded_proto(&self) -> &'a str {
        self.headers
            .get(&X_FORWARDED_PROTO)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .unwrap_or(self.scheme)
    }

    fn from_head(uri: &'a Uri, method: &'a Method, headers: &'a HeaderMap) -> Self {
        let authority = match uri.authority() {
            Some(authority) => authority.as_str(),
            None => headers
                .get(HOST)
                .and_then(|host| host.to_str().ok())
                .unwrap_or(""),
        };
        let path = uri.path_and_query().map_or("", |pq| pq.as_str());
        let view = Self::new(authority, path, method, headers);
        match uri.scheme_str() {
            Some(scheme) => view.with_scheme(scheme),
            None => view,
        }
    }
}

/// A route `match` block compiled on its own, for filters that select
/// requests the way routes do (JWT authentication's `rules`).
#[derive(Debug, Clone)]
pub struct RequestMatcher(RouteMatcher);

impl RequestMatcher {
    /// Compiles `config`; `at` names it in errors.
    pub fn compile(config: &RouteMatch, at: &dyn Fn() -> String) -> Result<Self, RouteError> {
        RouteMatcher::compile(config, at).map(RequestMatcher)
    }

    /// Whether `request` matches, as a route with this `match` would.
    pub fn matches(&self, request: &RequestView<'_>) -> bool {
        self.0
            .matches(request, path_without_query(request.path))
            .is_some()
    }
}

/// The compiled `match` block of one route.
#[derive(Debug, Clone)]
pub(crate) struct RouteMatcher {
    path: PathMatcher,
    runtime_fraction: Option<FractionalPercent>,
    grpc: bool,
    headers: Box<[CompiledHeaderMatcher]>,
    query_parameters: Box<[CompiledQueryMatcher]>,
}

/// The path condition. Compared against the path without its query string
/// or fragment, which is what Envoy's path matchers see.
#[derive(Debug, Clone)]
enum PathMatcher {
    Prefix {
        prefix: Box<str>,
        case_sensitive: bool,
    },
    Exact {
        path: Box<str>,
        case_sensitive: bool,
    },
    /// Anchored: the whole path must match.
    Regex(Regex),
    /// The path equals the prefix or continues with `/` after it.
    SeparatedPrefix {
        prefix: Box<str>,
        case_sensitive: bool,
    },
}

impl RouteMatcher {
    /// Compiles a route's `match` block; `at` names the route in errors.
    pub(crate) fn compile(
        config: &RouteMatch,
        at: &dyn Fn() -> String,
    ) -> Result<Self, RouteError> {
        let case_sensitive = config.case_sensitive;
        let path = match &config.path {
            PathMatch::Prefix(prefix) => PathMatcher::Prefix {
                prefix: prefix.as_str().into(),
                case_sensitive,
            },
            PathMatch::Exact(path) => PathMatcher::Exact {
                path: path.as_str().into(),
                case_sensitive,
            },
            PathMatch::Regex(pattern) => PathMatcher::Regex(full_match_regex(pattern, at)?),
            PathMatch::SeparatedPrefix(prefix) => PathMatcher::SeparatedPrefix {
                prefix: prefix.as_str().into(),
                case_sensitive,
            },
        };
        if let Some(f) = config.runtime_fraction
            && f.denominator == 0
        {
            return Err(RouteError::InvalidFraction { at: at() });
        }
        Ok(Self {
            path,
            runtime_fraction: config.runtime_fraction,
            grpc: config.grpc,
            headers: config
                .headers
                .iter()
                .map(|h| CompiledHeaderMatcher::compile(h, at))
                .collect::<Result<_, _>>()?,
            query_parameters: config
                .query_parameters
                .iter()
                .map(|q| CompiledQueryMatcher::compile(q, at))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Whether the request matches; if so, how many leading bytes of `path`
    /// the path condition consumed (what `prefix_rewrite` replaces; all of
    /// it for `path` and `safe_regex`).
    ///
    /// `path` is `request.path` with the query already cut off by
    /// [`path_without_query`], done once per request rather than per route.
    /// Pure; allocates only for a header with several values.
    pub(crate) fn matches(&self, request: &RequestView<'_>, path: &str) -> Option<usize> {
        let matched_len = self.path.matches(path)?;
        if let Some(f) = self.runtime_fraction
            && request.random % u64::from(f.denominator) >= u64::from(f.numerator)
        {
            return None;
        }
        if self.grpc && !is_grpc(request.headers) {
            return None;
        }
        if !self.headers.iter().all(|h| h.matches(request)) {
            return None;
        }
        if !self.query_parameters.is_empty() {
            let query = query_of(request.path);
            if !self.query_parameters.iter().all(|q| q.matches(query)) {
                return None;
            }
        }
        Some(matched_len)
    }
}

impl PathMatcher {
    fn matches(&self, path: &str) -> Option<usize> {
        // Envoy skips path-based routes for requests without a `:path`; an
        // empty prefix would otherwise match them.
        if path.is_empty() {
            return None;
        }
        let starts_with = |prefix: &str, case_sensitive: bool| {
            path.as_bytes().get(..prefix.len()).is_some_and(|head| {
                if case_sensitive {
                    head == prefix.as_bytes()
                } else {
                    head.eq_ignore_ascii_case(prefix.as_bytes())
                }
            })
        };
        match self {
            Self::Prefix {
                prefix,
                case_sensitive,
            } => starts_with(prefix, *case_sensitive).then_some(prefix.len()),
            Self::Exact {
                path: exact,
                case_sensitive,
            } => {
                let hit = if *case_sensitive {
                    path == &**exact
                } else {
                    path.eq_ignore_ascii_case(exact)
                };
                hit.then_some(path.len())
            }
            Self::Regex(re) => re.is_match(path).then_some(path.len()),
            Self::SeparatedPrefix {
                prefix,
                case_sensitive,
            } => {
                let boundary = matches!(path.as_bytes().get(prefix.len()), None | Some(b'/'));
                (boundary && starts_with(prefix, *case_sensitive)).then_some(prefix.len())
            }
        }
    }
}

/// `path_and_query` up to its first `?` or `#`: the part Envoy's path
/// matchers compare.
pub(crate) fn path_without_query(path_and_query: &str) -> &str {
    match path_and_query.find(['?', '#']) {
        Some(end) => &path_and_query[..end],
        None => path_and_query,
    }
}

/// What follows the first `?` of `path_and_query`, up to any `#`; empty when
/// there is no query.
pub(crate) fn query_of(path_and_query: &str) -> &str {
    let without_fragment = match path_and_query.find('#') {
        Some(end) => &path_and_query[..end],
        None => path_and_query,
    };
    without_fragment
        .split_once('?')
        .map_or("", |(_, query)| query)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(path: PathMatch, case_sensitive: bool) -> RouteMatcher {
        RouteMatcher::compile(
            &RouteMatch {
                case_sensitive,
                ..RouteMatch::path(path)
            },
            &|| "test".to_owned(),
        )
        .expect("compiles")
    }

    fn prefix(p: &str) -> PathMatch {
        PathMatch::Prefix(p.to_owned())
    }

    fn exact(p: &str) -> PathMatch {
        PathMatch::Exact(p.to_owned())
    }

    #[test]
    fn path_conditions() {
        let headers = HeaderMap::new();
        let cases: &[(PathMatch, bool, &str, Option<usize>)] = &[
            (prefix(""), true, "/", Some(0)),
            (prefix(""), true, "/anything?q", Some(0)),
            (prefix("/"), true, "/", Some(1)),
            (prefix("/api"), true, "/api", Some(4)),
            (prefix("/api"), true, "/api/v1", Some(4)),
            (prefix("/api"), true, "/apix", Some(4)),
            (prefix("/api"), true, "/ap", None),
            (prefix("/api"), true, "/API/v1", None),
            (prefix("/api"), false, "/API/v1", Some(4)),
            (prefix("/api"), true, "/x/api?/api", None),
            (prefix("/a"), true, "/b?/a", None),
            (prefix("/é"), false, "/É", None),
            (prefix("/é"), false, "/é/x", Some(3)),
            (exact("/api"), true, "/api", Some(4)),
            (exact("/api"), true, "/api?x=1", Some(4)),
            (exact("/api"), true, "/api#frag", Some(4)),
            (exact("/api"), true, "/api/", None),
            (exact("/api"), true, "/Api", None),
            (exact("/api"), false, "/Api?Q", Some(4)),
            (exact("/"), true, "/?", Some(1)),
            // No `:path` at all: nothing path-based matches.
            (prefix(""), true, "", None),
            (exact(""), true, "", None),
        ];
        for (path_match, case_sensitive, request_path, want) in cases {
            let m = matcher(path_match.clone(), *case_sensitive);
            let request = RequestView::new("h", request_path, &Method::GET, &headers);
            let got = m.matches(&request, path_without_query(request.path));
            assert_eq!(
                got, *want,
                "{path_match:?} (case_sensitive: {case_sensitive}) against {request_path:?}"
            );
        }
    }

    #[test]
    fn query_and_fragment_are_cut() {
        let cases = [
            ("/a/b", "/a/b"),
            ("/a?b", "/a"),
            ("/a#b", "/a"),
            ("/a?b#c", "/a"),
            ("/a#b?c", "/a"),
            ("?x", ""),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(path_without_query(input), want, "{input:?}");
        }
    }

    #[test]
    fn queries_are_found() {
        let cases = [
            ("/a?b=1", "b=1"),
            ("/a", ""),
            ("/a?", ""),
            ("/a?b#c", "b"),
            ("/a#c?d", ""),
            ("?x", "x"),
        ];
        for (input, want) in cases {
            assert_eq!(query_of(input), want, "{input:?}");
        }
    }

    #[test]
    fn schemes() {
        let request = http::Request::builder()
            .uri("https://a.com/p")
            .body(())
            .expect("valid request");
        let view = RequestView::from_request(&request);
        assert_eq!((view.scheme, view.forwarded_proto()), ("https", "https"));
        let mut headers = HeaderMap::new();
        let view = RequestView::new("h", "/", &Method::GET, &headers);
        assert_eq!(
            (view.scheme, view.forwarded_proto(), view.random),
            ("http", "http", 0)
        );
        headers.insert(&X_FORWARDED_PROTO, http::HeaderValue::from_static("https"));
        let view = RequestView::new("h", "/", &Method::GET, &headers)
            .with_scheme("http")
            .with_random(7)
            .with_authority("other");
        assert_eq!(
            (view.forwarded_proto(), view.random, view.authority),
            ("https", 7, "other")
        );
    }

    #[test]
    fn views_request_heads() {
        let cases: &[(&str, Option<&str>, &str, &str)] = &[
            // HTTP/1 origin form: the authority comes from Host.
            (
                "/p?q=1",
                Some("Example.com:8080"),
                "Example.com:8080",
                "/p?q=1",
            ),
            // Absolute form or HTTP/2: the URI's authority wins over Host.
            ("http://a.com/p", Some("b.com"), "a.com", "/p"),
            ("http://[::1]:80/", None, "[::1]:80", "/"),
            ("/p", None, "", "/p"),
            ("*", Some("h"), "h", "*"),
        ];
        for &(uri, host, want_authority, want_path) in cases {
            let mut builder = http::Request::builder().uri(uri);
            if let Some(host) = host {
                builder = builder.header(HOST, host);
            }
            let request = builder.body(()).expect("valid request");
            let view = RequestView::from_request(&request);
            assert_eq!(view.authority, want_authority, "{uri}");
            assert_eq!(view.path, want_path, "{uri}");
            let (parts, ()) = request.into_parts();
            let view = RequestView::from_parts(&parts);
            assert_eq!((view.authority, view.path), (want_authority, want_path));
        }
    }

    #[test]
    fn connect_has_no_path() {
        let request = http::Request::builder()
            .method(Method::CONNECT)
            .uri("example.com:443")
            .body(())
            .expect("valid request");
        let view = RequestView::from_request(&request);
        assert_eq!((view.authority, view.path), ("example.com:443", ""));
    }

    #[test]
    fn opaque_host_header_counts_as_empty() {
        let request = http::Request::builder()
            .uri("/")
            .header(
                HOST,
                http::HeaderValue::from_bytes(b"h\xffst").expect("obs-text"),
            )
            .body(())
            .expect("valid request");
        assert_eq!(RequestView::from_request(&request).authority, "");
    }
}
