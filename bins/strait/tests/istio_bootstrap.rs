//! `strait check` on every bootstrap Istio's pilot-agent renders (the
//! golden files of istio/istio `pkg/bootstrap/testdata`, copied into
//! `tests/fixtures/istio/bootstrap/`, provenance in its SOURCES.md). Each is
//! accepted, or refused only for the documented reasons listed here (see
//! docs/CONFIG.md, "Istio bootstrap"): every line `check` prints must be one
//! of the file's expected reasons, and every expected reason must appear.

use std::{path::PathBuf, process::Command};

const BIN: &str = env!("CARGO_BIN_EXE_strait");

/// Load reporting (LRS) to the control plane: not implemented.
const LRS: &str = "cluster_manager.load_stats_config: not supported";
/// Ambient's workload metadata discovery (a `TypedStruct` of a type only
/// Istio's Envoy build has): not implemented.
const AMBIENT: &str = "bootstrap_extensions[0].typed_config: not supported: bootstrap extension 'metadata_discovery' (istio.workload.BootstrapExtension)";

/// Tracers Strait does not implement (it implements Zipkin): Envoy would
/// add their context headers to upstream requests and send spans, so
/// accepting them silently would change traffic.
const DATADOG: &str = "tracing.http.typed_config.@type: not supported: tracer type.googleapis.com/envoy.config.trace.v3.DatadogConfig";
const LIGHTSTEP: &str = "tracing.http.typed_config.@type: not supported: tracer type.googleapis.com/envoy.config.trace.v3.LightstepConfig";

/// Every golden file and the reasons it is refused for (empty: accepted).
const EXPECTED: &[(&str, &[&str])] = &[
    ("all", &[]),
    ("ambient", &[AMBIENT]),
    ("auth", &[]),
    ("authsds", &[]),
    ("default", &[]),
    // The runtime key `explicit_internal_address_config` is implemented.
    ("explicit_internal_address", &[]),
    ("global_downstream_connection_settings", &[]),
    ("global_downstream_connection_settings_with_meta", &[]),
    ("global_downstream_max_connections_both", &[]),
    ("global_downstream_max_connections_meta", &[]),
    ("global_downstream_max_connections_runtime", &[]),
    ("invalid_stats_eviction_interval", &[]),
    ("legacy_stats_tags_regex", &[]),
    ("lrs", &[LRS]),
    ("metrics_no_statsd", &[]),
    ("running", &[]),
    ("runningsds", &[]),
    ("secure_metrics", &[]),
    ("stats_compression", &[]),
    ("stats_eviction_interval", &[]),
    ("stats_flush_interval", &[]),
    ("stats_inclusion", &[]),
    ("stats_interval", &[]),
    ("tracing_datadog", &[DATADOG]),
    ("tracing_lightstep", &[LIGHTSTEP]),
    ("tracing_none", &[]),
    ("tracing_tls", &[]),
    ("tracing_tls_custom_sni", &[]),
    ("tracing_zipkin", &[]),
    ("xdsproxy", &[]),
];

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/istio/bootstrap")
}

#[test]
fn every_istio_golden_bootstrap_has_its_documented_outcome() {
    let mut on_disk: Vec<String> = std::fs::read_dir(fixtures())
        .expect("fixtures")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            Some(name.strip_suffix("_golden.json")?.to_owned())
        })
        .collect();
    on_disk.sort();
    let listed: Vec<&str> = EXPECTED.iter().map(|(n, _)| *n).collect();
    assert_eq!(on_disk, listed, "every fixture has an expectation");

    let mut failures = Vec::new();
    for (name, reasons) in EXPECTED {
        let file = fixtures().join(format!("{name}_golden.json"));
        let out = Command::new(BIN)
            .args(["check", "-c"])
            .arg(&file)
            .output()
            .expect("strait runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let text = format!("{stdout}{stderr}");
        if reasons.is_empty() {
            if !out.status.success() {
                failures.push(format!("{name}: expected OK, got:\n{text}"));
            }
            continue;
        }
        if out.status.code() != Some(1) {
            failures.push(format!(
                "{name}: expected refusal, got {}:\n{text}",
                out.status
            ));
            continue;
        }
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if !reasons.iter().any(|r| line.contains(r)) {
                failures.push(format!("{name}: unexpected problem: {line}"));
            }
        }
        for r in *reasons {
            if !text.contains(r) {
                failures.push(format!("{name}: expected reason missing: {r}\n{text}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn pilot_agent_flags_are_accepted_by_check() {
    // pilot-agent's flags on `check` too: the unknown-field leniency and the
    // node overrides apply to what is checked.
    let file = fixtures().join("default_golden.json");
    let text = std::fs::read_to_string(&file).expect("read");
    let dir = strait_test_support::TempDir::new("istio-check");
    let future = dir.path().join("future.json");
    // A field from an Envoy newer than Strait's protos.
    std::fs::write(&future, text.replacen('{', "{\"a_future_field\": 1,", 1)).expect("write");
    let strict = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&future)
        .output()
        .expect("runs");
    assert_eq!(strict.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&strict.stdout).contains("a_future_field"));
    let lenient = Command::new(BIN)
        .args([
            "check",
            "--allow-unknown-static-fields",
            "--service-cluster",
            "c",
            "-c",
        ])
        .arg(&future)
        .output()
        .expect("runs");
    assert!(
        lenient.status.success(),
        "{}",
        String::from_utf8_lossy(&lenient.stdout)
    );
    let bad_flag = Command::new(BIN)
        .args(["check", "--no-such-flag", "-c"])
        .arg(&file)
        .output()
        .expect("runs");
    assert_eq!(bad_flag.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad_flag.stderr).contains("unknown argument \"--no-such-flag\"")
    );
}
