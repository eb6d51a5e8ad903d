//! Open Service Mesh's sidecar config dump (`fixtures/osm/`, OSM's own
//! test data): first translated resource by resource as the xDS client
//! would, every problem matching a documented reason (and every documented
//! reason still occurring, so the list shrinks as features land); then the
//! whole dump served as it is by the test control plane, where Strait
//! takes each resource on its own, as Envoy does: the cluster and route
//! configuration are ACKed, and only the listener the refused filters sit
//! in is NACKed, for those reasons, with its `error_state` in
//! `/config_dump`.
//!
//! OSM renders its listener filters by name only (no `typed_config`), as
//! Envoy before 1.22 looked them up; Strait keeps that meaning for the
//! built-in inspectors, so they are not on the list.

use std::{collections::BTreeSet, time::Duration};

use strait_test_support::{
    config_dump::ConfigDump,
    eventually,
    proxy::TestProxy,
    xds_server::{CLUSTER, LISTENER, ROUTE, XdsServer, ads_bootstrap_with},
};

fn fixture(name: &str) -> ConfigDump {
    let path: std::path::PathBuf = [env!("CARGO_MANIFEST_DIR"), "fixtures/osm", name]
        .iter()
        .collect();
    ConfigDump::load(&path)
}

/// A documented reason: a substring of the problem, and why it is refused.
type Reason = (&'static str, &'static str);

const BOOKBUYER: &[Reason] = &[
    (
        "envoy.filters.http.lua",
        "Lua scripts (OSM's per-route stats headers) are the packaging issue's (#17)",
    ),
    (
        "envoy.filters.http.wasm",
        "Wasm (OSM's stats module): Strait has no Wasm runtime",
    ),
];

#[test]
fn bookbuyer_refuses_only_documented_filters() {
    let dump = fixture("configdump_bookbuyer.json");
    let mut used = BTreeSet::new();
    let mut unexpected = Vec::new();
    for r in dump.refusals() {
        match BOOKBUYER.iter().position(|(s, _)| r.reason.contains(s)) {
            Some(i) => {
                used.insert(i);
            }
            None => unexpected.push(format!(
                "{} '{}': {}: {}",
                r.type_url, r.name, r.path, r.reason
            )),
        }
    }
    assert!(
        unexpected.is_empty(),
        "undocumented:\n{}",
        unexpected.join("\n")
    );
    assert_eq!(
        used.len(),
        BOOKBUYER.len(),
        "a documented reason no longer occurs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookbuyer_served_whole_applies_all_but_the_refused_listener() {
    let dump = fixture("configdump_bookbuyer.json");
    let xds = XdsServer::start();
    dump.serve(&xds);
    let bootstrap = ads_bootstrap_with(xds.addr(), "GRPC", "bookbuyer.bookbuyer", "bookbuyer", "");
    let proxy = TestProxy::start(&bootstrap, 1);
    let deadline = Duration::from_secs(20);
    eventually("CDS ACKed", deadline, || async {
        xds.acked_current(CLUSTER).then_some(())
    })
    .await;
    let nack = eventually("LDS answered", deadline, || async {
        xds.answered_current(LISTENER)
    })
    .await;
    let detail = nack.error_detail.unwrap_or_default();
    assert!(detail.contains("listener 'outbound-listener'"), "{detail}");
    for (reason, _) in BOOKBUYER {
        assert!(detail.contains(reason), "{reason} not in {detail}");
    }
    // No listener took the route configuration, so nobody asks for it:
    // check it offline instead (it is not among the refusals above).
    assert!(
        dump.refusals().iter().all(|r| r.type_url != ROUTE),
        "the route configuration translates"
    );
    let r =
        strait_test_support::admin::get(proxy.admin(), "/config_dump?resource=dynamic_listeners")
            .await
            .expect("config_dump");
    let v: serde_json::Value = serde_json::from_str(&r.text()).expect("json");
    let outbound = v["configs"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["name"] == "outbound-listener"))
        .cloned()
        .unwrap_or_default();
    assert!(
        outbound["error_state"]["details"]
            .as_str()
            .is_some_and(|d| d.contains("envoy.filters.http.lua")),
        "{outbound}"
    );
    // The cluster is taken (warming until its SDS certificate, whose key the
    // dump redacts, is usable, as in Envoy), without an error state.
    let r = strait_test_support::admin::get(
        proxy.admin(),
        "/config_dump?resource=dynamic_warming_clusters",
    )
    .await
    .expect("config_dump");
    let text = r.text();
    assert!(text.contains("bookstore/bookstore"), "{text}");
    assert!(!text.contains("error_state"), "{text}");
}
