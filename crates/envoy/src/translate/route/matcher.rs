//! A route's `match` block: path, headers, query parameters, gRPC, runtime
//! fraction; and the string and regex matchers they share.

use envoy_types::pb::envoy::{
    config::{
        core::v3::RuntimeFractionalPercent,
        route::v3::{
            HeaderMatcher, QueryParameterMatcher, RouteMatch, header_matcher::HeaderMatchSpecifier,
            query_parameter_matcher::QueryParameterMatchSpecifier, route_match::PathSpecifier,
        },
    },
    r#type::{
        matcher::v3::{
            RegexMatchAndSubstitute, RegexMatcher, StringMatcher, regex_matcher::EngineType,
            string_matcher::MatchPattern,
        },
        v3::{FractionalPercent, Int64Range, fractional_percent::DenominatorType},
    },
};

use super::super::{Context, at, bool_value, item};
use crate::model;

pub(in crate::translate) fn route_match(
    cx: &mut Context,
    m: &RouteMatch,
    path: &str,
) -> Option<model::RouteMatch> {
    let RouteMatch {
        case_sensitive,
        runtime_fraction,
        headers,
        query_parameters,
        cookies,
        grpc,
        tls_context,
        dynamic_metadata,
        filter_state,
        path_specifier,
    } = m;
    // `tls_context: {}` restricts matching by its presence; Strait has no
    // downstream TLS yet, so it cannot be honoured.
    reject_set!(cx, path; cookies, tls_context, dynamic_metadata, filter_state);
    let before = cx.problems.len();
    let unsupported = |cx: &mut Context, field: &str| {
        cx.unsupported(at(path, field), field);
        None
    };
    let path_match = match path_specifier {
        Some(PathSpecifier::Prefix(p)) => Some(model::PathMatch::Prefix(p.clone())),
        Some(PathSpecifier::Path(p)) => Some(model::PathMatch::Exact(p.clone())),
        Some(PathSpecifier::SafeRegex(r)) => {
            regex(cx, r, &at(path, "safe_regex")).map(model::PathMatch::Regex)
        }
        Some(PathSpecifier::PathSeparatedPrefix(p)) => {
            separated_prefix(cx, p, &at(path, "path_separated_prefix"))
        }
        Some(PathSpecifier::ConnectMatcher(_)) => unsupported(cx, "connect_matcher"),
        Some(PathSpecifier::PathMatchPolicy(_)) => unsupported(cx, "path_match_policy"),
        None => {
            cx.invalid(
                path,
                "needs one of prefix, path, safe_regex, path_separated_prefix",
            );
            None
        }
    };
    let headers = headers
        .iter()
        .enumerate()
        .filter_map(|(i, h)| header_matcher(cx, h, &item(path, "headers", i)))
        .collect();
    let query_parameters = query_parameters
        .iter()
        .enumerate()
        .filter_map(|(i, q)| query_matcher(cx, q, &item(path, "query_parameters", i)))
        .collect();
    let runtime_fraction = runtime_fraction
        .as_ref()
        .and_then(|r| runtime_percent(cx, r, &at(path, "runtime_fraction")));
    let out = model::RouteMatch {
        path: path_match?,
        case_sensitive: bool_value(case_sensitive, true),
        headers,
        query_parameters,
        // `grpc: {}` has no fields: its presence is the condition.
        grpc: grpc.is_some(),
        runtime_fraction,
    };
    (cx.problems.len() == before).then_some(out)
}

/// `path_separated_prefix`: Envoy's validation pattern `^[^?#]+[^?#/]$`.
fn separated_prefix(cx: &mut Context, p: &str, path: &str) -> Option<model::PathMatch> {
    if p.is_empty() || p.contains(['?', '#']) || p.ends_with('/') {
        cx.invalid(
            path,
            format!("'{p}' must be non-empty, without '?' or '#', and not end with '/'"),
        );
        return None;
    }
    Some(model::PathMatch::SeparatedPrefix(p.to_owned()))
}

fn header_matcher(cx: &mut Context, h: &HeaderMatcher, path: &str) -> Option<model::HeaderMatcher> {
    let HeaderMatcher {
        name,
        invert_match,
        treat_missing_header_as_empty,
        header_match_specifier,
    } = h;
    let name = header_name(cx, name, &at(path, "name"), true)?;
    // The deprecated direct fields are `string_match` without `ignore_case`.
    let plain = |pattern| {
        Some(model::HeaderRule::String(model::StringMatch {
            pattern,
            ignore_case: false,
        }))
    };
    let non_empty = |cx: &mut Context, field: &str, value: &str| {
        if value.is_empty() {
            cx.invalid(at(path, field), "must not be empty (use present_match)");
            false
        } else {
            true
        }
    };
    let rule = match header_match_specifier {
        None => Some(model::HeaderRule::Present(true)),
        Some(HeaderMatchSpecifier::PresentMatch(present)) => {
            Some(model::HeaderRule::Present(*present))
        }
        Some(HeaderMatchSpecifier::ExactMatch(v)) => plain(model::StringPattern::Exact(v.clone())),
        Some(HeaderMatchSpecifier::PrefixMatch(v)) => non_empty(cx, "prefix_match", v)
            .then(|| plain(model::StringPattern::Prefix(v.clone())))
            .flatten(),
        Some(HeaderMatchSpecifier::SuffixMatch(v)) => non_empty(cx, "suffix_match", v)
            .then(|| plain(model::StringPattern::Suffix(v.clone())))
            .flatten(),
        Some(HeaderMatchSpecifier::ContainsMatch(v)) => non_empty(cx, "contains_match", v)
            .then(|| plain(model::StringPattern::Contains(v.clone())))
            .flatten(),
        Some(HeaderMatchSpecifier::SafeRegexMatch(r)) => {
            regex(cx, r, &at(path, "safe_regex_match"))
                .and_then(|r| plain(model::StringPattern::Regex(r)))
        }
        Some(HeaderMatchSpecifier::StringMatch(s)) => {
            string_match(cx, s, &at(path, "string_match")).map(model::HeaderRule::String)
        }
        Some(HeaderMatchSpecifier::RangeMatch(Int64Range { start, end })) => {
            if start >= end {
                cx.invalid(
                    at(path, "range_match"),
                    format!("start {start} must be less than end {end}"),
                );
                None
            } else {
                Some(model::HeaderRule::Range {
                    start: *start,
                    end: *end,
                })
            }
        }
    };
    Some(model::HeaderMatcher {
        name,
        rule: rule?,
        invert: *invert_match,
        treat_missing_as_empty: *treat_missing_header_as_empty,
    })
}

fn query_matcher(
    cx: &mut Context,
    q: &QueryParameterMatcher,
    path: &str,
) -> Option<model::QueryParameterMatcher> {
    let QueryParameterMatcher {
        name,
        query_parameter_match_specifier,
    } = q;
    if name.is_empty() {
        cx.invalid(at(path, "name"), "must not be empty");
        return None;
    }
    let value = match query_parameter_match_specifier {
        Some(QueryParameterMatchSpecifier::StringMatch(s)) => {
            Some(string_match(cx, s, &at(path, "string_match"))?)
        }
        Some(QueryParameterMatchSpecifier::PresentMatch(true)) | None => None,
        // Envoy has no "absent" query matcher: `present_match: false` would
        // still require the key, which is surely not what was meant.
        Some(QueryParameterMatchSpecifier::PresentMatch(false)) => {
            cx.unsupported(at(path, "present_match"), "present_match: false");
            return None;
        }
    };
    Some(model::QueryParameterMatcher {
        name: name.clone(),
        value,
    })
}

/// A `StringMatcher`. Envoy requires non-empty prefix, suffix and contains
/// patterns (an empty exact pattern is allowed).
pub(in crate::translate) fn string_match(
    cx: &mut Context,
    s: &StringMatcher,
    path: &str,
) -> Option<model::StringMatch> {
    let StringMatcher {
        ignore_case,
        match_pattern,
    } = s;
    let non_empty = |cx: &mut Context, field: &str, v: &String| {
        if v.is_empty() {
            cx.invalid(at(path, field), "must not be empty");
            None
        } else {
            Some(v.clone())
        }
    };
    let pattern = match match_pattern {
        Some(MatchPattern::Exact(v)) => model::StringPattern::Exact(v.clone()),
        Some(MatchPattern::Prefix(v)) => model::StringPattern::Prefix(non_empty(cx, "prefix", v)?),
        Some(MatchPattern::Suffix(v)) => model::StringPattern::Suffix(non_empty(cx, "suffix", v)?),
        Some(MatchPattern::Contains(v)) => {
            model::StringPattern::Contains(non_empty(cx, "contains", v)?)
        }
        Some(MatchPattern::SafeRegex(r)) => {
            model::StringPattern::Regex(regex(cx, r, &at(path, "safe_regex"))?)
        }
        Some(MatchPattern::Custom(_)) => {
            cx.unsupported(at(path, "custom"), "custom string matchers");
            return None;
        }
        None => {
            cx.invalid(
                path,
                "needs one of exact, prefix, suffix, contains, safe_regex",
            );
            return None;
        }
    };
    Some(model::StringMatch {
        pattern,
        ignore_case: *ignore_case,
    })
}

/// A `RegexMatcher`: the pattern, checked to compile. Envoy's RE2 and the
/// `regex` crate agree on the syntax Envoy documents (no backreferences or
/// look-around in either).
pub(in crate::translate) fn regex(
    cx: &mut Context,
    r: &RegexMatcher,
    path: &str,
) -> Option<String> {
    let RegexMatcher { regex, engine_type } = r;
    if let Some(EngineType::GoogleRe2(re2)) = engine_type
        && re2.max_program_size.is_some()
    {
        // A limit on RE2's program size, which the `regex` crate does not
        // measure the same way; deprecated in Envoy.
        cx.unsupported(
            at(&at(path, "google_re2"), "max_program_size"),
            "max_program_size",
        );
    }
    check_regex(cx, regex, &at(path, "regex"))
}

fn check_regex(cx: &mut Context, pattern: &str, path: &str) -> Option<String> {
    match regex::Regex::new(pattern) {
        Ok(_) => Some(pattern.to_owned()),
        Err(e) => {
            cx.invalid(path, format!("invalid regex: {e}"));
            None
        }
    }
}

/// A `RegexMatchAndSubstitute`, with its substitution checked against the
/// pattern's capture groups as RE2 does.
pub(in crate::translate) fn regex_rewrite(
    cx: &mut Context,
    r: &RegexMatchAndSubstitute,
    path: &str,
) -> Option<model::RegexRewrite> {
    let RegexMatchAndSubstitute {
        pattern,
        substitution,
    } = r;
    let Some(pattern) = pattern else {
        cx.invalid(at(path, "pattern"), "is required");
        return None;
    };
    let regex_path = at(path, "pattern");
    let pattern = regex(cx, pattern, &regex_path)?;
    let groups = regex::Regex::new(&pattern).map_or(0, |re| re.captures_len() - 1);
    if let Err(message) = check_substitution(substitution, groups) {
        cx.invalid(at(path, "substitution"), message);
        return None;
    }
    Some(model::RegexRewrite {
        pattern,
        substitution: substitution.clone(),
    })
}

/// RE2's rewrite rules: `\` must be followed by a digit naming an existing
/// group, or by another `\`.
fn check_substitution(substitution: &str, groups: usize) -> Result<(), String> {
    let mut chars = substitution.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            continue;
        }
        match chars.next() {
            Some('\\') => {}
            Some(d) if d.is_ascii_digit() => {
                let n = d as usize - '0' as usize;
                if n > groups {
                    return Err(format!(
                        "refers to group \\{n} but the pattern has {groups} capture groups"
                    ));
                }
            }
            _ => return Err("a '\\' must be followed by a digit or '\\'".to_owned()),
        }
    }
    Ok(())
}

/// `runtime_fraction`: only its `default_value` (there is no runtime).
fn runtime_percent(
    cx: &mut Context,
    r: &RuntimeFractionalPercent,
    path: &str,
) -> Option<model::FractionalPercent> {
    // The runtime key names a value to look up; without a runtime layer the
    // default is what Envoy uses when the key is absent, so it is ignored.
    let RuntimeFractionalPercent {
        default_value,
        runtime_key: _,
    } = r;
    let Some(default_value) = default_value else {
        cx.invalid(at(path, "default_value"), "is required");
        return None;
    };
    fractional_percent(cx, default_value, &at(path, "default_value"))
}

/// A `FractionalPercent`; numerators above the denominator are clamped to
/// it, as Envoy does.
pub(in crate::translate) fn fractional_percent(
    cx: &mut Context,
    f: &FractionalPercent,
    path: &str,
) -> Option<model::FractionalPercent> {
    let FractionalPercent {
        numerator,
        denominator,
    } = f;
    let denominator = match DenominatorType::try_from(*denominator) {
        Ok(DenominatorType::Hundred) => 100,
        Ok(DenominatorType::TenThousand) => 10_000,
        Ok(DenominatorType::Million) => 1_000_000,
        Err(_) => {
            cx.invalid(
                at(path, "denominator"),
                format!("unknown denominator {denominator}"),
            );
            return None;
        }
    };
    Some(model::FractionalPercent {
        numerator: (*numerator).min(denominator),
        denominator,
    })
}

/// A header name as matchers and mutations use it: lower-cased, a valid
/// HTTP token, or (when `pseudo` is allowed) one of the pseudo-headers.
pub(in crate::translate) fn header_name(
    cx: &mut Context,
    name: &str,
    path: &str,
    pseudo: bool,
) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    let valid = match lower.strip_prefix(':') {
        Some(rest) if pseudo => !rest.is_empty() && http_token(rest),
        Some(_) => false,
        None => !lower.is_empty() && http_token(&lower),
    };
    if valid {
        Some(lower)
    } else {
        cx.invalid(path, format!("'{name}' is not a valid header name"));
        None
    }
}

/// RFC 9110 `token`.
fn http_token(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutions() {
        let cases: &[(&str, usize, bool)] = &[
            ("", 0, true),
            ("plain", 0, true),
            (r"\0", 0, true),
            (r"\1", 0, false),
            (r"\2/instance/\1", 2, true),
            (r"\3", 2, false),
            (r"a\\b", 0, true),
            (r"a\b", 1, false),
            ("trailing\\", 1, false),
        ];
        for &(s, groups, ok) in cases {
            assert_eq!(
                check_substitution(s, groups).is_ok(),
                ok,
                "{s:?} with {groups}"
            );
        }
    }

    #[test]
    fn header_names() {
        let mut cx = Context::default();
        assert_eq!(
            header_name(&mut cx, "X-Foo", "p", false).as_deref(),
            Some("x-foo")
        );
        assert_eq!(
            header_name(&mut cx, ":method", "p", true).as_deref(),
            Some(":method")
        );
        assert!(cx.problems.is_empty());
        for bad in [":method", "", "a b", "x:y", ":"] {
            assert_eq!(header_name(&mut cx, bad, "p", false), None, "{bad:?}");
        }
    }
}
