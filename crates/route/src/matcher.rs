//! What a route matches against ([`RequestView`]) and the compiled form of a
//! route's `match` block.
//!
//! A [`RouteMatcher`] is a conjunction of conditions. Today it holds only the
//! path condition; header, query-parameter and runtime-fraction conditions
//! join it as fields, each checked after the path so that the cheap, most
//! selective test runs first.

use http::{HeaderMap, Method, Uri, header::HOST, request::Parts};
use strait_config::model::{PathMatch, RouteMatch};

use crate::RouteError;

/// The parts of a request that routing may look at, borrowed from wherever
/// the codec keeps them.
///
/// Construct it with [`RequestView::new`], [`RequestView::from_parts`] or
/// [`RequestView::from_request`]; fields are added as matchers grow.
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
}

impl<'a> RequestView<'a> {
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

    fn from_head(uri: &'a Uri, method: &'a Method, headers: &'a HeaderMap) -> Self {
        let authority = match uri.authority() {
            Some(authority) => authority.as_str(),
            None => headers
                .get(HOST)
                .and_then(|host| host.to_str().ok())
                .unwrap_or(""),
        };
        let path = uri.path_and_query().map_or("", |pq| pq.as_str());
        Self::new(authority, path, method, headers)
    }
}

/// The compiled `match` block of one route.
#[derive(Debug, Clone)]
pub(crate) struct RouteMatcher {
    path: PathMatcher,
}

/// The path condition. Compared against the path without its query string
/// or fragment, which is what Envoy's `prefix` and `path` see.
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
}

impl RouteMatcher {
    /// Compiles a route's `match` block.
    ///
    /// Nothing in today's model can fail; the `Result` is where regexes and
    /// path templates will report errors.
    pub(crate) fn compile(config: &RouteMatch) -> Result<Self, RouteError> {
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
        };
        Ok(Self { path })
    }

    /// Whether the request matches; if so, how many leading bytes of `path`
    /// the path condition consumed (what `prefix_rewrite` replaces).
    ///
    /// `path` is `request.path` with the query already cut off by
    /// [`path_without_query`], done once per request rather than per route.
    /// Pure, does not allocate.
    pub(crate) fn matches(&self, _request: &RequestView<'_>, path: &str) -> Option<usize> {
        self.path.matches(path)
    }
}

impl PathMatcher {
    fn matches(&self, path: &str) -> Option<usize> {
        // Envoy skips path-based routes for requests without a `:path`; an
        // empty prefix would otherwise match them.
        if path.is_empty() {
            return None;
        }
        match self {
            Self::Prefix {
                prefix,
                case_sensitive,
            } => {
                let head = path.as_bytes().get(..prefix.len())?;
                let hit = if *case_sensitive {
                    head == prefix.as_bytes()
                } else {
                    head.eq_ignore_ascii_case(prefix.as_bytes())
                };
                hit.then_some(prefix.len())
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(path: PathMatch, case_sensitive: bool) -> RouteMatcher {
        RouteMatcher::compile(&RouteMatch {
            path,
            case_sensitive,
        })
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
