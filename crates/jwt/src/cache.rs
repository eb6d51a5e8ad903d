//! Tokens whose signature has been checked, so a token seen again (a
//! client sends the same bearer token with every request) costs a parse
//! and the claim checks, not a public-key operation (30-70 µs for RSA,
//! ECDSA and Ed25519 with `ring`, far more for P-384).
//!
//! Only the signature verdict is remembered, tied to the very key set that
//! gave it (the entry holds that set, so a fetched replacement never
//! matches an old entry); time, issuer and audience are checked on every
//! request, as Envoy's own JWT cache does. Direct-mapped and lock-free:
//! one `ArcSwapOption` slot per hash bucket, a miss overwrites its slot.

use std::{
    hash::{BuildHasher, RandomState},
    sync::Arc,
};

use arc_swap::ArcSwapOption;

use crate::jwks::Jwks;

const SLOTS: usize = 1024;

struct Entry {
    token: Box<str>,
    keys: Arc<Jwks>,
}

/// Verified signatures, by token.
pub struct SignatureCache {
    slots: Box<[ArcSwapOption<Entry>]>,
    hasher: RandomState,
}

impl Default for SignatureCache {
    fn default() -> Self {
        SignatureCache {
            slots: (0..SLOTS).map(|_| ArcSwapOption::empty()).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl std::fmt::Debug for SignatureCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignatureCache")
    }
}

impl SignatureCache {
    fn slot(&self, token: &str) -> &ArcSwapOption<Entry> {
        let i = (self.hasher.hash_one(token) as usize) % SLOTS;
        &self.slots[i]
    }

    /// Whether `token`'s signature was verified with `keys`.
    pub fn verified(&self, token: &str, keys: &Arc<Jwks>) -> bool {
        self.slot(token)
            .load()
            .as_ref()
            .is_some_and(|e| &*e.token == token && Arc::ptr_eq(&e.keys, keys))
    }

    /// Remembers that `token`'s signature verified with `keys`.
    pub fn insert(&self, token: &str, keys: &Arc<Jwks>) {
        self.slot(token).store(Some(Arc::new(Entry {
            token: token.into(),
            keys: Arc::clone(keys),
        })));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_tied_to_their_key_set() {
        let cache = SignatureCache::default();
        let (a, b) = (Arc::new(Jwks::default()), Arc::new(Jwks::default()));
        assert!(!cache.verified("t", &a));
        cache.insert("t", &a);
        assert!(cache.verified("t", &a));
        assert!(!cache.verified("t", &b), "another key set");
        assert!(!cache.verified("u", &a), "another token");
    }
}
