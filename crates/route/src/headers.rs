//! Header mutations (`request_headers_to_add/remove`,
//! `response_headers_to_add/remove`), compiled once and applied to an
//! [`http::HeaderMap`].

use http::{HeaderMap, HeaderName, HeaderValue};
use strait_model::{AppendAction, HeaderMutations, HeaderToAdd};

use crate::{RouteError, matcher::header_name};

/// One level's compiled header mutations (a route configuration, virtual
/// host, route or weighted cluster).
///
/// Immutable, `Send + Sync`; applying it allocates only what the header map
/// needs to grow (names and values are shared, not copied).
#[derive(Debug, Clone, Default)]
pub struct HeaderMutation {
    request: Mutations,
    response: Mutations,
}

#[derive(Debug, Clone, Default)]
struct Mutations {
    remove: Box<[HeaderName]>,
    add: Box<[Addition]>,
}

#[derive(Debug, Clone)]
struct Addition {
    name: HeaderName,
    value: HeaderValue,
    action: AppendAction,
}

impl HeaderMutation {
    /// Compiles one level; `at` names it in errors. Fails when a name or
    /// value cannot be a header (translation already refuses those).
    pub fn compile(config: &HeaderMutations, at: &dyn Fn() -> String) -> Result<Self, RouteError> {
        Ok(Self {
            request: Mutations::compile(&config.request_add, &config.request_remove, at)?,
            response: Mutations::compile(&config.response_add, &config.response_remove, at)?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.request.is_empty() && self.response.is_empty()
    }

    /// Applies the request mutations to `headers`.
    pub fn apply_request(&self, headers: &mut HeaderMap) {
        self.request.apply(headers);
    }

    /// Applies the response mutations to `headers`.
    pub fn apply_response(&self, headers: &mut HeaderMap) {
        self.response.apply(headers);
    }
}

impl Mutations {
    fn compile(
        add: &[HeaderToAdd],
        remove: &[String],
        at: &dyn Fn() -> String,
    ) -> Result<Self, RouteError> {
        let remove = remove
            .iter()
            .map(|name| header_name(name, at))
            .collect::<Result<_, _>>()?;
        let add = add
            .iter()
            // Envoy drops empty values unless told to keep them; with literal
            // values that can be decided once, here.
            .filter(|h| h.keep_empty_value || !h.value.is_empty())
            .map(|h| {
                Ok(Addition {
                    name: header_name(&h.name, at)?,
                    value: HeaderValue::from_str(&h.value).map_err(|_| {
                        RouteError::InvalidHeader {
                            at: at(),
                            name: h.name.clone(),
                        }
                    })?,
                    action: h.action,
                })
            })
            .collect::<Result<_, RouteError>>()?;
        Ok(Self { remove, add })
    }

    fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.add.is_empty()
    }

    /// Envoy's order within a level: removals, then appends in list order,
    /// then overwrites (which replace every value, including ones this level
    /// just appended; several overwrites of one name all stay).
    fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for a in &self.add {
            match a.action {
                AppendAction::AppendIfExistsOrAdd => {
                    headers.append(a.name.clone(), a.value.clone());
                }
                AppendAction::AddIfAbsent => {
                    if !headers.contains_key(&a.name) {
                        headers.append(a.name.clone(), a.value.clone());
                    }
                }
                AppendAction::OverwriteIfExistsOrAdd | AppendAction::OverwriteIfExists => {}
            }
        }
        for (i, a) in self.add.iter().enumerate() {
            let overwrites = match a.action {
                AppendAction::OverwriteIfExistsOrAdd => true,
                AppendAction::OverwriteIfExists => headers.contains_key(&a.name),
                AppendAction::AppendIfExistsOrAdd | AppendAction::AddIfAbsent => false,
            };
            if !overwrites {
                continue;
            }
            let replaced_already = self.add[..i].iter().any(|earlier| {
                earlier.name == a.name
                    && matches!(
                        earlier.action,
                        AppendAction::OverwriteIfExistsOrAdd | AppendAction::OverwriteIfExists
                    )
            });
            if replaced_already {
                headers.append(a.name.clone(), a.value.clone());
            } else {
                headers.insert(a.name.clone(), a.value.clone());
            }
        }
    }
}

/// Applies request (or response) mutations of several levels, given most
/// specific first, in Envoy's order: most specific first by default (so the
/// least specific wins a conflict), or least specific first when
/// `most_specific_wins`.
pub(crate) fn apply_levels(
    levels: &[Option<&HeaderMutation>],
    most_specific_wins: bool,
    headers: &mut HeaderMap,
    response: bool,
) {
    let apply = |level: &HeaderMutation, headers: &mut HeaderMap| {
        if response {
            level.apply_response(headers);
        } else {
            level.apply_request(headers);
        }
    };
    if most_specific_wins {
        for level in levels.iter().rev().flatten() {
            apply(level, headers);
        }
    } else {
        for level in levels.iter().flatten() {
            apply(level, headers);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(name: &str, value: &str, action: AppendAction) -> HeaderToAdd {
        HeaderToAdd {
            name: name.to_owned(),
            value: value.to_owned(),
            action,
            keep_empty_value: false,
        }
    }

    fn level(add: Vec<HeaderToAdd>, remove: &[&str]) -> HeaderMutation {
        HeaderMutation::compile(
            &HeaderMutations {
                request_add: add.clone(),
                request_remove: remove.iter().map(|r| (*r).to_owned()).collect(),
                response_add: add,
                response_remove: remove.iter().map(|r| (*r).to_owned()).collect(),
            },
            &|| "test".to_owned(),
        )
        .expect("compiles")
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        m
    }

    fn values(m: &HeaderMap, name: &str) -> Vec<String> {
        m.get_all(name)
            .iter()
            .map(|v| v.to_str().expect("text").to_owned())
            .collect()
    }

    #[test]
    fn append_actions() {
        use AppendAction::*;
        type Case = (
            AppendAction,
            &'static [(&'static str, &'static str)],
            &'static [&'static str],
        );
        let cases: &[Case] = &[
            (AppendIfExistsOrAdd, &[], &["new"]),
            (AppendIfExistsOrAdd, &[("x", "old")], &["old", "new"]),
            (AddIfAbsent, &[], &["new"]),
            (AddIfAbsent, &[("x", "old")], &["old"]),
            (OverwriteIfExistsOrAdd, &[], &["new"]),
            (OverwriteIfExistsOrAdd, &[("x", "a"), ("x", "b")], &["new"]),
            (OverwriteIfExists, &[], &[]),
            (OverwriteIfExists, &[("x", "a"), ("x", "b")], &["new"]),
        ];
        for (action, before, want) in cases {
            let mut headers = map(before);
            let l = level(vec![add("x", "new", *action)], &[]);
            l.apply_request(&mut headers);
            assert_eq!(values(&headers, "x"), *want, "{action:?} on {before:?}");
            let mut headers = map(before);
            l.apply_response(&mut headers);
            assert_eq!(values(&headers, "x"), *want, "response {action:?}");
        }
    }

    #[test]
    fn removals_run_before_additions_and_empty_values_are_dropped() {
        let mut keep = add("e2", "", AppendAction::AppendIfExistsOrAdd);
        keep.keep_empty_value = true;
        let l = level(
            vec![
                add("x", "added", AppendAction::AppendIfExistsOrAdd),
                add("e1", "", AppendAction::AppendIfExistsOrAdd),
                keep,
            ],
            &["x", "gone"],
        );
        let mut headers = map(&[("x", "old"), ("gone", "1"), ("stay", "1")]);
        l.apply_request(&mut headers);
        assert_eq!(values(&headers, "x"), ["added"]);
        assert!(!headers.contains_key("gone"));
        assert!(!headers.contains_key("e1"));
        assert_eq!(values(&headers, "e2"), [""]);
        assert_eq!(values(&headers, "stay"), ["1"]);
    }

    #[test]
    fn overwrites_follow_the_levels_appends() {
        let l = level(
            vec![
                add("x", "o1", AppendAction::OverwriteIfExistsOrAdd),
                add("x", "a", AppendAction::AppendIfExistsOrAdd),
                add("x", "o2", AppendAction::OverwriteIfExistsOrAdd),
            ],
            &[],
        );
        let mut headers = map(&[("x", "old")]);
        l.apply_request(&mut headers);
        assert_eq!(values(&headers, "x"), ["o1", "o2"]);
    }

    #[test]
    fn level_order() {
        let route = level(
            vec![add("x", "route", AppendAction::OverwriteIfExistsOrAdd)],
            &[],
        );
        let vhost = level(
            vec![add("x", "vhost", AppendAction::OverwriteIfExistsOrAdd)],
            &[],
        );
        let config = level(
            vec![add("x", "config", AppendAction::OverwriteIfExistsOrAdd)],
            &[],
        );
        let levels = [Some(&route), None, Some(&vhost), Some(&config)];
        for (most_specific_wins, want) in [(false, "config"), (true, "route")] {
            let mut headers = HeaderMap::new();
            apply_levels(&levels, most_specific_wins, &mut headers, false);
            assert_eq!(values(&headers, "x"), [want], "{most_specific_wins}");
        }
        // Appends keep every level's value, most specific first by default.
        let a = |v: &str| level(vec![add("y", v, AppendAction::AppendIfExistsOrAdd)], &[]);
        let (r, v, c) = (a("r"), a("v"), a("c"));
        let mut headers = HeaderMap::new();
        apply_levels(&[Some(&r), Some(&v), Some(&c)], false, &mut headers, true);
        assert_eq!(values(&headers, "y"), ["r", "v", "c"]);
    }

    #[test]
    fn bad_values_are_refused() {
        let err = HeaderMutation::compile(
            &HeaderMutations {
                request_add: vec![add("x", "a\nb", AppendAction::AppendIfExistsOrAdd)],
                ..HeaderMutations::default()
            },
            &|| "vh".to_owned(),
        )
        .expect_err("newline");
        assert!(matches!(err, RouteError::InvalidHeader { .. }), "{err:?}");
    }
}
