//! `request_headers_to_add/remove` and `response_headers_to_add/remove`, at
//! every level that has them (route configuration, virtual host, route,
//! weighted cluster).

use envoy_types::pb::envoy::config::core::v3::{
    HeaderValue, HeaderValueOption, header_value_option::HeaderAppendAction,
};

use super::{
    super::{Context, at, item},
    matcher::header_name,
};
use crate::model;

/// One level's four header lists, by their proto field names under `path`.
pub(in crate::translate) struct Lists<'a> {
    pub request_add: &'a [HeaderValueOption],
    pub request_remove: &'a [String],
    pub response_add: &'a [HeaderValueOption],
    pub response_remove: &'a [String],
}

pub(in crate::translate) fn mutations(
    cx: &mut Context,
    path: &str,
    lists: Lists<'_>,
) -> model::HeaderMutations {
    model::HeaderMutations {
        request_add: to_add(cx, path, "request_headers_to_add", lists.request_add),
        request_remove: to_remove(cx, path, "request_headers_to_remove", lists.request_remove),
        response_add: to_add(cx, path, "response_headers_to_add", lists.response_add),
        response_remove: to_remove(
            cx,
            path,
            "response_headers_to_remove",
            lists.response_remove,
        ),
    }
}

fn to_remove(cx: &mut Context, path: &str, field: &str, names: &[String]) -> Vec<String> {
    names
        .iter()
        .enumerate()
        .filter_map(|(i, name)| modifiable(cx, name, &item(path, field, i)))
        .collect()
}

pub(in crate::translate) fn to_add(
    cx: &mut Context,
    path: &str,
    field: &str,
    options: &[HeaderValueOption],
) -> Vec<model::HeaderToAdd> {
    options
        .iter()
        .enumerate()
        .filter_map(|(i, o)| header_to_add(cx, o, &item(path, field, i)))
        .collect()
}

fn header_to_add(
    cx: &mut Context,
    o: &HeaderValueOption,
    path: &str,
) -> Option<model::HeaderToAdd> {
    let HeaderValueOption {
        header,
        append,
        append_action,
        keep_empty_value,
    } = o;
    let Some(HeaderValue {
        key,
        value,
        raw_value,
    }) = header
    else {
        cx.invalid(at(path, "header"), "is required");
        return None;
    };
    let hpath = at(path, "header");
    let name = modifiable(cx, key, &at(&hpath, "key"));
    let value = match (value.is_empty(), raw_value.is_empty()) {
        (_, true) => literal(cx, value, &at(&hpath, "value")),
        (true, false) => match std::str::from_utf8(raw_value) {
            Ok(raw) => literal(cx, raw, &at(&hpath, "raw_value")),
            Err(_) => {
                cx.unsupported(at(&hpath, "raw_value"), "raw_value that is not UTF-8");
                None
            }
        },
        (false, false) => {
            cx.invalid(hpath.clone(), "only one of value and raw_value may be set");
            None
        }
    };
    let action = match HeaderAppendAction::try_from(*append_action) {
        Ok(HeaderAppendAction::AppendIfExistsOrAdd) => model::AppendAction::AppendIfExistsOrAdd,
        Ok(HeaderAppendAction::AddIfAbsent) => model::AppendAction::AddIfAbsent,
        Ok(HeaderAppendAction::OverwriteIfExistsOrAdd) => {
            model::AppendAction::OverwriteIfExistsOrAdd
        }
        Ok(HeaderAppendAction::OverwriteIfExists) => model::AppendAction::OverwriteIfExists,
        Err(_) => {
            cx.invalid(
                at(path, "append_action"),
                format!("unknown value {append_action}"),
            );
            return None;
        }
    };
    // The deprecated `append` decides only while `append_action` is left at
    // its default; Envoy refuses the two together.
    let action = match append {
        None => action,
        Some(_) if *append_action != 0 => {
            cx.invalid(
                at(path, "append"),
                "append and append_action cannot both be set",
            );
            return None;
        }
        Some(a) if a.value => model::AppendAction::AppendIfExistsOrAdd,
        Some(_) => model::AppendAction::OverwriteIfExistsOrAdd,
    };
    Some(model::HeaderToAdd {
        name: name?,
        value: value?,
        action,
        keep_empty_value: *keep_empty_value,
    })
}

/// A header name a route may add or remove: Envoy refuses pseudo-headers
/// and `host` ("`:-prefixed or host headers may not be modified`").
fn modifiable(cx: &mut Context, name: &str, path: &str) -> Option<String> {
    let name = header_name(cx, name, path, true)?;
    if name.starts_with(':') || name == "host" {
        cx.invalid(
            path,
            format!("'{name}': pseudo-headers and host may not be modified"),
        );
        return None;
    }
    Some(name)
}

/// A header value with its format specifiers resolved. Only `%%` (a literal
/// `%`) is supported; command operators such as `%REQ(x)%` or
/// `%DOWNSTREAM_REMOTE_ADDRESS%` are refused by name.
pub(in crate::translate) fn literal(cx: &mut Context, value: &str, path: &str) -> Option<String> {
    if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | b'\0')) {
        cx.invalid(path, "must not contain CR, LF or NUL");
        return None;
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find('%') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        if let Some(tail) = after.strip_prefix('%') {
            out.push('%');
            rest = tail;
            continue;
        }
        match after.find('%') {
            Some(end) => {
                cx.unsupported(
                    path,
                    format!(
                        "header value format specifier %{}% (only literal values and %% are supported)",
                        &after[..end]
                    ),
                );
            }
            None => cx.invalid(
                path,
                format!("'{value}': unterminated '%' (write %% for a literal %)"),
            ),
        }
        return None;
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("plain", Ok("plain")),
            ("", Ok("")),
            ("100%%", Ok("100%")),
            ("%%a%%b%%", Ok("%a%b%")),
            ("%REQ(x-foo)%", Err("%REQ(x-foo)%")),
            (
                "ip=%DOWNSTREAM_REMOTE_ADDRESS%",
                Err("%DOWNSTREAM_REMOTE_ADDRESS%"),
            ),
            ("50%", Err("unterminated")),
            ("a\nb", Err("CR, LF")),
        ];
        for &(input, want) in cases {
            let mut cx = Context::default();
            let got = literal(&mut cx, input, "p");
            match want {
                Ok(v) => assert_eq!(got.as_deref(), Some(v), "{input:?}"),
                Err(word) => {
                    assert_eq!(got, None, "{input:?}");
                    let text = cx.problems[0].to_string();
                    assert!(text.contains(word), "{input:?}: {text}");
                }
            }
        }
    }
}
