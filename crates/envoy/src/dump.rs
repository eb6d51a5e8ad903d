//! The dynamic resources as the control plane sent them, for the admin
//! server's `/config_dump`.
//!
//! Envoy's config dump shows every xDS resource in its original proto form
//! with the version and time it was accepted, which the translated model
//! no longer holds. The xDS client keeps these beside its caches and hands
//! a fresh [`XdsDump`] to the writer after every accepted response; the
//! admin server renders it on request. Nothing here is read per request.

use std::{
    collections::BTreeMap,
    sync::{Arc, PoisonError, RwLock},
    time::SystemTime,
};

use envoy_types::pb::google::protobuf::Any;

/// One accepted resource: its proto as received and when it last changed.
#[derive(Debug, Clone, PartialEq)]
pub struct RawResource {
    pub name: String,
    /// SotW: the `version_info` of the response that last changed it;
    /// delta: the resource's own version.
    pub version_info: String,
    pub last_updated: SystemTime,
    pub resource: Any,
}

/// Why the last update of one resource was rejected: Envoy's
/// `UpdateFailureState`. Kept until the resource is accepted or removed;
/// the resource's last good version (if any) stays in
/// [`TypeDump::resources`] and keeps serving.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateFailure {
    /// The rejected resource as received.
    pub failed_configuration: Any,
    pub last_update_attempt: SystemTime,
    /// Every problem found, each naming its field.
    pub details: String,
    /// The version the rejected resource came with.
    pub version_info: String,
}

/// The accepted resources of one type, by name, and the type's version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TypeDump {
    /// SotW: the `version_info` of the last response that changed anything
    /// (one whose every resource was rejected leaves it); delta: the last
    /// `system_version_info`.
    pub version_info: String,
    pub resources: BTreeMap<String, Arc<RawResource>>,
    /// Resources whose last update was rejected, by name.
    pub failed: BTreeMap<String, Arc<UpdateFailure>>,
}

/// Every dynamic resource the xDS client holds, with which listeners and
/// clusters are still warming (waiting for their route config or
/// endpoints).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct XdsDump {
    pub listeners: TypeDump,
    pub routes: TypeDump,
    pub clusters: TypeDump,
    pub endpoints: TypeDump,
    /// Secrets from every SDS source (the ADS stream, SDS streams, files).
    pub secrets: TypeDump,
    pub warming_listeners: Vec<String>,
    pub warming_clusters: Vec<String>,
    /// Secrets a listener or cluster names that no SDS source has
    /// delivered yet, with when they were first named.
    pub warming_secrets: Vec<(String, SystemTime)>,
}

/// Where the writer keeps the latest [`XdsDump`] for the admin server. A
/// lock is fine: it is taken once per accepted xDS response and once per
/// `/config_dump`, never on the data path.
#[derive(Debug, Default)]
pub struct DumpCell(RwLock<Option<Arc<XdsDump>>>);

impl DumpCell {
    pub fn store(&self, dump: Arc<XdsDump>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Some(dump);
    }

    /// The latest dump; `None` before the first xDS response (or without
    /// xDS).
    pub fn load(&self) -> Option<Arc<XdsDump>> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
