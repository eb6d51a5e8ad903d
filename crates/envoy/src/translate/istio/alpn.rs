//! `istio.alpn` (`istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig`):
//! the upstream ALPN override istiod renders on every outbound HTTP
//! connection manager. Not in the descriptor set `envoy-types` ships, so
//! its protobuf bytes are decoded with the message declared here (every
//! field of Istio's proto) into the JSON form a `TypedStruct` carries, and
//! one reader judges both.

use serde_json::{Map, Value as Json, json};

use super::{super::Context, at, item, snake};
use crate::model::{
    extension::Extension,
    istio::{IstioAlpn, type_url},
};

/// The message's full name.
pub(in crate::translate) const ALPN: &str =
    "istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig";

/// The longest protocol name ALPN can carry (one length byte).
const MAX_PROTOCOL_LEN: usize = 255;

/// The filter's config from its JSON form; `None` after recording why.
pub(in crate::translate) fn alpn(cx: &mut Context, config: &Json, path: &str) -> Option<Extension> {
    let Some(obj) = config.as_object() else {
        cx.invalid(path, format!("{ALPN}: not a valid config"));
        return None;
    };
    let before = cx.problems.len();
    let mut out = IstioAlpn::default();
    // Which protocols an entry has set: Envoy's filter inserts the entries
    // into a map in order, so the first entry for a protocol wins.
    let mut seen = [false; 3];
    for (key, value) in obj {
        let fpath = at(path, key);
        match snake(key).as_str() {
            "alpn_override" => {
                let Some(list) = value.as_array() else {
                    cx.invalid(fpath, "must be a list of AlpnOverride");
                    continue;
                };
                for (i, entry) in list.iter().enumerate() {
                    let epath = item(path, key, i);
                    let Some((protocol, protocols)) = entry_of(cx, entry, &epath) else {
                        continue;
                    };
                    if std::mem::replace(&mut seen[protocol], true) {
                        continue;
                    }
                    let slot = match protocol {
                        0 => &mut out.http10,
                        1 => &mut out.http11,
                        _ => &mut out.http2,
                    };
                    *slot = protocols;
                }
            }
            other => cx.unsupported(fpath, format!("{ALPN} field {other}")),
        }
    }
    (cx.problems.len() == before).then(|| Extension::new(type_url::ALPN, out))
}

/// One `AlpnOverride`: its protocol (0 HTTP10, 1 HTTP11, 2 HTTP2) and list.
fn entry_of(cx: &mut Context, entry: &Json, path: &str) -> Option<(usize, Vec<String>)> {
    let Some(obj) = entry.as_object() else {
        cx.invalid(path, "must be an AlpnOverride object");
        return None;
    };
    let before = cx.problems.len();
    // proto3: an unset enum is its zero value.
    let mut protocol = 0;
    let mut protocols = Vec::new();
    for (key, value) in obj {
        let fpath = at(path, key);
        match snake(key).as_str() {
            "upstream_protocol" => match protocol_of(value) {
                Some(p) => protocol = p,
                None => cx.unsupported(fpath, format!("upstream_protocol {value}")),
            },
            "alpn_override" => {
                let Some(list) = value.as_array() else {
                    cx.invalid(fpath, "must be a list of strings");
                    continue;
                };
                for (i, p) in list.iter().enumerate() {
                    match p.as_str() {
                        Some(p) if !p.is_empty() && p.len() <= MAX_PROTOCOL_LEN => {
                            protocols.push(p.to_owned());
                        }
                        Some(_) => {
                            cx.invalid(item(path, key, i), "an ALPN protocol is 1 to 255 bytes")
                        }
                        None => cx.invalid(item(path, key, i), "must be a string"),
                    }
                }
            }
            other => cx.unsupported(fpath, format!("AlpnOverride field {other}")),
        }
    }
    (cx.problems.len() == before).then_some((protocol, protocols))
}

/// `Protocol` by name or number (a `Struct` carries numbers as doubles).
fn protocol_of(v: &Json) -> Option<usize> {
    match v {
        Json::String(s) => match s.as_str() {
            "HTTP10" => Some(0),
            "HTTP11" => Some(1),
            "HTTP2" => Some(2),
            _ => None,
        },
        Json::Number(n) => match n.as_f64() {
            Some(0.0) => Some(0),
            Some(1.0) => Some(1),
            Some(2.0) => Some(2),
            _ => None,
        },
        _ => None,
    }
}

/// Istio's message, for configs that arrive as protobuf bytes.
#[derive(Clone, PartialEq, prost::Message)]
pub(in crate::translate) struct FilterConfig {
    #[prost(message, repeated, tag = "1")]
    pub alpn_override: Vec<AlpnOverride>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(in crate::translate) struct AlpnOverride {
    /// `Protocol`: HTTP10 = 0, HTTP11 = 1, HTTP2 = 2.
    #[prost(int32, tag = "1")]
    pub upstream_protocol: i32,
    #[prost(string, repeated, tag = "2")]
    pub alpn_override: Vec<String>,
}

impl FilterConfig {
    /// The proto3 JSON form (enum values by name when known, else the
    /// number, which the reader refuses by name).
    pub(in crate::translate) fn to_json(&self) -> Json {
        let entries = self
            .alpn_override
            .iter()
            .map(|e| {
                let protocol = match e.upstream_protocol {
                    0 => json!("HTTP10"),
                    1 => json!("HTTP11"),
                    2 => json!("HTTP2"),
                    n => json!(n),
                };
                json!({"upstream_protocol": protocol, "alpn_override": e.alpn_override})
            })
            .collect();
        let mut m = Map::new();
        m.insert("alpn_override".into(), Json::Array(entries));
        Json::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::model::extension::Extension;

    fn cx() -> Context {
        Context::default()
    }

    fn config(e: &Extension) -> IstioAlpn {
        e.get::<IstioAlpn>().cloned().expect("an IstioAlpn")
    }

    /// What istiod renders (`sidecar_app1_istio-1.22.3.json`): HTTP10 is
    /// the unset enum, so its entry has no `upstream_protocol`.
    fn istiod() -> Json {
        json!({"alpn_override": [
            {"alpn_override": ["istio-http/1.0", "istio", "http/1.0"]},
            {"alpn_override": ["istio-http/1.1", "istio", "http/1.1"], "upstream_protocol": "HTTP11"},
            {"alpn_override": ["istio-h2", "istio", "h2"], "upstream_protocol": "HTTP2"}
        ]})
    }

    fn want() -> IstioAlpn {
        let v = |l: &[&str]| l.iter().map(|p| (*p).to_owned()).collect();
        IstioAlpn {
            http10: v(&["istio-http/1.0", "istio", "http/1.0"]),
            http11: v(&["istio-http/1.1", "istio", "http/1.1"]),
            http2: v(&["istio-h2", "istio", "h2"]),
        }
    }

    #[test]
    fn istiods_config_from_json_camel_case_and_bytes_agree() {
        let mut c = cx();
        let e = alpn(&mut c, &istiod(), "f").expect("config");
        assert_eq!(config(&e), want());
        assert_eq!(e.type_url(), type_url::ALPN);
        let camel = json!({"alpnOverride": [
            {"alpnOverride": ["istio-http/1.0", "istio", "http/1.0"]},
            {"alpnOverride": ["istio-http/1.1", "istio", "http/1.1"], "upstreamProtocol": "HTTP11"},
            {"alpnOverride": ["istio-h2", "istio", "h2"], "upstreamProtocol": 2.0}
        ]});
        assert_eq!(config(&alpn(&mut c, &camel, "f").expect("camel")), want());
        let bytes = FilterConfig {
            alpn_override: vec![
                AlpnOverride {
                    upstream_protocol: 1,
                    alpn_override: want().http11,
                },
                AlpnOverride {
                    upstream_protocol: 2,
                    alpn_override: want().http2,
                },
                AlpnOverride {
                    upstream_protocol: 0,
                    alpn_override: want().http10,
                },
            ],
        }
        .encode_to_vec();
        let decoded = FilterConfig::decode(bytes.as_slice()).expect("decode");
        assert_eq!(
            config(&alpn(&mut c, &decoded.to_json(), "f").expect("bytes")),
            want()
        );
        assert!(c.problems.is_empty(), "{:?}", c.problems);
    }

    #[test]
    fn the_first_entry_for_a_protocol_wins_as_in_envoys_map() {
        let mut c = cx();
        let twice = json!({"alpn_override": [
            {"alpn_override": ["first"], "upstream_protocol": "HTTP2"},
            {"alpn_override": ["second"], "upstream_protocol": "HTTP2"}
        ]});
        let got = config(&alpn(&mut c, &twice, "f").expect("config"));
        assert_eq!(got.http2, ["first"]);
        assert!(got.http11.is_empty() && got.http10.is_empty());
    }

    #[test]
    fn unknown_protocols_and_fields_are_refused_by_name() {
        let mut c = cx();
        let h3 =
            json!({"alpn_override": [{"alpn_override": ["h3"], "upstream_protocol": "HTTP3"}]});
        assert!(alpn(&mut c, &h3, "f").is_none());
        let bytes = FilterConfig {
            alpn_override: vec![AlpnOverride {
                upstream_protocol: 7,
                alpn_override: vec!["x".into()],
            }],
        };
        assert!(alpn(&mut c, &bytes.to_json(), "f").is_none());
        let extra = json!({"alpn_override": [], "downstream_protocol": "HTTP2"});
        assert!(alpn(&mut c, &extra, "f").is_none());
        let empty = json!({"alpn_override": [{"alpn_override": [""]}]});
        assert!(alpn(&mut c, &empty, "f").is_none());
        let text: Vec<String> = c.problems.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 4, "{text:#?}");
        assert!(
            text[0].contains("f.alpn_override[0].upstream_protocol") && text[0].contains("HTTP3"),
            "{text:#?}"
        );
        assert!(text[1].contains("upstream_protocol 7"), "{text:#?}");
        assert!(text[2].contains("f.downstream_protocol"), "{text:#?}");
        assert!(
            text[3].contains("f.alpn_override[0].alpn_override[0]"),
            "{text:#?}"
        );
    }
}
