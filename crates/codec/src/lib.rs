//! HTTP codecs for Strait, behind a small API so the rest of the proxy does
//! not depend on hyper's builder types.
//!
//! Owns: serving a downstream connection as HTTP/1.1, HTTP/2 (prior knowledge)
//! or either by detection ([`server`]); opening upstream client connections
//! ([`client`]); the request body type that crosses the proxy ([`Body`]);
//! hop-by-hop header rules and request ids ([`headers`]).
//! Must not depend on config, routing or upstream selection: callers pass
//! plain options.

pub mod body;
pub mod client;
pub mod headers;
pub mod io;
pub mod progress;
pub mod server;

pub use body::{Body, FrameHook, Recorded, RecordingWatch, ReplayFrame};
pub use client::{ClientConn, ConnFacts, ConnectError, Protocol};
pub use io::{ByteCounter, Counted};
pub use progress::Progress;
pub use server::{ServerOptions, ServerProtocol};
