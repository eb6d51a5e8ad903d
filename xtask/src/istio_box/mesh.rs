//! BookInfo as istiod sees it without Kubernetes: the workloads (one
//! network namespace each), a ServiceEntry per service with a fixed VIP,
//! a WorkloadEntry per workload (labels `app`/`version`, a service
//! account, so auto-mTLS applies), and the mesh config.

use std::fmt::Write as _;

/// The namespace BookInfo runs in.
pub const NAMESPACE: &str = "default";

/// The port every BookInfo service listens on.
pub const APP_PORT: u16 = 9080;

/// The port the ingress gateway serves BookInfo on (an unprivileged one:
/// the gateway runs as uid 1337).
pub const GATEWAY_PORT: u16 = 8080;

/// istiod's address (its own namespace).
pub const ISTIOD_IP: &str = "10.10.0.2";

/// One workload: a network namespace with a sidecar (or the gateway).
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    pub app: &'static str,
    pub version: &'static str,
    pub ip: &'static str,
}

impl Workload {
    /// The network namespace's name, also the pod name.
    pub fn name(&self) -> String {
        format!("{}-{}", self.app, self.version)
    }

    pub fn service_account(&self) -> String {
        format!("bookinfo-{}", self.app)
    }

    pub fn spiffe(&self) -> String {
        format!(
            "spiffe://cluster.local/ns/{NAMESPACE}/sa/{}",
            self.service_account()
        )
    }
}

/// BookInfo's workloads.
pub const WORKLOADS: &[Workload] = &[
    Workload {
        app: "productpage",
        version: "v1",
        ip: "10.10.1.1",
    },
    Workload {
        app: "details",
        version: "v1",
        ip: "10.10.1.2",
    },
    Workload {
        app: "reviews",
        version: "v1",
        ip: "10.10.1.3",
    },
    Workload {
        app: "reviews",
        version: "v2",
        ip: "10.10.1.4",
    },
    Workload {
        app: "reviews",
        version: "v3",
        ip: "10.10.1.5",
    },
    Workload {
        app: "ratings",
        version: "v1",
        ip: "10.10.1.6",
    },
];

/// The ingress gateway's pod (namespace `istio-system`).
pub const GATEWAY: Workload = Workload {
    app: "istio-ingressgateway",
    version: "v1",
    ip: "10.10.0.3",
};

/// BookInfo's services and their VIPs.
pub const SERVICES: &[(&str, &str)] = &[
    ("productpage", "10.20.0.1"),
    ("details", "10.20.0.2"),
    ("reviews", "10.20.0.3"),
    ("ratings", "10.20.0.4"),
];

pub fn host(service: &str) -> String {
    format!("{service}.{NAMESPACE}.svc.cluster.local")
}

pub fn vip(service: &str) -> &'static str {
    SERVICES
        .iter()
        .find(|(s, _)| *s == service)
        .map_or("0.0.0.0", |(_, v)| v)
}

/// The services each app calls, as BookInfo's call graph has it.
pub fn calls(w: &Workload) -> &'static [&'static str] {
    match (w.app, w.version) {
        ("productpage", _) => &["details", "reviews"],
        ("reviews", "v2" | "v3") => &["ratings"],
        _ => &[],
    }
}

/// ServiceEntries and WorkloadEntries for istiod's `--configDir`.
pub fn registry_yaml() -> String {
    let mut out = String::new();
    for (service, vip) in SERVICES {
        let _ = write!(
            out,
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: {service}
  namespace: {NAMESPACE}
spec:
  hosts: [{host}]
  addresses: [{vip}]
  ports:
  - {{number: {APP_PORT}, name: http, protocol: HTTP}}
  location: MESH_INTERNAL
  resolution: STATIC
  workloadSelector:
    labels: {{app: {service}}}
---
",
            host = host(service),
        );
    }
    for w in WORKLOADS {
        let _ = write!(
            out,
            "apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: {name}
  namespace: {NAMESPACE}
spec:
  address: {ip}
  labels: {{app: {app}, version: {version}}}
  serviceAccount: {sa}
---
",
            name = w.name(),
            ip = w.ip,
            app = w.app,
            version = w.version,
            sa = w.service_account(),
        );
    }
    out
}

/// istiod's mesh config: plaintext xDS, no tracing collector (there is no
/// DNS here for `zipkin.istio-system`), access logs to stdout, and the
/// Prometheus metrics provider Istio's Helm chart makes the default
/// (`telemetry.v2.prometheus.enabled`): without it istiod adds no stats
/// filter.
pub fn mesh_config() -> String {
    "rootNamespace: istio-system
trustDomain: cluster.local
enableTracing: false
accessLogFile: /dev/stdout
defaultProviders:
  metrics: [prometheus]
defaultConfig:
  discoveryAddress: 10.10.0.2:15010
  controlPlaneAuthPolicy: NONE
"
    .to_owned()
}

/// A BookInfo sample (a file of `../shared/istio/bookinfo/`) for the
/// config directory: the samples leave the namespace to `kubectl`'s
/// context; without Kubernetes it is written in.
pub fn in_namespace(sample: &str) -> String {
    sample
        .split("\n---")
        .map(|doc| {
            if doc.contains("\nmetadata:") && !doc.contains("  namespace:") {
                doc.replacen(
                    "\nmetadata:\n",
                    &format!("\nmetadata:\n  namespace: {NAMESPACE}\n"),
                    1,
                )
            } else {
                doc.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n---")
}
