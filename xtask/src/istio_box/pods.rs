//! Starting the mesh: istiod in its namespace with a config directory, and
//! one "pod" per workload, set up as Kubernetes and Istio's injector would:
//! the app, the interception rules (`pilot-agent istio-iptables`, as the
//! init container runs it), the workload's certificate files, and
//! `pilot-agent proxy sidecar` as uid 1337 with `binaryPath` pointing at
//! `strait-sidecar` (the gateway: `proxy router` with `strait-gateway`).

use std::{
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result};
use serde_json::json;
use strait_test_support::certs::TestCa;

use super::{
    Binaries, Options,
    istio::Proc,
    mesh::{self, APP_PORT, GATEWAY, ISTIOD_IP, NAMESPACE, WORKLOADS, Workload},
    net,
};

/// The uid Istio's proxies run as; its traffic is not intercepted.
pub const PROXY_UID: u32 = 1337;

/// A running pod: the app and the agent (which runs the proxy).
pub struct Pod {
    pub workload: Workload,
    pub app: Option<Proc>,
    pub agent: Proc,
}

/// The running mesh.
pub struct Mesh {
    pub istiod: Proc,
    pub pods: Vec<Pod>,
    pub gateway: Pod,
    /// istiod's `--configDir`: scenarios write their routing here.
    pub config_dir: PathBuf,
    pub run_dir: PathBuf,
    /// Kept alive: the workload certificates' CA.
    _ca: TestCa,
}

impl Mesh {
    pub fn start(bins: &Binaries, run_dir: &Path, options: &Options) -> Result<Mesh> {
        let ca = TestCa::new("strait-istio-box");
        let istiod = start_istiod(bins, run_dir)?;
        let mut pods = Vec::new();
        for (i, w) in WORKLOADS.iter().enumerate() {
            pods.push(start_pod(
                bins,
                run_dir,
                &ca,
                *w,
                NAMESPACE,
                10 + i,
                options,
            )?);
        }
        let gateway = start_pod(bins, run_dir, &ca, GATEWAY, "istio-system", 9, options)?;
        let mut mesh = Mesh {
            istiod,
            pods,
            gateway,
            config_dir: run_dir.join("istiod").join("config"),
            run_dir: run_dir.to_path_buf(),
            _ca: ca,
        };
        for pod in mesh
            .pods
            .iter_mut()
            .chain(std::iter::once(&mut mesh.gateway))
        {
            let ip = pod.workload.ip;
            pod.agent
                .wait_until("ready on 15021", Duration::from_secs(60), || {
                    matches!(
                        super::scenarios::get(ip, 15021, "/healthz/ready", &[]),
                        Ok((200, _))
                    )
                })?;
        }
        Ok(mesh)
    }

    /// Writes `name` into istiod's config directory (istiod watches it).
    pub fn apply(&self, name: &str, yaml: &str) -> Result<()> {
        let path = self.config_dir.join(name);
        // Written beside and renamed, so istiod never reads half a file.
        let tmp = self.config_dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, yaml)?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    pub fn remove(&self, name: &str) -> Result<()> {
        let _ = std::fs::remove_file(self.config_dir.join(name));
        Ok(())
    }

    /// Fails if istiod or any app has exited (a crash is a finding, not
    /// a scenario's failure).
    pub fn ensure_alive(&mut self) -> Result<()> {
        self.istiod.ensure_alive()?;
        for pod in &mut self.pods {
            if let Some(app) = &mut pod.app {
                app.ensure_alive()?;
            }
        }
        Ok(())
    }
}

fn start_istiod(bins: &Binaries, run_dir: &Path) -> Result<Proc> {
    let dir = run_dir.join("istiod");
    std::fs::create_dir_all(dir.join("config"))?;
    std::fs::write(
        dir.join("config").join("registry.yaml"),
        mesh::registry_yaml(),
    )?;
    std::fs::write(dir.join("mesh.yaml"), mesh::mesh_config())?;
    net::add_workload("istiod", ISTIOD_IP, 2)?;
    let mut cmd = net::command("istiod", None, &bins.istiod.to_string_lossy());
    cmd.args([
        "--configDir=./config",
        "--meshConfig=./mesh.yaml",
        &format!("--listen={ISTIOD_IP}:15010"),
    ])
    .current_dir(&dir)
    .env("POD_NAMESPACE", "istio-system")
    .env("POD_NAME", "istiod-0")
    .env("CLOUD_PLATFORM", "none");
    let mut istiod = Proc::spawn("istiod", cmd, dir.join("istiod.log"))?;
    let xds: SocketAddr = format!("{ISTIOD_IP}:15010").parse()?;
    istiod.wait_until("xDS port 15010 open", Duration::from_secs(60), || {
        TcpStream::connect_timeout(&xds, Duration::from_millis(200)).is_ok()
    })?;
    Ok(istiod)
}

fn start_pod(
    bins: &Binaries,
    run_dir: &Path,
    ca: &TestCa,
    w: Workload,
    namespace: &str,
    index: usize,
    options: &Options,
) -> Result<Pod> {
    let name = w.name();
    let is_gateway = namespace == "istio-system";
    let dir = run_dir.join(&name);
    let creds = dir.join("var/run/secrets/workload-spiffe-credentials");
    std::fs::create_dir_all(&creds)?;
    std::fs::create_dir_all(dir.join("etc/istio/proxy"))?;
    std::fs::create_dir_all(dir.join("var/lib/istio/envoy"))?;
    std::fs::copy(
        &bins.template,
        dir.join("var/lib/istio/envoy/envoy_bootstrap_tmpl.json"),
    )?;
    let (sa, spiffe) = if is_gateway {
        let sa = "istio-ingressgateway-service-account".to_owned();
        let id = format!("spiffe://cluster.local/ns/istio-system/sa/{sa}");
        (sa, id)
    } else {
        (w.service_account(), w.spiffe())
    };
    let issued = ca.issue_workload(&spiffe);
    std::fs::copy(&issued.cert, creds.join("cert-chain.pem"))?;
    std::fs::copy(&issued.key, creds.join("key.pem"))?;
    std::fs::copy(ca.root(), creds.join("root-cert.pem"))?;
    net::sh(&format!(
        "chown -R {PROXY_UID}:{PROXY_UID} {}",
        dir.display()
    ))?;

    net::add_workload(&name, w.ip, index)?;
    let app = if is_gateway {
        None
    } else {
        // Interception first, as the init container does before the app.
        net::in_ns(
            &name,
            &format!(
                "{} istio-iptables -p 15001 -z 15006 -u {PROXY_UID} -g {PROXY_UID} -m REDIRECT \
                 -i \"*\" -x \"\" -b \"*\" -d 15090,15021,15020 > {}/iptables.log 2>&1",
                bins.agent.display(),
                dir.display()
            ),
        )
        .context("pilot-agent istio-iptables")?;
        let mut cmd = net::command(&name, None, &bins.xtask.to_string_lossy());
        cmd.args([
            "bookinfo-app",
            "--name",
            w.app,
            "--version",
            w.version,
            "--listen",
            &format!("0.0.0.0:{APP_PORT}"),
        ]);
        for service in mesh::calls(&w) {
            cmd.args([
                "--call",
                &format!(
                    "{service}={}:{APP_PORT}@{}:{APP_PORT}",
                    mesh::host(service),
                    mesh::vip(service)
                ),
            ]);
        }
        Some(Proc::spawn(
            &format!("{name} app"),
            cmd,
            dir.join("app.log"),
        )?)
    };

    let binary = if is_gateway {
        &bins.gateway
    } else {
        &bins.sidecar
    };
    let proxy_config = json!({
        "binaryPath": binary,
        "discoveryAddress": format!("{ISTIOD_IP}:15010"),
        "controlPlaneAuthPolicy": "NONE",
        "drainDuration": "2s",
        "terminationDrainDuration": "2s",
    });
    let labels = if is_gateway {
        json!({"istio": "ingressgateway", "app": "istio-ingressgateway"})
    } else {
        json!({"app": w.app, "version": w.version})
    };
    let mut cmd = net::command(&name, Some(PROXY_UID), &bins.agent.to_string_lossy());
    cmd.args(["proxy", if is_gateway { "router" } else { "sidecar" }])
        .current_dir(&dir)
        .env("HOME", &dir)
        .env("POD_NAME", &name)
        .env("POD_NAMESPACE", namespace)
        .env("INSTANCE_IP", w.ip)
        .env("SERVICE_ACCOUNT", &sa)
        .env("ISTIO_META_CLUSTER_ID", "Kubernetes")
        .env("ISTIO_METAJSON_LABELS", labels.to_string())
        .env("ISTIO_META_WORKLOAD_NAME", &name)
        .env("CLOUD_PLATFORM", "none")
        .env("PROXY_CONFIG", proxy_config.to_string());
    if options.sotw {
        cmd.env("ISTIO_DELTA_XDS", "false");
    }
    let agent = Proc::spawn(&format!("{name} pilot-agent"), cmd, dir.join("agent.log"))?;
    Ok(Pod {
        workload: w,
        app,
        agent,
    })
}
