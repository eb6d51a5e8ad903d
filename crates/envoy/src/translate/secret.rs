//! Secrets: `static_resources.secrets` and SDS resources (Envoy
//! `extensions.transport_sockets.tls.v3.Secret`), and the `SdsSecretConfig`
//! references TLS contexts make to them.

use envoy_types::pb::envoy::{
    config::core::v3::{
        ApiConfigSource, ApiVersion, ConfigSource, PathConfigSource, api_config_source::ApiType,
        config_source::ConfigSourceSpecifier,
    },
    extensions::transport_sockets::tls::v3::{SdsSecretConfig, Secret, secret},
};

use super::{Context, at, dynamic, item, tls};
use crate::{
    ConfigError,
    model::secret::{SdsRef, Secret as Model, SecretSource},
};

/// Translates one `Secret` (from `static_resources.secrets` or SDS) into its
/// name and content. `path` prefixes every error.
pub fn translate_secret(s: &Secret, path: &str) -> Result<(String, Model), Vec<ConfigError>> {
    let mut cx = Context::default();
    let out = secret(&mut cx, s, path);
    cx.finish(out)
}

pub(super) fn secret(cx: &mut Context, s: &Secret, path: &str) -> Option<(String, Model)> {
    let Secret { name, r#type } = s;
    if name.is_empty() {
        cx.invalid(at(path, "name"), "must not be empty");
    }
    let model = match r#type {
        Some(secret::Type::TlsCertificate(c)) => {
            Model::TlsCertificate(tls::certificate(cx, c, &at(path, "tls_certificate"))?)
        }
        Some(secret::Type::ValidationContext(v)) => {
            Model::ValidationContext(tls::validation(cx, v, &at(path, "validation_context"))?)
        }
        Some(secret::Type::SessionTicketKeys(_)) => {
            cx.unsupported(at(path, "session_ticket_keys"), "session_ticket_keys");
            return None;
        }
        Some(secret::Type::GenericSecret(_)) => {
            cx.unsupported(
                at(path, "generic_secret"),
                "generic_secret (no Strait extension consumes one)",
            );
            return None;
        }
        None => {
            cx.invalid(path, "needs tls_certificate or validation_context");
            return None;
        }
    };
    (!name.is_empty()).then(|| (name.clone(), model))
}

/// An `SdsSecretConfig`: a secret by name, static when `sds_config` is
/// absent (then it must be one of `static_resources.secrets`, checked by
/// the bootstrap translation, which knows them).
pub(super) fn sds_secret_config(
    cx: &mut Context,
    s: &SdsSecretConfig,
    path: &str,
) -> Option<SdsRef> {
    let SdsSecretConfig { name, sds_config } = s;
    if name.is_empty() {
        cx.invalid(at(path, "name"), "must not be empty");
        return None;
    }
    let source = match sds_config {
        None => {
            cx.require_secret(at(path, "name"), name);
            SecretSource::Static
        }
        Some(cs) => source(cx, &at(path, "sds_config"), cs)?,
    };
    Some(SdsRef {
        name: name.clone(),
        source,
    })
}

/// `sds_config`: ADS, a gRPC `api_config_source`, or a file.
fn source(cx: &mut Context, path: &str, cs: &ConfigSource) -> Option<SecretSource> {
    let ConfigSource {
        authorities,
        // Envoy waits this long for the first secret before giving up on a
        // warming listener; Strait keeps it warming until the secret comes,
        // which serves nothing either way.
        initial_fetch_timeout: _,
        resource_api_version,
        config_source_specifier,
    } = cs;
    reject_set!(cx, path; authorities);
    if *resource_api_version != ApiVersion::V3 as i32 && *resource_api_version != 0 {
        cx.unsupported(at(path, "resource_api_version"), "only V3 resources");
    }
    match config_source_specifier {
        Some(ConfigSourceSpecifier::Ads(_)) => Some(SecretSource::Ads),
        Some(ConfigSourceSpecifier::ApiConfigSource(api)) => {
            grpc_source(cx, &at(path, "api_config_source"), api)
        }
        Some(ConfigSourceSpecifier::PathConfigSource(p)) => {
            let PathConfigSource {
                path: file,
                // Strait polls the file's content, which sees both in-place
                // writes and files moved into the directory: the directory
                // adds nothing to watch.
                watched_directory: _,
                // Paces the re-reads only; Strait polls every 200 ms.
                poll_interval: _,
            } = p;
            file_source(cx, &at(&at(path, "path_config_source"), "path"), file)
        }
        Some(ConfigSourceSpecifier::Path(file)) => file_source(cx, &at(path, "path"), file),
        Some(_) => {
            cx.unsupported(
                path,
                "config sources other than ads, api_config_source and path",
            );
            None
        }
        None => {
            cx.invalid(path, "needs ads, api_config_source or path_config_source");
            None
        }
    }
}

fn file_source(cx: &mut Context, path: &str, file: &str) -> Option<SecretSource> {
    if file.is_empty() {
        cx.invalid(path, "must not be empty");
        return None;
    }
    Some(SecretSource::File { path: file.into() })
}

/// A SotW gRPC SDS stream to one `envoy_grpc` cluster.
fn grpc_source(cx: &mut Context, path: &str, api: &ApiConfigSource) -> Option<SecretSource> {
    let ApiConfigSource {
        api_type,
        transport_api_version,
        cluster_names,
        grpc_services,
        // Both pace REST polling only.
        refresh_delay: _,
        request_timeout: _,
        rate_limit_settings,
        // Node is sent on every request; the option only saves bytes.
        set_node_on_first_message_only: _,
        config_validators,
    } = api;
    reject_set!(cx, path; cluster_names, rate_limit_settings, config_validators);
    if *transport_api_version != ApiVersion::V3 as i32 && *transport_api_version != 0 {
        cx.unsupported(at(path, "transport_api_version"), "only V3 transport");
    }
    match ApiType::try_from(*api_type) {
        Ok(ApiType::Grpc) => {}
        Ok(other) => cx.unsupported(
            at(path, "api_type"),
            format!("api_type {} for SDS (use GRPC)", other.as_str_name()),
        ),
        Err(_) => cx.invalid(at(path, "api_type"), format!("unknown api_type {api_type}")),
    }
    let cluster = match grpc_services.as_slice() {
        [one] => dynamic::grpc_service(cx, &item(path, "grpc_services", 0), one, true)?,
        _ => {
            cx.invalid(at(path, "grpc_services"), "needs exactly one gRPC service");
            return None;
        }
    };
    Some(SecretSource::Grpc { cluster })
}
