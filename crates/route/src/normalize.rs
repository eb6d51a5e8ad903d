//! Envoy's `normalize_path`: the request path with dot segments removed
//! (RFC 3986 section 5.2.4), before routing and as forwarded upstream, so
//! `/public/../admin` cannot reach a route that `/admin` would not.

/// The normalized form of `path_and_query` (the query is kept as is), or
/// `None` when the path is already normal (no allocation then). A segment
/// spelled with percent-encoded dots (`%2e`, `%2E`) counts as a dot segment,
/// as in Envoy's canonicalizer. Other percent-encodings are left alone.
pub fn normalize_path(path_and_query: &str) -> Option<String> {
    let (path, query) = match path_and_query.find('?') {
        Some(i) => path_and_query.split_at(i),
        None => (path_and_query, ""),
    };
    if !path.split('/').any(|s| dots(s).is_some()) {
        return None;
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        match dots(seg) {
            Some(1) => {
                // `/a/.` ends in a directory: keep the trailing slash.
                if i == last {
                    out.push("");
                }
            }
            Some(_) => {
                // Never climb above the root (the leading empty segment).
                if out.len() > 1 {
                    out.pop();
                }
                if i == last {
                    out.push("");
                }
            }
            None => out.push(seg),
        }
    }
    let mut normalized = out.join("/");
    if !normalized.starts_with('/') {
        normalized.insert(0, '/');
    }
    normalized.push_str(query);
    Some(normalized)
}

/// 1 for a `.` segment, 2 for `..` (either maybe percent-encoded). No
/// allocation: this runs on every request of a normalizing HCM.
fn dots(segment: &str) -> Option<u8> {
    let is = |list: &[&str]| list.iter().any(|d| d.eq_ignore_ascii_case(segment));
    if is(&[".", "%2e"]) {
        Some(1)
    } else if is(&["..", ".%2e", "%2e.", "%2e%2e"]) {
        Some(2)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_path;

    #[test]
    fn dot_segments_are_removed() {
        let cases = [
            ("/a/b/../c", Some("/a/c")),
            ("/a/./b", Some("/a/b")),
            ("/../../etc/passwd", Some("/etc/passwd")),
            ("/a/%2e%2E/admin?x=/../y", Some("/admin?x=/../y")),
            ("/a/b/..", Some("/a/")),
            ("/a/.", Some("/a/")),
            ("/a/b", None),
            ("/a/..b/c", None),
            ("/", None),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_path(input).as_deref(), expected, "{input}");
        }
    }
}
