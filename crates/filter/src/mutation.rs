//! `envoy.filters.http.header_mutation`: header edits on the request before
//! the router and on the response after it.

use http::HeaderMap;
use strait_model::{
    AppendAction,
    filter::{HeaderMutationConfig, HeaderOp},
};

/// Applies the filter's own mutations, then every per-route level: most
/// specific first (Envoy's default), or least specific first when
/// `most_specific_wins`. `side` picks the request or response list.
pub fn apply_levels<'a>(
    filter: &'a HeaderMutationConfig,
    levels: impl DoubleEndedIterator<Item = &'a HeaderMutationConfig>,
    most_specific_wins: bool,
    headers: &mut HeaderMap,
    side: impl Fn(&'a HeaderMutationConfig) -> &'a [HeaderOp],
) {
    apply(side(filter), headers);
    if most_specific_wins {
        levels.rev().for_each(|l| apply(side(l), headers));
    } else {
        levels.for_each(|l| apply(side(l), headers));
    }
}

/// Applies `ops` in order. Names and values were parsed at config load, so
/// this only clones `HeaderValue`s (reference-counted for shared bytes).
pub fn apply(ops: &[HeaderOp], headers: &mut HeaderMap) {
    for op in ops {
        match op {
            HeaderOp::Remove(name) => {
                headers.remove(name);
            }
            HeaderOp::Set {
                name,
                value,
                action,
            } => match action {
                AppendAction::AppendIfExistsOrAdd => {
                    headers.append(name.clone(), value.clone());
                }
                AppendAction::AddIfAbsent => {
                    if !headers.contains_key(name) {
                        headers.insert(name.clone(), value.clone());
                    }
                }
                AppendAction::OverwriteIfExistsOrAdd => {
                    headers.insert(name.clone(), value.clone());
                }
                AppendAction::OverwriteIfExists => {
                    if headers.contains_key(name) {
                        headers.insert(name.clone(), value.clone());
                    }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderName, HeaderValue};

    use super::*;

    fn set(name: &'static str, value: &'static str, action: AppendAction) -> HeaderOp {
        HeaderOp::Set {
            name: HeaderName::from_static(name),
            value: HeaderValue::from_static(value),
            action,
        }
    }

    #[test]
    fn append_actions_follow_envoy() {
        let mut h = HeaderMap::new();
        h.insert("a", HeaderValue::from_static("1"));
        h.insert("gone", HeaderValue::from_static("x"));
        apply(
            &[
                set("a", "2", AppendAction::AppendIfExistsOrAdd),
                set("a", "3", AppendAction::AddIfAbsent),
                set("b", "1", AppendAction::AddIfAbsent),
                set("c", "1", AppendAction::OverwriteIfExists),
                set("b", "2", AppendAction::OverwriteIfExistsOrAdd),
                HeaderOp::Remove(HeaderName::from_static("gone")),
            ],
            &mut h,
        );
        let all = |n: &str| {
            h.get_all(n)
                .iter()
                .map(|v| v.to_str().unwrap_or("?").to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(all("a"), ["1", "2"]);
        assert_eq!(all("b"), ["2"]);
        assert!(all("c").is_empty());
        assert!(all("gone").is_empty());
    }
}
