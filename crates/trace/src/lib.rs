//! Distributed tracing as Envoy's HTTP connection manager does it (see
//! `docs/decisions/0018-tracing.md`):
//!
//! - [`decision`]: the trace decision, recorded in the `x-request-id`
//!   version nibble (Envoy's UUID request id extension);
//! - [`b3`]: the Zipkin tracer's B3 context, read from the request and
//!   written for the upstream (multi-header, or single `b3` when the
//!   request came with one);
//! - [`w3c`]: the OpenTelemetry tracer's W3C context (`traceparent`,
//!   `tracestate`);
//! - [`span`]: the span of one request and its Zipkin v2 JSON (the OTLP
//!   encoding is protobuf, done above the data tier by `strait-remote-log`);
//! - [`export`]: spans batched and POSTed to the collector cluster off the
//!   request path, on a bounded queue (a dead collector costs drops, never
//!   latency).
//!
//! Pure functions except [`export`]; the caller supplies randomness.

pub mod b3;
pub mod decision;
pub mod export;
pub mod span;
pub mod w3c;

pub use decision::{Reason, decide};
pub use export::{Exporters, OtelSinks, SpanSink};
pub use span::Span;
