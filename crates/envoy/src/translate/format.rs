//! Envoy's substitution format strings (`SubstitutionFormatString`, the
//! access log's command operators), parsed into the model's
//! [`FormatPart`]s. Local replies use them today; access logs will too.
//! A command Strait cannot render is refused by name, never printed as
//! text or dropped.

use envoy_types::pb::{
    envoy::config::core::v3::{SubstitutionFormatString, substitution_format_string::Format},
    google::protobuf::{Struct, Value, value::Kind},
};

use super::{Context, at, route};
use crate::model::local_reply::{
    BodyFormat, FormatCommand, FormatKind, FormatPart, JsonFormatValue,
};

/// A `SubstitutionFormatString`.
pub(super) fn substitution_format(
    cx: &mut Context,
    f: &SubstitutionFormatString,
    path: &str,
) -> Option<BodyFormat> {
    #[allow(deprecated)]
    let SubstitutionFormatString {
        omit_empty_values,
        content_type,
        formatters,
        json_format_options,
        format,
    } = f;
    if !formatters.is_empty() {
        cx.unsupported(at(path, "formatters"), "formatters (format extensions)");
    }
    // `json_format_options.sort_properties` is deprecated and has no
    // effect: Envoy always sorts a JSON format's keys, as this does.
    let _ = json_format_options;
    let kind = match format {
        #[allow(deprecated)]
        Some(Format::TextFormat(s)) => FormatKind::Text(parts(cx, s, &at(path, "text_format"))?),
        Some(Format::TextFormatSource(ds)) => {
            let p = at(path, "text_format_source");
            let text = route::data_source(cx, ds, &p).unwrap_or_default();
            FormatKind::Text(parts(cx, &text, &p)?)
        }
        Some(Format::JsonFormat(s)) => {
            FormatKind::Json(json_struct(cx, s, &at(path, "json_format"))?)
        }
        None => {
            cx.invalid(
                at(path, "format"),
                "one of text_format, text_format_source or json_format is required",
            );
            return None;
        }
    };
    Some(BodyFormat {
        kind,
        content_type: content_type.clone(),
        omit_empty_values: *omit_empty_values,
    })
}

fn json_struct(cx: &mut Context, s: &Struct, path: &str) -> Option<Vec<(String, JsonFormatValue)>> {
    let before = cx.problems.len();
    // `fields` is a BTreeMap: sorted by key, as Envoy prints them.
    let out: Vec<(String, JsonFormatValue)> = s
        .fields
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), json_value(cx, v, &at(path, k))?)))
        .collect();
    (cx.problems.len() == before).then_some(out)
}

fn json_value(cx: &mut Context, v: &Value, path: &str) -> Option<JsonFormatValue> {
    Some(match &v.kind {
        Some(Kind::StringValue(s)) => JsonFormatValue::Format(parts(cx, s, path)?),
        // Whole numbers print without a fraction, as protobuf's JSON does.
        Some(Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() < 9.0e15 => {
            JsonFormatValue::Literal(serde_json::json!(*n as i64))
        }
        Some(Kind::NumberValue(n)) => JsonFormatValue::Literal(serde_json::json!(n)),
        Some(Kind::BoolValue(b)) => JsonFormatValue::Literal(serde_json::Value::Bool(*b)),
        Some(Kind::NullValue(_)) | None => JsonFormatValue::Literal(serde_json::Value::Null),
        Some(Kind::StructValue(s)) => JsonFormatValue::Struct(json_struct(cx, s, path)?),
        Some(Kind::ListValue(l)) => JsonFormatValue::List(
            l.values
                .iter()
                .enumerate()
                .map(|(i, v)| json_value(cx, v, &format!("{path}[{i}]")))
                .collect::<Option<_>>()?,
        ),
    })
}

/// A format string: text and `%COMMAND(arg):max%` operators (`%%` is a
/// literal `%`).
pub(super) fn parts(cx: &mut Context, s: &str, path: &str) -> Option<Vec<FormatPart>> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut rest = s;
    while let Some(start) = rest.find('%') {
        text.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        if let Some(tail) = after.strip_prefix('%') {
            text.push('%');
            rest = tail;
            continue;
        }
        let Some(end) = command_end(after) else {
            cx.invalid(path, format!("unterminated format command in {s:?}"));
            return None;
        };
        if !text.is_empty() {
            out.push(FormatPart::Text(std::mem::take(&mut text)));
        }
        out.push(FormatPart::Command(command(cx, &after[..end], path)?));
        rest = &after[end + 1..];
    }
    text.push_str(rest);
    if !text.is_empty() {
        out.push(FormatPart::Text(text));
    }
    Some(out)
}

/// Where a command ends: the next `%` outside its parentheses.
fn command_end(s: &str) -> Option<usize> {
    let mut depth = 0u32;
    for (i, b) in s.bytes().enumerate() {
        match b {
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            b'%' if depth == 0 => return Some(i),
            _ => {}
        }
    }
    None
}

fn command(cx: &mut Context, spec: &str, path: &str) -> Option<FormatCommand> {
    let (name, arg, max) = split_command(spec);
    let max_len = match max {
        None => None,
        Some(m) => match m.parse::<usize>() {
            Ok(n) => Some(n),
            Err(_) => {
                cx.invalid(
                    path,
                    format!("%{spec}%: the length after ':' must be a number"),
                );
                return None;
            }
        },
    };
    let no_arg = |cx: &mut Context, c: FormatCommand| {
        if arg.is_some() || max_len.is_some() {
            cx.invalid(path, format!("%{spec}% takes no argument"));
            None
        } else {
            Some(c)
        }
    };
    match name {
        "LOCAL_REPLY_BODY" => no_arg(cx, FormatCommand::LocalReplyBody),
        "RESPONSE_CODE" => no_arg(cx, FormatCommand::ResponseCode),
        "RESPONSE_CODE_DETAILS" => no_arg(cx, FormatCommand::ResponseCodeDetails),
        "RESPONSE_FLAGS" => no_arg(cx, FormatCommand::ResponseFlags),
        "PROTOCOL" => no_arg(cx, FormatCommand::Protocol),
        "REQ" | "RESP" => {
            let Some(arg) = arg.filter(|a| !a.is_empty()) else {
                cx.invalid(path, format!("%{spec}% needs a header name"));
                return None;
            };
            let (name, alternative) = match arg.split_once('?') {
                Some((n, a)) => (n, Some(a.to_ascii_lowercase())),
                None => (arg, None),
            };
            let name = name.to_ascii_lowercase();
            Some(if name_of(spec) == "REQ" {
                FormatCommand::Request {
                    name,
                    alternative,
                    max_len,
                }
            } else {
                FormatCommand::Response {
                    name,
                    alternative,
                    max_len,
                }
            })
        }
        _ => {
            cx.unsupported(path, format!("format command %{name}%"));
            None
        }
    }
}

fn name_of(spec: &str) -> &str {
    spec.split(['(', ':']).next().unwrap_or(spec)
}

/// `NAME(arg):max` into its three parts.
fn split_command(spec: &str) -> (&str, Option<&str>, Option<&str>) {
    match spec.find('(') {
        Some(open) => {
            let name = &spec[..open];
            let Some(close) = spec.rfind(')') else {
                return (spec, None, None);
            };
            let arg = &spec[open + 1..close.max(open + 1)];
            let max = spec[close + 1..].strip_prefix(':');
            (name, Some(arg), max)
        }
        None => match spec.split_once(':') {
            Some((n, m)) => (n, None, Some(m)),
            None => (spec, None, None),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::Context;

    fn cx() -> Context {
        Context::default()
    }

    #[test]
    fn commands_text_and_escapes() {
        let mut cx = cx();
        let p = parts(
            &mut cx,
            "100%% %RESPONSE_CODE%:%REQ(X-A?x-b):3% %RESP(ct)%",
            "f",
        )
        .expect("parses");
        assert!(cx.problems.is_empty(), "{:?}", cx.problems);
        assert_eq!(
            p,
            vec![
                FormatPart::Text("100% ".into()),
                FormatPart::Command(FormatCommand::ResponseCode),
                FormatPart::Text(":".into()),
                FormatPart::Command(FormatCommand::Request {
                    name: "x-a".into(),
                    alternative: Some("x-b".into()),
                    max_len: Some(3)
                }),
                FormatPart::Text(" ".into()),
                FormatPart::Command(FormatCommand::Response {
                    name: "ct".into(),
                    alternative: None,
                    max_len: None
                }),
            ]
        );
    }

    #[test]
    fn unknown_and_malformed_commands_are_refused_by_name() {
        for (s, want) in [
            ("%START_TIME%", "%START_TIME%"),
            ("%DYNAMIC_METADATA(a:b)%", "%DYNAMIC_METADATA%"),
            ("%REQ()%", "needs a header name"),
            ("%RESPONSE_CODE(x)%", "takes no argument"),
            ("%REQ(a):x%", "must be a number"),
            ("50%", "unterminated"),
        ] {
            let mut cx = cx();
            assert!(parts(&mut cx, s, "f").is_none(), "{s}");
            let text = format!("{:?}", cx.problems);
            assert!(text.contains(want), "{s}: {text}");
        }
    }

    #[test]
    fn whole_json_numbers_stay_integers() {
        let mut cx = cx();
        let v = json_value(
            &mut cx,
            &Value {
                kind: Some(Kind::NumberValue(1.0)),
            },
            "f",
        );
        assert_eq!(v, Some(JsonFormatValue::Literal(serde_json::json!(1))));
        assert_eq!(serde_json::json!(1).to_string(), "1");
    }
}
