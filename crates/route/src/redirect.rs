//! Redirect actions: the `Location` a redirect route answers with.

use strait_model::{PathRedirect, RedirectAction};

use crate::{
    RouteError,
    action::Rewrite,
    authority::{port_of, strip_port},
    matcher::{RequestView, path_without_query},
};

/// A compiled `RedirectAction`.
#[derive(Debug, Clone)]
pub(crate) struct RedirectEntry {
    scheme: Option<Box<str>>,
    host: Option<Box<str>>,
    port: Option<u16>,
    path: PathEntry,
    strip_query: bool,
}

#[derive(Debug, Clone)]
enum PathEntry {
    Keep,
    /// The replacement, and whether it carries its own `?query`.
    Path(Box<str>, bool),
    Prefix(Box<str>),
    Regex(Rewrite),
}

impl RedirectEntry {
    pub(crate) fn compile(
        config: &RedirectAction,
        at: &dyn Fn() -> String,
    ) -> Result<Self, RouteError> {
        let path = match &config.path {
            PathRedirect::Keep => PathEntry::Keep,
            PathRedirect::Path(p) => PathEntry::Path(p.as_str().into(), p.contains('?')),
            PathRedirect::Prefix(p) => PathEntry::Prefix(p.as_str().into()),
            PathRedirect::Regex(r) => PathEntry::Regex(Rewrite::compile(r, at)?),
        };
        Ok(Self {
            scheme: config.scheme.as_deref().map(Into::into),
            host: config.host.as_deref().map(Into::into),
            port: config.port,
            path,
            strip_query: config.strip_query,
        })
    }

    /// The `Location` for `request`, as Envoy builds it:
    ///
    /// - scheme: the configured one, else the request's (`x-forwarded-proto`
    ///   first);
    /// - host: `host_redirect`, else the request's authority, whose port is
    ///   dropped when `port_redirect` replaces it, or when the scheme changes
    ///   and the port was the old scheme's default (`:80` for http, `:443`
    ///   for https);
    /// - port: `port_redirect` appended when set;
    /// - path: `path_redirect` (its own `?query` wins over the request's and
    ///   survives `strip_query`), or the request path with the matched
    ///   prefix swapped (`prefix_rewrite`) or the regex substitution applied
    ///   to the path part (`regex_rewrite`); the query is kept unless
    ///   `strip_query`.
    ///
    /// `matched_len` is how much of the path the route's match consumed.
    /// Allocates the result.
    pub(crate) fn location(&self, request: &RequestView<'_>, matched_len: usize) -> String {
        let request_scheme = request.forwarded_proto();
        let scheme = self.scheme.as_deref().unwrap_or(request_scheme);
        let host = match &self.host {
            Some(host) if self.port.is_some() => strip_port(host),
            Some(host) => host,
            None => {
                let authority = request.authority;
                let port = port_of(authority);
                let default_port = match request_scheme.to_ascii_lowercase().as_str() {
                    "http" => Some("80"),
                    "https" => Some("443"),
                    _ => None,
                };
                let scheme_changed = !scheme.eq_ignore_ascii_case(request_scheme);
                let drop_port = self.port.is_some()
                    || (scheme_changed && port.is_some() && port == default_port);
                if drop_port {
                    strip_port(authority)
                } else {
                    authority
                }
            }
        };
        let (path, query) = split_query(request.path);
        let mut out = String::with_capacity(scheme.len() + host.len() + request.path.len() + 16);
        out.push_str(scheme);
        out.push_str("://");
        out.push_str(host);
        if let Some(port) = self.port {
            out.push(':');
            out.push_str(&port.to_string());
        }
        let keep_query = |out: &mut String| {
            if !self.strip_query && !query.is_empty() {
                out.push_str(query);
            }
        };
        match &self.path {
            PathEntry::Path(p, true) => out.push_str(p),
            PathEntry::Path(p, false) => {
                out.push_str(p);
                keep_query(&mut out);
            }
            PathEntry::Keep => {
                out.push_str(path);
                keep_query(&mut out);
            }
            PathEntry::Prefix(rewrite) => {
                out.push_str(rewrite);
                out.push_str(path.get(matched_len..).unwrap_or(""));
                keep_query(&mut out);
            }
            PathEntry::Regex(r) => {
                out.push_str(&r.apply(path));
                keep_query(&mut out);
            }
        }
        out
    }
}

/// `path_and_query` split before its `?`: the path (without any fragment)
/// and the query with its `?` (empty when there is none).
fn split_query(path_and_query: &str) -> (&str, &str) {
    let path = path_without_query(path_and_query);
    let rest = &path_and_query[path.len()..];
    let query = match rest.strip_prefix('?') {
        Some(_) => rest.split('#').next().unwrap_or(rest),
        None => "",
    };
    (path, query)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_split() {
        assert_eq!(split_query("/a?b=1"), ("/a", "?b=1"));
        assert_eq!(split_query("/a"), ("/a", ""));
        assert_eq!(split_query("/a?b#c"), ("/a", "?b"));
        assert_eq!(split_query("/a#c?d"), ("/a", ""));
    }
}
