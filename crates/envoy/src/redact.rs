//! Redaction of sensitive values in a config document before it is shown
//! (`/config_dump`), as Envoy does for fields it marks sensitive: inline
//! private keys and key passwords become `"[redacted]"`; file names stay.

use serde_json::Value;

/// Fields whose inline data is secret, wherever they appear (bootstrap
/// `static_resources.secrets`, TLS contexts inside `typed_config`, SDS
/// resources).
const SENSITIVE: [&str; 2] = ["private_key", "password"];

/// Replaces `inline_bytes`/`inline_string` (and `environment_variable`
/// values never reach here) of every sensitive `DataSource` in `doc`.
pub fn redact_sensitive(doc: &mut Value) {
    match doc {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if SENSITIVE.contains(&key.as_str())
                    && let Value::Object(source) = value
                {
                    for inline in ["inline_bytes", "inline_string"] {
                        if let Some(v) = source.get_mut(inline) {
                            *v = Value::String("[redacted]".to_owned());
                        }
                    }
                } else {
                    redact_sensitive(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_sensitive),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn inline_keys_are_redacted_and_files_kept() {
        let mut doc = json!({"static_resources": {"secrets": [
            {"name": "a", "tls_certificate": {
                "certificate_chain": {"inline_string": "CHAIN"},
                "private_key": {"inline_string": "KEY"}}},
            {"name": "b", "tls_certificate": {
                "certificate_chain": {"filename": "/c.pem"},
                "private_key": {"filename": "/k.pem"},
                "password": {"inline_bytes": "cGFzcw=="}}}]}});
        redact_sensitive(&mut doc);
        let s = &doc["static_resources"]["secrets"];
        assert_eq!(
            s[0]["tls_certificate"]["private_key"]["inline_string"],
            "[redacted]"
        );
        assert_eq!(
            s[0]["tls_certificate"]["certificate_chain"]["inline_string"],
            "CHAIN"
        );
        assert_eq!(s[1]["tls_certificate"]["private_key"]["filename"], "/k.pem");
        assert_eq!(
            s[1]["tls_certificate"]["password"]["inline_bytes"],
            "[redacted]"
        );
    }
}
