//! The files SDS secrets name (`filename` certificate chains, keys and
//! CAs), watched as Envoy watches them: when one changes on disk, the
//! secret is compiled afresh (new handshakes get the new certificate; open
//! connections keep theirs). Polled rather than notified, like the config
//! and SDS files, so a Kubernetes secret mount's symlink swap is seen.

use std::{
    collections::{BTreeMap, HashMap},
    hash::{BuildHasher, BuildHasherDefault, DefaultHasher},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use crate::{Publish, shared::Shared};

/// Polls every `every` until dropped. A change to a file of a secret seen
/// at the previous poll bumps that secret's `files_revision` through the
/// single writer; a secret that just arrived was compiled with its files
/// as they are, so it is only remembered.
pub(crate) async fn watch<P: Publish>(shared: Arc<Shared<P>>, every: Duration) {
    let mut seen: HashMap<String, u64> = HashMap::new();
    loop {
        tokio::time::sleep(every).await;
        let files = shared.secret_files().await;
        let now = fingerprints(&files).await;
        let changed: Vec<String> = now
            .iter()
            .filter(|(name, print)| seen.get(*name).is_some_and(|old| old != *print))
            .map(|(name, _)| name.clone())
            .collect();
        seen = now;
        if changed.is_empty() {
            continue;
        }
        tracing::info!(secrets = ?changed, "files of SDS secrets changed on disk");
        let (result, _) = shared
            .update(|c| {
                c.secret_files_changed(&changed);
                Ok(crate::Outcome::new(crate::Kind::Secret))
            })
            .await;
        if let Some(message) = crate::wire::nack_message(&result) {
            // The new files are refused (say, a half-written key); the
            // previous ones keep serving until the files change again.
            tracing::warn!(problems = %message, "changed secret files refused");
        }
    }
}

/// One hash per secret over the bytes of all its files (a missing file
/// hashes as such, so its return is a change too).
async fn fingerprints(files: &BTreeMap<String, Vec<PathBuf>>) -> HashMap<String, u64> {
    let mut out = HashMap::with_capacity(files.len());
    for (name, paths) in files {
        let mut bytes = Vec::new();
        for p in paths {
            match tokio::fs::read(p).await {
                Ok(b) => bytes.extend_from_slice(&b),
                Err(e) => bytes.extend_from_slice(e.to_string().as_bytes()),
            }
            // Keeps "ab"+"c" apart from "a"+"bc".
            bytes.push(0);
        }
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(&bytes);
        out.insert(name.clone(), hash);
    }
    out
}
