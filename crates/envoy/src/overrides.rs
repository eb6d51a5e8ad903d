//! What the command line changes in a bootstrap before it is translated, as
//! Envoy applies it: `--config-yaml` merged over the file, then
//! `--service-node`, `--service-cluster` and `--service-zone` over the node.
//! `--allow-unknown-static-fields` relaxes the parse.

use envoy_types::pb::envoy::config::{
    bootstrap::v3::Bootstrap,
    core::v3::{Locality, Node},
};
use prost::Message;
use prost_reflect::DynamicMessage;

use crate::parse::{ParseError, parse_message, parse_message_lenient};

const BOOTSTRAP: &str = "envoy.config.bootstrap.v3.Bootstrap";

/// Command-line changes to the bootstrap. The default changes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootstrapOverrides {
    /// `--config-yaml`: a bootstrap fragment merged over the file with
    /// protobuf merge semantics (scalars replaced, messages merged field by
    /// field, repeated fields appended), as Envoy's `MergeFrom` does.
    pub config_yaml: Option<String>,
    /// `--service-node`: replaces `node.id`.
    pub service_node: Option<String>,
    /// `--service-cluster`: replaces `node.cluster`.
    pub service_cluster: Option<String>,
    /// `--service-zone`: replaces `node.locality.zone`.
    pub service_zone: Option<String>,
    /// `--allow-unknown-static-fields`: fields the protos do not know are
    /// ignored (with a warning) instead of refusing the file. pilot-agent
    /// always passes it, so that a bootstrap rendered for a newer Envoy
    /// still loads.
    pub allow_unknown_static_fields: bool,
}

/// A parsed bootstrap with the overrides applied, and the warnings worth
/// logging (unknown fields ignored).
#[derive(Debug)]
pub struct Overridden {
    pub message: DynamicMessage,
    pub warnings: Vec<String>,
}

impl BootstrapOverrides {
    /// Parses `text` as a bootstrap and applies the overrides in Envoy's
    /// order: file, then `--config-yaml`, then the `--service-*` flags.
    pub fn apply(&self, text: &str) -> Result<Overridden, ParseError> {
        let mut warnings = Vec::new();
        let mut message = self.parse(text, "", &mut warnings)?;
        if let Some(yaml) = &self.config_yaml {
            let overlay = self.parse(yaml, "--config-yaml: ", &mut warnings)?;
            merge(&mut message, &overlay.encode_to_vec())?;
        }
        let node = self.node();
        if node != Node::default() {
            let overlay = Bootstrap {
                node: Some(node),
                ..Bootstrap::default()
            };
            merge(&mut message, &overlay.encode_to_vec())?;
        }
        Ok(Overridden { message, warnings })
    }

    fn parse(
        &self,
        text: &str,
        what: &str,
        warnings: &mut Vec<String>,
    ) -> Result<DynamicMessage, ParseError> {
        let strict = parse_message(text, BOOTSTRAP).map_err(|mut e| {
            e.message = format!("{what}{}", e.message);
            e
        });
        match strict {
            Ok(m) => Ok(m),
            Err(e) if self.allow_unknown_static_fields => {
                let lenient = parse_message_lenient(text, BOOTSTRAP).map_err(|_| e.clone())?;
                // The strict error names the first unknown field; the lenient
                // parse succeeding shows unknown fields were all that was wrong.
                warnings.push(format!(
                    "ignoring unknown fields (--allow-unknown-static-fields), first: {e}"
                ));
                Ok(lenient)
            }
            Err(e) => Err(e),
        }
    }

    /// The node fields the flags set; proto merge only replaces scalars
    /// that are non-empty, so unset flags leave the file's values.
    fn node(&self) -> Node {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        Node {
            id: text(&self.service_node),
            cluster: text(&self.service_cluster),
            locality: self.service_zone.as_ref().map(|zone| Locality {
                zone: zone.clone(),
                ..Locality::default()
            }),
            ..Node::default()
        }
    }
}

/// Protobuf merge: decoding a message's bytes into another is exactly
/// `MergeFrom` (the wire format's last-one-wins and append rules).
fn merge(base: &mut DynamicMessage, overlay: &[u8]) -> Result<(), ParseError> {
    base.merge(overlay).map_err(|e| ParseError {
        path: String::new(),
        message: format!("merging overrides: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bootstrap(o: &BootstrapOverrides, text: &str) -> Bootstrap {
        o.apply(text)
            .expect("applies")
            .message
            .transcode_to()
            .expect("bootstrap")
    }

    const FILE: &str = r#"
node: {id: file-id, cluster: file-cluster, locality: {region: r1, zone: z1}}
admin: {address: {socket_address: {address: 127.0.0.1, port_value: 15000}}}
static_resources:
  clusters:
  - {name: a, type: STATIC, connect_timeout: 1s}
"#;

    #[test]
    fn no_overrides_change_nothing() {
        let b = bootstrap(&BootstrapOverrides::default(), FILE);
        let node = b.node.expect("node");
        assert_eq!(
            (node.id.as_str(), node.cluster.as_str()),
            ("file-id", "file-cluster")
        );
    }

    #[test]
    fn config_yaml_merges_like_protobuf() {
        let o = BootstrapOverrides {
            config_yaml: Some(
                "admin: {address: {socket_address: {port_value: 15555}}}\n\
                 static_resources: {clusters: [{name: b, type: STATIC, connect_timeout: 2s}]}\n\
                 node: {cluster: yaml-cluster}"
                    .into(),
            ),
            ..BootstrapOverrides::default()
        };
        let b = bootstrap(&o, FILE);
        // Messages merge field by field: the address keeps the file's host.
        let admin = format!("{:?}", b.admin.expect("admin"));
        assert!(
            admin.contains("127.0.0.1") && admin.contains("15555"),
            "{admin}"
        );
        // Repeated fields append.
        let names: Vec<_> = b
            .static_resources
            .expect("static")
            .clusters
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["a", "b"]);
        let node = b.node.expect("node");
        assert_eq!(
            (node.id.as_str(), node.cluster.as_str()),
            ("file-id", "yaml-cluster")
        );
    }

    #[test]
    fn config_yaml_cannot_reset_a_value_to_its_default() {
        // Protobuf merge (Envoy's `MergeFrom`) skips default values: a
        // `false` or `0` in the overlay leaves the file's value.
        let file = "dynamic_resources: {ads_config: {api_type: GRPC, set_node_on_first_message_only: true}}";
        let o = BootstrapOverrides {
            config_yaml: Some(
                "dynamic_resources: {ads_config: {api_type: DELTA_GRPC, set_node_on_first_message_only: false}}"
                    .into(),
            ),
            ..BootstrapOverrides::default()
        };
        let ads = bootstrap(&o, file)
            .dynamic_resources
            .and_then(|d| d.ads_config)
            .expect("ads");
        assert!(ads.set_node_on_first_message_only);
        assert_eq!(ads.api_type, 3, "DELTA_GRPC replaced GRPC");
    }

    #[test]
    fn service_flags_override_the_node_last() {
        let o = BootstrapOverrides {
            config_yaml: Some("node: {id: yaml-id}".into()),
            service_node: Some("flag-id".into()),
            service_cluster: Some("flag-cluster".into()),
            service_zone: Some("flag-zone".into()),
            ..BootstrapOverrides::default()
        };
        let node = bootstrap(&o, FILE).node.expect("node");
        assert_eq!(node.id, "flag-id");
        assert_eq!(node.cluster, "flag-cluster");
        let locality = node.locality.expect("locality");
        assert_eq!(
            (locality.region.as_str(), locality.zone.as_str()),
            ("r1", "flag-zone")
        );
    }

    #[test]
    fn unknown_fields_refused_unless_allowed() {
        let text = format!("{FILE}\nnot_a_bootstrap_field: 3\n");
        let err = BootstrapOverrides::default()
            .apply(&text)
            .expect_err("refused");
        assert!(err.to_string().contains("not_a_bootstrap_field"), "{err}");
        let o = BootstrapOverrides {
            allow_unknown_static_fields: true,
            ..BootstrapOverrides::default()
        };
        let done = o.apply(&text).expect("allowed");
        assert_eq!(done.warnings.len(), 1);
        assert!(
            done.warnings[0].contains("not_a_bootstrap_field"),
            "{:?}",
            done.warnings
        );
        // Other errors stay errors.
        let bad = format!("{FILE}\nadmin: {{address: 3}}\n");
        assert!(o.apply(&bad).is_err());
    }

    #[test]
    fn bad_config_yaml_is_named() {
        let o = BootstrapOverrides {
            config_yaml: Some("nope: 1".into()),
            ..BootstrapOverrides::default()
        };
        let err = o.apply(FILE).expect_err("refused");
        assert!(err.to_string().contains("--config-yaml"), "{err}");
    }
}
