//! Extension configs the model carries without knowing their types.
//!
//! A filter (HTTP, network or listener) is configured by a type URL and a
//! config. The factory registered for that type URL (built-in or an
//! embedding program's) turns the config into a value of its own type; the
//! model keeps it as an [`Extension`] (the type URL and an
//! `Arc<dyn ExtensionConfig>`), and the same factory's runtime half reads it
//! back with [`Extension::get`]. The model needs nothing of the type but
//! equality (so a reload can tell a changed filter from an unchanged one)
//! and `Debug` (for logs).

use std::{any::Any, collections::HashMap, fmt, sync::Arc};

/// A validated extension config. Implemented for every
/// `Any + Debug + PartialEq + Send + Sync` type, so a factory's config type
/// needs nothing more than those derives.
pub trait ExtensionConfig: Any + fmt::Debug + Send + Sync {
    /// `self` as `Any`, for the factory's downcast.
    fn as_any(&self) -> &dyn Any;
    /// Equality across the trait object: the same type and equal values.
    fn same_as(&self, other: &dyn ExtensionConfig) -> bool;
}

impl<T: Any + fmt::Debug + PartialEq + Send + Sync> ExtensionConfig for T {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn same_as(&self, other: &dyn ExtensionConfig) -> bool {
        other.as_any().downcast_ref::<T>() == Some(self)
    }
}

/// One configured extension: the type URL its config came with (which names
/// its factory) and the config the factory validated.
#[derive(Clone)]
pub struct Extension {
    type_url: Arc<str>,
    config: Arc<dyn ExtensionConfig>,
}

impl Extension {
    /// Wraps `config`, the value the factory for `type_url` made.
    pub fn new(type_url: impl Into<Arc<str>>, config: impl ExtensionConfig) -> Self {
        Extension {
            type_url: type_url.into(),
            config: Arc::new(config),
        }
    }

    /// The config's type URL (`type.googleapis.com/...`).
    pub fn type_url(&self) -> &str {
        &self.type_url
    }

    /// The config as its factory's type; `None` for another type.
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.config.as_any().downcast_ref::<T>()
    }

    /// The config as the trait object.
    pub fn config(&self) -> &dyn ExtensionConfig {
        &*self.config
    }
}

impl PartialEq for Extension {
    fn eq(&self, other: &Self) -> bool {
        self.type_url == other.type_url && self.config.same_as(&*other.config)
    }
}

impl fmt::Debug for Extension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extension")
            .field("type_url", &self.type_url)
            .field("config", &self.config)
            .finish()
    }
}

/// An extension's config as it arrived, for a factory the front end has no
/// schema of: the protobuf bytes of an `Any` (from xDS or a binary
/// bootstrap), or the `value` of a `TypedStruct` (`xds.type.v3` or
/// `udpa.type.v1`, Envoy's way to configure an extension whose proto the
/// proxy was not built with, in YAML or JSON).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum TypedValue<'a> {
    Proto(&'a [u8]),
    Struct(&'a serde_json::Value),
}

/// Factories by the type URL of their configs: what every extension
/// registry (HTTP, network and listener filters) keeps. `F` is the
/// registry's factory trait object.
pub struct ByTypeUrl<F: ?Sized> {
    map: HashMap<String, Arc<F>>,
}

impl<F: ?Sized> ByTypeUrl<F> {
    /// Adds `factory` for `type_url`, replacing one registered before.
    pub fn insert(&mut self, type_url: &str, factory: Arc<F>) {
        self.map.insert(type_url.to_owned(), factory);
    }

    pub fn get(&self, type_url: &str) -> Option<&Arc<F>> {
        self.map.get(type_url)
    }

    /// The factory for `type_url`, or why there is none: "no `what`
    /// registered for `type_url`".
    pub fn require(&self, type_url: &str, what: &str) -> Result<&Arc<F>, String> {
        self.get(type_url)
            .ok_or_else(|| format!("no {what} registered for {type_url}"))
    }
}

impl<F: ?Sized> Default for ByTypeUrl<F> {
    fn default() -> Self {
        ByTypeUrl {
            map: HashMap::new(),
        }
    }
}

impl<F: ?Sized> Clone for ByTypeUrl<F> {
    fn clone(&self) -> Self {
        ByTypeUrl {
            map: self.map.clone(),
        }
    }
}

impl<F: ?Sized> fmt::Debug for ByTypeUrl<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut urls: Vec<&String> = self.map.keys().collect();
        urls.sort();
        f.debug_list().entries(urls).finish()
    }
}

/// What a config front end asks about a type URL it has no schema of:
/// whether something registered a parser for it, and that parser's
/// verdict. `None` means nothing is registered for the type URL (the front
/// end then refuses it by name); `Some(Err(why))` refuses the config with
/// the parser's reason.
///
/// Implemented by the registries of the crates that run extensions (the
/// HTTP filter registry of `strait-http`), so a front end below them
/// consults them without depending on them.
pub trait ExtensionParsers: Send + Sync {
    /// An HTTP filter's `typed_config`.
    fn http_filter(
        &self,
        type_url: &str,
        value: TypedValue<'_>,
    ) -> Option<Result<Extension, String>>;

    /// An HTTP filter's per-route config (`typed_per_filter_config`).
    fn http_filter_per_route(
        &self,
        type_url: &str,
        value: TypedValue<'_>,
    ) -> Option<Result<Extension, String>>;

    /// A terminal network filter's `typed_config`. Registries that hold no
    /// network filters keep the default: nothing registered.
    fn network_filter(
        &self,
        type_url: &str,
        value: TypedValue<'_>,
    ) -> Option<Result<Extension, String>> {
        let _ = (type_url, value);
        None
    }

    /// A listener filter's `typed_config`. Registries that hold no listener
    /// filters keep the default: nothing registered.
    fn listener_filter(
        &self,
        type_url: &str,
        value: TypedValue<'_>,
    ) -> Option<Result<Extension, String>> {
        let _ = (type_url, value);
        None
    }
}

/// The parsers of a front end that knows only its built-in extensions.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoParsers;

impl ExtensionParsers for NoParsers {
    fn http_filter(&self, _: &str, _: TypedValue<'_>) -> Option<Result<Extension, String>> {
        None
    }

    fn http_filter_per_route(
        &self,
        _: &str,
        _: TypedValue<'_>,
    ) -> Option<Result<Extension, String>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Limit(u32);

    #[test]
    fn equality_compares_type_url_type_and_value() {
        let a = Extension::new("t/a", Limit(1));
        assert_eq!(a, Extension::new("t/a", Limit(1)));
        assert_ne!(a, Extension::new("t/a", Limit(2)));
        assert_ne!(a, Extension::new("t/b", Limit(1)));
        assert_ne!(a, Extension::new("t/a", 1u32));
        assert_eq!(a.get::<Limit>(), Some(&Limit(1)));
        assert_eq!(a.get::<u32>(), None);
    }
}
