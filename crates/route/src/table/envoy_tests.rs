//! Envoy's documented matching semantics, table-driven: headers, query
//! parameters, paths (regex, `path_separated_prefix`), gRPC and
//! `runtime_fraction`; and redirect locations.

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use strait_model::*;

use super::*;

/// Request headers as `(name, value)` pairs.
type Pairs = &'static [(&'static str, &'static str)];
/// (action, route prefix, authority, x-forwarded-proto, path, location).
type RedirectCase = (
    RedirectAction,
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
    &'static str,
);

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (k, v) in pairs {
        m.append(
            HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    m
}

fn one_route(matcher: RouteMatch, action: RouteAction) -> RouteTable {
    config_table(RouteConfig {
        name: "rc".into(),
        virtual_hosts: vec![VirtualHost {
            name: "vh".into(),
            domains: vec!["*".into()],
            routes: vec![Route::new("r", matcher, action)],
            headers: HeaderMutations::default(),
        }],
        ..RouteConfig::default()
    })
}

fn config_table(config: RouteConfig) -> RouteTable {
    RouteTable::compile(&config).expect("compiles")
}

fn to_backend() -> RouteAction {
    RouteAction::Forward(ForwardAction::to_cluster("backend"))
}

fn string(pattern: StringPattern) -> HeaderRule {
    HeaderRule::String(StringMatch {
        pattern,
        ignore_case: false,
    })
}

fn header(name: &str, rule: HeaderRule, invert: bool, missing_empty: bool) -> HeaderMatcher {
    HeaderMatcher {
        name: name.into(),
        rule,
        invert,
        treat_missing_as_empty: missing_empty,
    }
}

fn routes(table: &RouteTable, method: &Method, path: &str, hs: &HeaderMap) -> bool {
    let view = RequestView::new("h", path, method, hs);
    table.route(&view).matched().is_some()
}

#[test]
fn header_matchers() {
    use StringPattern::*;
    let s = |v: &str| v.to_owned();
    let cases: Vec<(HeaderMatcher, Pairs, bool)> = vec![
        (
            header("x", string(Exact(s("a"))), false, false),
            &[("x", "a")],
            true,
        ),
        (
            header("x", string(Exact(s("a"))), false, false),
            &[("x", "b")],
            false,
        ),
        (header("x", string(Exact(s("a"))), false, false), &[], false),
        // A missing header fails even inverted (Envoy's documented example
        // "header2"): only a present rule, or treat_missing_header_as_empty,
        // sees absence.
        (header("x", string(Exact(s("a"))), true, false), &[], false),
        (
            header("x", string(Exact(s("a"))), true, false),
            &[("x", "b")],
            true,
        ),
        (
            header("x", string(Exact(s("a"))), true, false),
            &[("x", "a")],
            false,
        ),
        (
            header("x", HeaderRule::Range { start: 0, end: 10 }, true, true),
            &[],
            true,
        ),
        (
            header("x", HeaderRule::Range { start: 0, end: 10 }, true, false),
            &[],
            false,
        ),
        (header("x", string(Regex(s("^$"))), false, true), &[], true),
        (
            header("x", string(Regex(s("^$"))), false, false),
            &[],
            false,
        ),
        (header("x", string(Exact(s(""))), false, true), &[], true),
        // present_match true / false, inverted or not.
        (
            header("x", HeaderRule::Present(true), false, false),
            &[("x", "")],
            true,
        ),
        (
            header("x", HeaderRule::Present(true), false, false),
            &[],
            false,
        ),
        (
            header("x", HeaderRule::Present(false), false, false),
            &[],
            true,
        ),
        (
            header("x", HeaderRule::Present(false), false, false),
            &[("x", "1")],
            false,
        ),
        (
            header("x", HeaderRule::Present(true), true, false),
            &[],
            true,
        ),
        (
            header("x", HeaderRule::Present(false), true, false),
            &[],
            false,
        ),
        // Ranges are [start, end) over base-10 integers.
        (
            header("x", HeaderRule::Range { start: -10, end: 0 }, false, false),
            &[("x", "-1")],
            true,
        ),
        (
            header("x", HeaderRule::Range { start: -10, end: 0 }, false, false),
            &[("x", "0")],
            false,
        ),
        (
            header("x", HeaderRule::Range { start: -10, end: 0 }, false, false),
            &[("x", "10.9")],
            false,
        ),
        (
            header("x", HeaderRule::Range { start: -10, end: 0 }, false, false),
            &[("x", "-1somestring")],
            false,
        ),
        (
            header("x", HeaderRule::Range { start: -10, end: 0 }, false, false),
            &[("x", "")],
            false,
        ),
        (
            header("x", HeaderRule::Range { start: -10, end: 0 }, true, false),
            &[("x", "-1")],
            false,
        ),
        // Regexes match the whole value: \d{3} does not match 1234, so it
        // matches when inverted.
        (
            header("x", string(Regex(s(r"\d{3}"))), false, false),
            &[("x", "1234")],
            false,
        ),
        (
            header("x", string(Regex(s(r"\d{3}"))), true, false),
            &[("x", "1234")],
            true,
        ),
        // Several values are matched joined with ",".
        (
            header("x", string(Exact(s("a,b"))), false, false),
            &[("x", "a"), ("x", "b")],
            true,
        ),
        (
            header("x", string(Exact(s("a"))), false, false),
            &[("x", "a"), ("x", "b")],
            false,
        ),
        (
            header("x", string(Suffix(s(",b"))), false, false),
            &[("x", "a"), ("x", "b")],
            true,
        ),
        // Pseudo-headers.
        (
            header(":method", string(Exact(s("GET"))), false, false),
            &[],
            true,
        ),
        (
            header(":method", string(Exact(s("POST"))), false, false),
            &[],
            false,
        ),
        (
            header(":authority", string(Exact(s("h"))), false, false),
            &[],
            true,
        ),
        (
            header(":path", string(Prefix(s("/p?q"))), false, false),
            &[],
            true,
        ),
        (
            header(":scheme", string(Exact(s("http"))), false, false),
            &[],
            true,
        ),
        (
            header(":protocol", HeaderRule::Present(true), false, false),
            &[],
            false,
        ),
        // Envoy sees HTTP/1 Host only as :authority.
        (
            header("host", HeaderRule::Present(true), false, false),
            &[("host", "h")],
            false,
        ),
    ];
    for (matcher, request_headers, want) in cases {
        let table = one_route(
            RouteMatch {
                headers: vec![matcher.clone()],
                ..RouteMatch::default()
            },
            to_backend(),
        );
        let hs = headers(request_headers);
        assert_eq!(
            routes(&table, &Method::GET, "/p?q=1", &hs),
            want,
            "{matcher:?} with {request_headers:?}"
        );
    }
}

#[test]
fn query_parameter_matchers() {
    let q = |name: &str, value: Option<StringPattern>, ignore_case| QueryParameterMatcher {
        name: name.into(),
        value: value.map(|pattern| StringMatch {
            pattern,
            ignore_case,
        }),
    };
    let exact = |v: &str| Some(StringPattern::Exact(v.into()));
    let cases: Vec<(QueryParameterMatcher, &str, bool)> = vec![
        (q("debug", None, false), "/p?debug", true),
        (q("debug", None, false), "/p?debug=1", true),
        (q("debug", None, false), "/p?x=debug", false),
        (q("debug", None, false), "/p", false),
        (q("debug", None, false), "/p#debug", false),
        (q("v", exact("1"), false), "/p?a=b&v=1", true),
        (q("v", exact("1"), false), "/p?v=2", false),
        // Repeated keys: only the first occurrence counts.
        (q("v", exact("1"), false), "/p?v=1&v=2", true),
        (q("v", exact("2"), false), "/p?v=1&v=2", false),
        (q("v", exact(""), false), "/p?v&v=1", true),
        (q("v", exact("ABC"), true), "/p?v=abc", true),
        (
            q("v", Some(StringPattern::Prefix("ab".into())), false),
            "/p?v=abc",
            true,
        ),
        (
            q("v", Some(StringPattern::Regex("[0-9]+".into())), false),
            "/p?v=12",
            true,
        ),
        (
            q("v", Some(StringPattern::Regex("[0-9]+".into())), false),
            "/p?v=12a",
            false,
        ),
        // Values are compared as sent, not percent-decoded.
        (q("v", exact("a b"), false), "/p?v=a%20b", false),
        (q("v", exact("a%20b"), false), "/p?v=a%20b", true),
        (q("v", exact("1"), false), "/p?v=1#frag", true),
    ];
    for (matcher, path, want) in cases {
        let table = one_route(
            RouteMatch {
                query_parameters: vec![matcher.clone()],
                ..RouteMatch::default()
            },
            to_backend(),
        );
        let hs = HeaderMap::new();
        assert_eq!(
            routes(&table, &Method::GET, path, &hs),
            want,
            "{matcher:?} on {path}"
        );
    }
}

#[test]
fn path_matchers() {
    let cases: Vec<(PathMatch, bool, &str, bool)> = vec![
        // path_separated_prefix: the prefix itself or followed by `/`.
        (
            PathMatch::SeparatedPrefix("/sep".into()),
            true,
            "/sep",
            true,
        ),
        (
            PathMatch::SeparatedPrefix("/sep".into()),
            true,
            "/sep/",
            true,
        ),
        (
            PathMatch::SeparatedPrefix("/sep".into()),
            true,
            "/sep/x",
            true,
        ),
        (
            PathMatch::SeparatedPrefix("/sep".into()),
            true,
            "/sep?x=1",
            true,
        ),
        (
            PathMatch::SeparatedPrefix("/sep".into()),
            true,
            "/separate",
            false,
        ),
        (
            PathMatch::SeparatedPrefix("/sep".into()),
            true,
            "/se",
            false,
        ),
        (
            PathMatch::SeparatedPrefix("/api/dev".into()),
            true,
            "/api/developer",
            false,
        ),
        (
            PathMatch::SeparatedPrefix("/sep".into()),
            true,
            "/SEP/x",
            false,
        ),
        (
            PathMatch::SeparatedPrefix("/sep".into()),
            false,
            "/SEP/x",
            true,
        ),
        // safe_regex must match the whole path, query excluded.
        (PathMatch::Regex("/v[0-9]+".into()), true, "/v1", true),
        (PathMatch::Regex("/v[0-9]+".into()), true, "/v1?x=y", true),
        (PathMatch::Regex("/v[0-9]+".into()), true, "/v1/more", false),
        (PathMatch::Regex("/v[0-9]+".into()), true, "/x/v1", false),
        (PathMatch::Regex("v1".into()), true, "/v1", false),
        (PathMatch::Regex(".*".into()), true, "", false),
        // case_sensitive does not apply to regexes.
        (PathMatch::Regex("/abc".into()), false, "/ABC", false),
        (PathMatch::Regex("(?i)/abc".into()), true, "/ABC", true),
    ];
    for (path_match, case_sensitive, path, want) in cases {
        let table = one_route(
            RouteMatch {
                case_sensitive,
                ..RouteMatch::path(path_match.clone())
            },
            to_backend(),
        );
        let hs = HeaderMap::new();
        assert_eq!(
            routes(&table, &Method::GET, path, &hs),
            want,
            "{path_match:?} (case_sensitive {case_sensitive}) on {path}"
        );
    }
}

#[test]
fn grpc_and_runtime_fraction() {
    let grpc = one_route(
        RouteMatch {
            grpc: true,
            ..RouteMatch::default()
        },
        to_backend(),
    );
    let cases: &[(&[(&str, &str)], bool)] = &[
        (&[("content-type", "application/grpc")], true),
        (&[("content-type", "application/grpc+proto")], true),
        (&[("content-type", "application/grpc;charset=utf-8")], true),
        (&[("content-type", "application/grpc-web")], false),
        (&[("content-type", "application/json")], false),
        (&[], false),
    ];
    for (hs, want) in cases {
        let hs = headers(hs);
        assert_eq!(routes(&grpc, &Method::POST, "/svc/M", &hs), *want, "{hs:?}");
    }

    // 25 in 100: random values 0..25 (mod 100) match, as Envoy's
    // `random % denominator < numerator`.
    let fraction = one_route(
        RouteMatch {
            runtime_fraction: Some(FractionalPercent {
                numerator: 25,
                denominator: 100,
            }),
            ..RouteMatch::default()
        },
        to_backend(),
    );
    let hs = HeaderMap::new();
    for (random, want) in [(0, true), (24, true), (25, false), (99, false), (124, true)] {
        let view = RequestView::new("h", "/", &Method::GET, &hs).with_random(random);
        assert_eq!(fraction.route(&view).matched().is_some(), want, "{random}");
    }
    let hits = (0..10_000u64)
        .filter(|r| {
            let view = RequestView::new("h", "/", &Method::GET, &hs).with_random(r * 7919);
            fraction.route(&view).matched().is_some()
        })
        .count();
    assert!((2400..=2600).contains(&hits), "{hits}");
}

fn redirect(r: RedirectAction) -> RouteAction {
    RouteAction::Redirect(r)
}

fn base_redirect() -> RedirectAction {
    RedirectAction {
        scheme: None,
        host: None,
        port: None,
        path: PathRedirect::Keep,
        strip_query: false,
        status: 301,
    }
}

#[test]
fn redirect_locations() {
    let b = base_redirect;
    let https = || RedirectAction {
        scheme: Some("https".into()),
        ..b()
    };
    let regex = |pattern: &str, substitution: &str| {
        PathRedirect::Regex(RegexRewrite {
            pattern: pattern.into(),
            substitution: substitution.into(),
        })
    };
    // (action, route prefix, authority, x-forwarded-proto, path, location)
    let cases: Vec<RedirectCase> = vec![
        (
            https(),
            "/",
            "example.com",
            None,
            "/a?b=1",
            "https://example.com/a?b=1",
        ),
        // The old scheme's default port is dropped when the scheme changes.
        (
            https(),
            "/",
            "example.com:80",
            None,
            "/a",
            "https://example.com/a",
        ),
        (
            https(),
            "/",
            "example.com:8080",
            None,
            "/a",
            "https://example.com:8080/a",
        ),
        (
            https(),
            "/",
            "example.com:443",
            Some("https"),
            "/a",
            "https://example.com:443/a",
        ),
        (
            RedirectAction {
                scheme: Some("http".into()),
                ..b()
            },
            "/",
            "example.com:443",
            Some("https"),
            "/a",
            "http://example.com/a",
        ),
        (https(), "/", "[::1]:80", None, "/", "https://[::1]/"),
        (
            b(),
            "/",
            "example.com",
            Some("https"),
            "/a",
            "https://example.com/a",
        ),
        (
            RedirectAction {
                port: Some(8443),
                ..https()
            },
            "/",
            "example.com:80",
            None,
            "/a",
            "https://example.com:8443/a",
        ),
        (
            RedirectAction {
                port: Some(9000),
                ..b()
            },
            "/",
            "example.com:8080",
            None,
            "/a",
            "http://example.com:9000/a",
        ),
        (
            RedirectAction {
                host: Some("new.com".into()),
                ..b()
            },
            "/",
            "old.com:8080",
            None,
            "/a?q",
            "http://new.com/a?q",
        ),
        (
            RedirectAction {
                host: Some("new.com".into()),
                port: Some(81),
                ..b()
            },
            "/",
            "old.com",
            None,
            "/a",
            "http://new.com:81/a",
        ),
        (
            RedirectAction {
                strip_query: true,
                ..b()
            },
            "/",
            "h",
            None,
            "/a?b=1",
            "http://h/a",
        ),
        // Envoy's path_redirect examples.
        (
            RedirectAction {
                path: PathRedirect::Path("/new-path-1".into()),
                ..b()
            },
            "/",
            "h",
            None,
            "/old-path-1?bar=1",
            "http://h/new-path-1?bar=1",
        ),
        (
            RedirectAction {
                path: PathRedirect::Path("/new-path-2".into()),
                strip_query: true,
                ..b()
            },
            "/",
            "h",
            None,
            "/old-path-2?bar=1",
            "http://h/new-path-2",
        ),
        (
            RedirectAction {
                path: PathRedirect::Path("/new-path-3?foo=1".into()),
                strip_query: true,
                ..b()
            },
            "/",
            "h",
            None,
            "/old-path-3?bar=1",
            "http://h/new-path-3?foo=1",
        ),
        (
            RedirectAction {
                path: PathRedirect::Prefix("/new/".into()),
                ..b()
            },
            "/old/",
            "h",
            None,
            "/old/x/y?z",
            "http://h/new/x/y?z",
        ),
        (
            RedirectAction {
                path: PathRedirect::Prefix("/".into()),
                strip_query: true,
                ..b()
            },
            "/old/",
            "h",
            None,
            "/old/x?z",
            "http://h/x",
        ),
        (
            RedirectAction {
                path: regex("^/service/([^/]+)(/.*)$", r"\2/instance/\1"),
                ..b()
            },
            "/",
            "h",
            None,
            "/service/foo/v1/api?k=v",
            "http://h/v1/api/instance/foo?k=v",
        ),
        (
            RedirectAction {
                path: regex("one", "two"),
                ..b()
            },
            "/",
            "h",
            None,
            "/xxx/one/yyy/one/zzz",
            "http://h/xxx/two/yyy/two/zzz",
        ),
        (
            RedirectAction {
                path: regex("^(.*?)one(.*)$", r"\1two\2"),
                ..b()
            },
            "/",
            "h",
            None,
            "/xxx/one/yyy/one/zzz",
            "http://h/xxx/two/yyy/one/zzz",
        ),
        (
            RedirectAction {
                path: regex("(?i)/xxx/", "/yyy/"),
                ..b()
            },
            "/",
            "h",
            None,
            "/aaa/XxX/bbb",
            "http://h/aaa/yyy/bbb",
        ),
    ];
    for (action, prefix, authority, proto, path, want) in cases {
        let status = action.status;
        let table = one_route(
            RouteMatch::path(PathMatch::Prefix(prefix.into())),
            redirect(action.clone()),
        );
        let hs = match proto {
            Some(p) => headers(&[("x-forwarded-proto", p)]),
            None => HeaderMap::new(),
        };
        let view = RequestView::new(authority, path, &Method::GET, &hs);
        let m = table.route(&view).matched().expect("matches");
        assert_eq!(
            m.redirect(&view),
            Some((status, want.to_owned())),
            "{action:?} for {authority}{path}"
        );
        assert!(m.cluster(&view).is_none());
    }
}
