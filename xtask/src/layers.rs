//! `cargo xtask layers`: the layering guard.
//!
//! Two checks over the workspace, both also run by this crate's tests so
//! that `cargo test --workspace` fails on a violation:
//! - tiers ([`tiers`]): every package declares a tier in its manifest, no
//!   dependency points to a higher tier, and model and data crates never
//!   reach `envoy-types` or `prost`;
//! - import circles ([`circles`]): within each library crate, the top-level
//!   modules do not import each other in a circle.
//!
//! The graph comes from `cargo metadata` (the workspace's manifests and the
//! resolved graph for the host platform, as `cargo tree` shows it). See
//! docs/decisions/0009-tiers-and-layering-guard.md.

mod circles;
mod tiers;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use tiers::{Declared, Kind, Node, Package, Report, Resolved, Tier};

pub const USAGE: &str = "\
usage: cargo xtask layers

Checks that no workspace package depends on a higher tier (each declares
`[package.metadata.strait] tier = \"...\"`), that model and data crates do not
reach envoy-types or prost, and that no library crate's top-level modules
import each other in a circle. Exits 1 on any violation.
";

/// What the guard found over the whole workspace.
#[derive(Debug, Default)]
struct Outcome {
    tiers: Report,
    /// Circles in crates that are not allowed any: violations.
    circles: Vec<(String, circles::Circle)>,
    /// Circles in allow-listed crates, with the reason: reported only.
    allowed_circles: Vec<(String, &'static str, circles::Circle)>,
    /// Allow-list entries with nothing left to allow.
    stale_allowances: Vec<String>,
}

impl Outcome {
    fn violations(&self) -> usize {
        self.tiers.violations.len() + self.circles.len()
    }

    fn print(&self) {
        for v in &self.tiers.violations {
            println!("error: {v}");
        }
        for (krate, circle) in &self.circles {
            println!("error: {krate}: {circle}");
        }
        for n in &self.tiers.notes {
            println!("note: {n}");
        }
        for (krate, why, circle) in &self.allowed_circles {
            println!("note: {krate} (allowed: {why}): {circle}");
        }
        for krate in &self.stale_allowances {
            println!(
                "note: {krate} has no import circle left (or is no library): remove it from ALLOWED in \
                 xtask/src/layers/circles.rs"
            );
        }
    }
}

/// Runs both checks, prints every finding, and fails on any violation.
pub fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        None => {}
        Some("-h" | "--help") => {
            print!("{USAGE}");
            return Ok(());
        }
        Some(other) => bail!("unknown option `{other}`\n\n{USAGE}"),
    }
    let outcome = check_workspace(&workspace_root())?;
    outcome.print();
    match outcome.violations() {
        0 => {
            println!("layers: ok");
            Ok(())
        }
        n => bail!("{n} layering violation(s); the rules are in docs/ARCHITECTURE.md, \"Tiers\""),
    }
}

/// The workspace this xtask was built from.
fn workspace_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

fn check_workspace(root: &Path) -> Result<Outcome> {
    let meta = metadata(root)?;
    let workspace = Workspace::from_metadata(&meta, root)?;
    let mut outcome = Outcome {
        tiers: tiers::check(&workspace.packages, &workspace.resolved),
        ..Outcome::default()
    };
    for (name, lib_rs) in &workspace.libraries {
        let found = circles::crate_circles(lib_rs, root)
            .with_context(|| format!("scanning {name}'s modules"))?;
        let allowed = circles::ALLOWED.iter().find(|(n, _)| n == name);
        match allowed {
            Some(_) if found.is_empty() => outcome.stale_allowances.push(name.clone()),
            Some((_, why)) => outcome
                .allowed_circles
                .extend(found.into_iter().map(|c| (name.clone(), *why, c))),
            None => outcome
                .circles
                .extend(found.into_iter().map(|c| (name.clone(), c))),
        }
    }
    // A renamed or removed crate leaves its entry behind.
    outcome.stale_allowances.extend(
        circles::ALLOWED
            .iter()
            .filter(|(n, _)| !workspace.libraries.iter().any(|(l, _)| l == n))
            .map(|(n, _)| (*n).to_owned()),
    );
    Ok(outcome)
}

/// `cargo metadata` for the host platform only: the other platforms'
/// packages are never built here, so they need not be downloaded.
fn metadata(root: &Path) -> Result<Value> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let version = output(Command::new(&cargo).arg("-vV"))?;
    let host = version
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .context("`cargo -vV` names no host")?
        .trim()
        .to_owned();
    let text = output(
        Command::new(&cargo)
            .args([
                "metadata",
                "--format-version",
                "1",
                "--filter-platform",
                &host,
            ])
            .arg("--manifest-path")
            .arg(root.join("Cargo.toml")),
    )?;
    serde_json::from_str(&text).context("parsing `cargo metadata`")
}

fn output(command: &mut Command) -> Result<String> {
    let out = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !out.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("{command:?} printed non-UTF-8"))
}

/// The parts of `cargo metadata` the checks read.
#[derive(Debug)]
struct Workspace {
    packages: Vec<Package>,
    resolved: Resolved,
    /// Library crates: package name and root file.
    libraries: Vec<(String, PathBuf)>,
}

impl Workspace {
    fn from_metadata(meta: &Value, root: &Path) -> Result<Workspace> {
        let members: Vec<&str> = array(meta, "workspace_members")?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let all = array(meta, "packages")?;
        let in_workspace: Vec<&Value> = all
            .iter()
            .filter(|p| p["id"].as_str().is_some_and(|id| members.contains(&id)))
            .collect();
        let names: Vec<&str> = in_workspace
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        let mut packages = Vec::new();
        let mut libraries = Vec::new();
        for p in in_workspace {
            let name = string(p, "name")?;
            let manifest = PathBuf::from(string(p, "manifest_path")?);
            let deps = array(p, "dependencies")?
                .iter()
                .filter_map(|d| {
                    let dep = d["name"].as_str()?;
                    names
                        .contains(&dep)
                        .then(|| (dep.to_owned(), kind(&d["kind"])))
                })
                .collect();
            for t in array(p, "targets")? {
                let is_lib = t["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "lib" || k == "proc-macro"));
                if is_lib {
                    libraries.push((name.to_owned(), PathBuf::from(string(t, "src_path")?)));
                }
            }
            packages.push(Package {
                name: name.to_owned(),
                id: string(p, "id")?.to_owned(),
                manifest: manifest
                    .strip_prefix(root)
                    .unwrap_or(&manifest)
                    .display()
                    .to_string(),
                declared: declared(&p["metadata"]),
                deps,
            });
        }
        packages.sort_by(|a, b| a.name.cmp(&b.name));
        libraries.sort();
        Ok(Workspace {
            packages,
            resolved: resolved(meta, all)?,
            libraries,
        })
    }
}

fn declared(metadata: &Value) -> Declared {
    match &metadata["strait"]["tier"] {
        Value::Null => Declared::Missing,
        Value::String(s) => {
            Tier::parse(s).map_or_else(|| Declared::Unknown(s.clone()), Declared::Tier)
        }
        other => Declared::Unknown(other.to_string()),
    }
}

fn kind(v: &Value) -> Kind {
    match v.as_str() {
        Some("dev") => Kind::Dev,
        Some("build") => Kind::Build,
        _ => Kind::Normal,
    }
}

fn resolved(meta: &Value, packages: &[Value]) -> Result<Resolved> {
    let name_of = |id: &str| {
        packages
            .iter()
            .find(|p| p["id"] == id)
            .and_then(|p| p["name"].as_str())
            .unwrap_or(id)
            .to_owned()
    };
    let mut out = Resolved::default();
    for node in array(&meta["resolve"], "nodes")? {
        let id = string(node, "id")?;
        let mut edges = Vec::new();
        for dep in array(node, "deps")? {
            let kinds = array(dep, "dep_kinds")?
                .iter()
                .map(|k| kind(&k["kind"]))
                .collect();
            edges.push((string(dep, "pkg")?.to_owned(), kinds));
        }
        let node = Node {
            name: name_of(id),
            deps: edges,
        };
        out.nodes.insert(id.to_owned(), node);
    }
    Ok(out)
}

fn array<'a>(v: &'a Value, key: &str) -> Result<&'a [Value]> {
    v[key]
        .as_array()
        .map(Vec::as_slice)
        .with_context(|| format!("`cargo metadata`: no array `{key}`"))
}

fn string<'a>(v: &'a Value, key: &str) -> Result<&'a str> {
    v[key]
        .as_str()
        .with_context(|| format!("`cargo metadata`: no string `{key}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The guard over the real workspace: this is what makes
    /// `cargo test --workspace` fail on a layering violation.
    #[test]
    fn the_workspace_respects_its_layers() -> Result<()> {
        let outcome = check_workspace(&workspace_root())?;
        let mut errors: Vec<String> = outcome
            .tiers
            .violations
            .iter()
            .map(|v| v.to_string())
            .collect();
        errors.extend(outcome.circles.iter().map(|(k, c)| format!("{k}: {c}")));
        assert!(
            errors.is_empty(),
            "run `cargo xtask layers`:\n{}",
            errors.join("\n")
        );
        Ok(())
    }

    #[test]
    fn the_workspace_is_read_whole() -> Result<()> {
        let root = workspace_root();
        let workspace = Workspace::from_metadata(&metadata(&root)?, &root)?;
        let names: Vec<&str> = workspace.packages.iter().map(|p| p.name.as_str()).collect();
        for expected in [
            "strait-model",
            "strait-route",
            "strait-app",
            "xtask",
            "strait-e2e",
        ] {
            assert!(names.contains(&expected), "{names:?}");
        }
        // The resolved graph is there: the front end reaches envoy-types.
        let envoy = workspace
            .packages
            .iter()
            .find(|p| p.name == "strait-envoy")
            .context("strait-envoy")?;
        let node = workspace
            .resolved
            .nodes
            .get(&envoy.id)
            .context("resolved")?;
        assert!(
            node.deps.iter().any(|(id, _)| id.contains("envoy-types")),
            "{node:?}"
        );
        assert!(workspace.libraries.iter().any(|(n, _)| n == "strait-app"));
        Ok(())
    }
}
