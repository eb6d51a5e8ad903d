//! `envoy.filters.http.compressor`, accepted as a filter that never
//! compresses. Istio puts gzip, brotli and zstd compressors on its
//! Prometheus listener (15090). Compression is an encoding of the same
//! response: an identity-encoded body is a valid answer whatever the
//! client's `Accept-Encoding`, so leaving responses uncompressed changes
//! bytes on the wire, not what any client receives. What would change
//! behaviour beyond that (stripping `Accept-Encoding` before the upstream,
//! compressing request bodies) is refused.

use envoy_types::pb::{
    envoy::{
        config::core::v3::TypedExtensionConfig,
        extensions::filters::http::compressor::v3::{
            Compressor, compressor::ResponseDirectionConfig,
        },
    },
    google::protobuf::Any,
};

use super::{Context, at, decode_any, type_name};

/// The compression libraries Envoy ships for this filter.
const LIBRARIES: [&str; 3] = [
    "envoy.extensions.compression.gzip.compressor.v3.Gzip",
    "envoy.extensions.compression.brotli.compressor.v3.Brotli",
    "envoy.extensions.compression.zstd.compressor.v3.Zstd",
];

pub(super) const TYPE: &str = "envoy.extensions.filters.http.compressor.v3.Compressor";

/// Checks a `Compressor` filter config; nothing to run.
pub(super) fn compressor(cx: &mut Context, path: &str, any: &Any) {
    let Some(c) = decode_any::<Compressor>(cx, path, any) else {
        return;
    };
    let Compressor {
        // The deprecated top-level forms of the response direction's
        // settings: which responses would be compressed.
        content_length: _,
        content_type: _,
        disable_on_etag_header: _,
        remove_accept_encoding_header,
        runtime_enabled: _,
        compressor_library,
        request_direction_config,
        response_direction_config,
        choose_first: _,
    } = &c;
    reject_set!(cx, path; remove_accept_encoding_header, request_direction_config);
    if let Some(r) = response_direction_config {
        let rpath = at(path, "response_direction_config");
        let ResponseDirectionConfig {
            // Which responses would be compressed, and how their headers
            // would say so: moot when none is.
            common_config: _,
            disable_on_etag_header: _,
            weaken_etag_on_compress: _,
            remove_accept_encoding_header,
            uncompressible_response_codes: _,
            status_header_enabled: _,
        } = r;
        reject_set!(cx, &rpath; remove_accept_encoding_header);
    }
    let lpath = at(path, "compressor_library");
    match compressor_library {
        Some(TypedExtensionConfig {
            name: _,
            typed_config: Some(lib),
        }) if LIBRARIES.contains(&type_name(&lib.type_url)) => {}
        Some(TypedExtensionConfig {
            typed_config: Some(lib),
            ..
        }) => cx.unsupported(
            at(&lpath, "typed_config"),
            format!("compressor library {}", lib.type_url),
        ),
        _ => cx.invalid(lpath, "is required"),
    }
}
