//! Envoy's substitution format strings (`SubstitutionFormatString`, the
//! access log's command operators), parsed into the model's
//! [`FormatPart`]s, for access logs and local reply bodies alike. A command
//! Strait cannot render is refused by name (Envoy refuses an unknown one
//! too), never printed as text or dropped.

use envoy_types::pb::{
    envoy::config::core::v3::{SubstitutionFormatString, substitution_format_string::Format},
    google::protobuf::{Struct, Value, value::Kind},
};

use super::{Context, at, route};
use crate::model::access_log::{
    AddressOf, BodyFormat, FormatCommand, FormatKind, FormatPart, HeaderRef, JsonFormatValue,
    START_TIME_CONVERSIONS,
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

pub(super) fn json_struct(
    cx: &mut Context,
    s: &Struct,
    path: &str,
) -> Option<Vec<(String, JsonFormatValue)>> {
    let before = cx.problems.len();
    // Sorted by key, as Envoy prints them; `fields` is a hash map, so the
    // order is made here (a config translated twice must compare equal).
    let mut fields: Vec<_> = s.fields.iter().collect();
    fields.sort_by(|a, b| a.0.cmp(b.0));
    let out: Vec<(String, JsonFormatValue)> = fields
        .into_iter()
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
    let address = |of, without_port| Some(FormatCommand::Address { of, without_port });
    let simple = match name {
        "LOCAL_REPLY_BODY" => Some(FormatCommand::LocalReplyBody),
        "RESPONSE_CODE" => Some(FormatCommand::ResponseCode),
        "RESPONSE_CODE_DETAILS" => Some(FormatCommand::ResponseCodeDetails),
        "RESPONSE_FLAGS" => Some(FormatCommand::ResponseFlags),
        "RESPONSE_FLAGS_LONG" => Some(FormatCommand::ResponseFlagsLong),
        "CONNECTION_TERMINATION_DETAILS" => Some(FormatCommand::ConnectionTerminationDetails),
        "UPSTREAM_TRANSPORT_FAILURE_REASON" => Some(FormatCommand::UpstreamTransportFailureReason),
        "PROTOCOL" => Some(FormatCommand::Protocol),
        "BYTES_RECEIVED" => Some(FormatCommand::BytesReceived),
        "BYTES_SENT" => Some(FormatCommand::BytesSent),
        "DURATION" => Some(FormatCommand::Duration),
        "REQUEST_DURATION" => Some(FormatCommand::RequestDuration),
        "RESPONSE_DURATION" => Some(FormatCommand::ResponseDuration),
        "RESPONSE_TX_DURATION" => Some(FormatCommand::ResponseTxDuration),
        "UPSTREAM_HOST" | "UPSTREAM_REMOTE_ADDRESS" => address(AddressOf::UpstreamRemote, false),
        // Envoy 1.40 has no `UPSTREAM_HOST_WITHOUT_PORT` (it refuses it).
        "UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => address(AddressOf::UpstreamRemote, true),
        "UPSTREAM_LOCAL_ADDRESS" => address(AddressOf::UpstreamLocal, false),
        "UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => address(AddressOf::UpstreamLocal, true),
        "DOWNSTREAM_LOCAL_ADDRESS" => address(AddressOf::DownstreamLocal, false),
        "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => address(AddressOf::DownstreamLocal, true),
        "DOWNSTREAM_REMOTE_ADDRESS" => address(AddressOf::DownstreamRemote, false),
        "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => address(AddressOf::DownstreamRemote, true),
        "DOWNSTREAM_DIRECT_REMOTE_ADDRESS" => address(AddressOf::DownstreamDirectRemote, false),
        "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT" => {
            address(AddressOf::DownstreamDirectRemote, true)
        }
        "UPSTREAM_CLUSTER" => Some(FormatCommand::UpstreamCluster),
        // The cluster's own name, never its `alt_stat_name` (which Strait's
        // `%UPSTREAM_CLUSTER%` does not print either); Istio's recent
        // default formats use it.
        "UPSTREAM_CLUSTER_RAW" => Some(FormatCommand::UpstreamCluster),
        "REQUESTED_SERVER_NAME" => Some(FormatCommand::RequestedServerName),
        "ROUTE_NAME" => Some(FormatCommand::RouteName),
        "UPSTREAM_REQUEST_ATTEMPT_COUNT" => Some(FormatCommand::UpstreamRequestAttemptCount),
        "DOWNSTREAM_PEER_URI_SAN" => Some(FormatCommand::DownstreamPeerUriSan),
        "DOWNSTREAM_LOCAL_URI_SAN" => Some(FormatCommand::DownstreamLocalUriSan),
        "HOSTNAME" => Some(FormatCommand::Hostname),
        _ => None,
    };
    if let Some(c) = simple {
        return no_arg(cx, c);
    }
    match name {
        "START_TIME" => {
            if max_len.is_some() {
                cx.invalid(path, format!("%{spec}% takes no length"));
                return None;
            }
            let Some(f) = arg.filter(|a| !a.is_empty()) else {
                return Some(FormatCommand::StartTime(None));
            };
            let mut chars = f.chars();
            while let Some(c) = chars.next() {
                if c != '%' {
                    continue;
                }
                let conv = chars.by_ref().find(|c| !c.is_ascii_digit() && *c != 'E');
                if !conv.is_some_and(|c| START_TIME_CONVERSIONS.contains(c) || c == 'f') {
                    cx.unsupported(
                        path,
                        format!("%{spec}%: the strftime conversion %{}", conv.unwrap_or(' ')),
                    );
                    return None;
                }
            }
            Some(FormatCommand::StartTime(Some(f.to_owned())))
        }
        // Strait's filters publish no filter state Envoy would serialize:
        // the value is always absent (`-`), as for an unset key in Envoy.
        "FILTER_STATE" => Some(FormatCommand::FilterState),
        "DYNAMIC_METADATA" => {
            let Some(arg) = arg.filter(|a| !a.is_empty()) else {
                cx.invalid(path, format!("%{spec}% needs a namespace"));
                return None;
            };
            let mut keys = arg.split(':').map(str::to_owned);
            let namespace = keys.next().unwrap_or_default();
            Some(FormatCommand::DynamicMetadata {
                namespace,
                path: keys.collect(),
                max_len,
            })
        }
        "REQ" | "RESP" | "TRAILER" => {
            let Some(arg) = arg.filter(|a| !a.is_empty()) else {
                cx.invalid(path, format!("%{spec}% needs a header name"));
                return None;
            };
            let (name, alternative) = match arg.split_once('?') {
                Some((n, a)) => (n, Some(HeaderRef::new(a.to_ascii_lowercase()))),
                None => (arg, None),
            };
            let name = HeaderRef::new(name.to_ascii_lowercase());
            Some(match name_of(spec) {
                "REQ" => FormatCommand::Request {
                    name,
                    alternative,
                    max_len,
                },
                "RESP" => FormatCommand::Response {
                    name,
                    alternative,
                    max_len,
                },
                _ => FormatCommand::Trailer {
                    name,
                    alternative,
                    max_len,
                },
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
            (
                "%UPSTREAM_HOST_WITHOUT_PORT%",
                "%UPSTREAM_HOST_WITHOUT_PORT%",
            ),
            ("%START_TIME(%Q)%", "strftime conversion %Q"),
            ("%DYNAMIC_METADATA()%", "needs a namespace"),
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
