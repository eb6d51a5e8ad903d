//! JWT authentication: Envoy's `envoy.filters.http.jwt_authn` and Istio's
//! legacy `istio_authn` HTTP filter, as HTTP filters registered by type URL.
//!
//! Owns the pure parts (taking tokens apart: [`token`]; key sets: [`jwks`];
//! signatures with `ring`: [`verify`]; Envoy's requirement tree and token
//! locations: [`authn`]; Envoy's status words: [`status`]) and the I/O ones
//! (remote key sets through a cluster: [`fetch`]; the filters: [`filter`],
//! [`istio`]). Verification takes the clock as an argument.
//!
//! Depends on the model, `strait-http` (the filter trait, local replies,
//! dynamic metadata), `strait-upstream` (clusters for JWKS fetches) and
//! `strait-route` (rule matching); never on the front end or the
//! composition crate, which registers the factories.

pub mod authn;
pub mod cache;
pub mod fetch;
pub mod filter;
pub mod istio;
pub mod jwks;
mod stats;
pub mod status;
#[cfg(feature = "testing")]
pub mod testing;
pub mod token;
pub mod verify;

pub use filter::{JwtFactory, JwtFilter};
pub use istio::IstioAuthnFactory;
pub use status::Status;
