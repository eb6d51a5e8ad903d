//! The tier rules of `cargo xtask layers`, over a plain graph (no cargo, no
//! I/O) so they can be tested on small made-up workspaces.
//!
//! Every workspace package declares its tier in its own manifest
//! (`[package.metadata.strait] tier = "..."`); a dependency edge between two
//! workspace packages is allowed when the depending tier may use the
//! depended-on one (see [`Tier::may_use`]). Separately, model and data crates
//! must not reach `envoy-types` or `prost` at all: that is what keeps the
//! protobuf front end out of the data plane.

use std::{
    collections::{HashMap, VecDeque},
    fmt,
};

/// Crates that only the front end and what sits above it may pull in.
pub(crate) const PROTOBUF_CRATES: &[&str] = &["envoy-types", "prost"];

/// Dependencies the tier rules would refuse but that are allowed on purpose,
/// each with its reason. Keep this short: every entry is a debt.
pub(crate) const EXCEPTIONS: &[Exception] = &[Exception {
    from: "strait-snapshot",
    to: "strait-envoy",
    kind: Kind::Dev,
    why: "its tests build configs from Envoy YAML through the front end \
          (`strait_envoy::load`) instead of writing the model by hand; the \
          library itself stays free of envoy-types and prost",
}];

/// Suggested tiers for packages that are known to be on their way, so that
/// the error for a missing tier can say exactly what to write.
const EXPECTED_TIERS: &[(&str, Tier)] = &[
    ("strait-http", Tier::Data),
    ("strait-rpc", Tier::Data),
    ("strait-cli", Tier::Binary),
];

/// Where a package sits. Declared as `[package.metadata.strait] tier`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Tier {
    Model,
    Data,
    FrontEnd,
    Control,
    Composition,
    Binary,
    Support,
    Tool,
}

impl Tier {
    pub(crate) const ALL: [Tier; 8] = [
        Tier::Model,
        Tier::Data,
        Tier::FrontEnd,
        Tier::Control,
        Tier::Composition,
        Tier::Binary,
        Tier::Support,
        Tier::Tool,
    ];

    /// The spelling used in manifests.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Tier::Model => "model",
            Tier::Data => "data",
            Tier::FrontEnd => "front-end",
            Tier::Control => "control",
            Tier::Composition => "composition",
            Tier::Binary => "binary",
            Tier::Support => "support",
            Tier::Tool => "tool",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.name() == s)
    }

    /// May a package of this tier have a normal or build dependency on a
    /// package of tier `dep`?
    pub(crate) fn may_use(self, dep: Tier) -> bool {
        use Tier::*;
        match self {
            Model => false,
            Data => matches!(dep, Model | Data),
            FrontEnd => dep == Model,
            Control => matches!(dep, Model | FrontEnd | Data | Control),
            Composition => matches!(dep, Model | FrontEnd | Data | Control | Composition),
            // Tools are the top of the graph: a binary that needed one would
            // ship benchmark or test code.
            Binary => !matches!(dep, Support | Tool),
            Support => dep != Tool,
            Tool => true,
        }
    }

    /// May a package of this tier have a dev-dependency on tier `dep`? The
    /// normal rule, plus the test helpers. Support crates' own
    /// dev-dependencies are not checked.
    pub(crate) fn may_dev_use(self, dep: Tier) -> bool {
        self == Tier::Support || dep == Tier::Support || self.may_use(dep)
    }

    /// The rule in words, for error messages.
    pub(crate) fn rule(self) -> &'static str {
        match self {
            Tier::Model => "a model crate depends on no Strait crate",
            Tier::Data => "a data crate depends only on model and data crates",
            Tier::FrontEnd => "the front end depends only on model crates",
            Tier::Control => {
                "a control crate depends only on model, front-end, data and control crates"
            }
            Tier::Composition => {
                "composition depends on model, front-end, data, control and composition crates"
            }
            Tier::Binary => {
                "a binary depends on anything but tools, and on support crates only as dev-dependencies"
            }
            Tier::Support => "a support crate depends on anything but tools",
            Tier::Tool => "a tool may depend on anything",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A dependency's section in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Normal,
    Build,
    Dev,
}

impl Kind {
    fn section(self) -> &'static str {
        match self {
            Kind::Normal => "dependency",
            Kind::Build => "build-dependency",
            Kind::Dev => "dev-dependency",
        }
    }
}

/// One allowed breach of the tier rules.
#[derive(Debug)]
pub(crate) struct Exception {
    pub(crate) from: &'static str,
    pub(crate) to: &'static str,
    pub(crate) kind: Kind,
    pub(crate) why: &'static str,
}

impl Exception {
    fn covers(&self, from: &str, to: &str, kind: Kind) -> bool {
        self.from == from && self.to == to && self.kind == kind
    }
}

/// What a manifest says about its tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Declared {
    Tier(Tier),
    Missing,
    Unknown(String),
}

/// A workspace package as the rules see it.
#[derive(Debug, Clone)]
pub(crate) struct Package {
    pub(crate) name: String,
    /// The resolve-graph id (a plain name in tests).
    pub(crate) id: String,
    /// The manifest, relative to the workspace root, for messages.
    pub(crate) manifest: String,
    pub(crate) declared: Declared,
    /// Direct dependencies on other workspace packages, by name.
    pub(crate) deps: Vec<(String, Kind)>,
}

/// The resolved dependency graph, every package included, by id.
#[derive(Debug, Default)]
pub(crate) struct Resolved {
    pub(crate) nodes: HashMap<String, Node>,
}

/// A package of the resolved graph.
#[derive(Debug, Default)]
pub(crate) struct Node {
    pub(crate) name: String,
    /// Dependencies by id, with every kind each is declared as.
    pub(crate) deps: Vec<(String, Vec<Kind>)>,
}

/// Something the guard found; the message names every package involved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    pub(crate) package: String,
    pub(crate) message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The outcome of [`check`]: `violations` fail the guard, `notes` do not.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) violations: Vec<Finding>,
    pub(crate) notes: Vec<Finding>,
}

/// Checks every package's tier declaration and every edge between workspace
/// packages, then the protobuf rule over the resolved graph.
pub(crate) fn check(packages: &[Package], resolved: &Resolved) -> Report {
    let mut report = Report::default();
    let tiers: HashMap<&str, Tier> = packages
        .iter()
        .filter_map(|p| match p.declared {
            Declared::Tier(t) => Some((p.name.as_str(), t)),
            _ => None,
        })
        .collect();
    for p in packages {
        match &p.declared {
            Declared::Tier(_) => {}
            Declared::Missing => report.violations.push(Finding {
                package: p.name.clone(),
                message: format!(
                    "{} ({}) declares no tier; {}",
                    p.name,
                    p.manifest,
                    how_to_declare(p)
                ),
            }),
            Declared::Unknown(t) => report.violations.push(Finding {
                package: p.name.clone(),
                message: format!(
                    "{} ({}) declares unknown tier \"{t}\"; {}",
                    p.name,
                    p.manifest,
                    how_to_declare(p)
                ),
            }),
        }
    }
    for p in packages {
        let Some(&from) = tiers.get(p.name.as_str()) else {
            continue;
        };
        for (dep, kind) in &p.deps {
            // An undeclared dependency has already been reported above.
            let Some(&to) = tiers.get(dep.as_str()) else {
                continue;
            };
            let allowed = match kind {
                Kind::Normal | Kind::Build => from.may_use(to),
                Kind::Dev => from.may_dev_use(to),
            };
            if allowed {
                continue;
            }
            let edge = format!("{} ({from}) -> {dep} ({to}), {}", p.name, kind.section());
            match EXCEPTIONS.iter().find(|e| e.covers(&p.name, dep, *kind)) {
                Some(e) => report.notes.push(Finding {
                    package: p.name.clone(),
                    message: format!("{edge}: allowed by exception: {}", e.why),
                }),
                None => report.violations.push(Finding {
                    package: p.name.clone(),
                    message: format!("{edge}: {}", from.rule()),
                }),
            }
        }
    }
    for e in EXCEPTIONS {
        let used = packages
            .iter()
            .any(|p| p.name == e.from && p.deps.iter().any(|(d, k)| d == e.to && *k == e.kind));
        if !used {
            report.notes.push(Finding {
                package: e.from.to_owned(),
                message: format!(
                    "the exception for {} -> {} ({}) is no longer needed: remove it from \
                     EXCEPTIONS in xtask/src/layers/tiers.rs",
                    e.from,
                    e.to,
                    e.kind.section()
                ),
            });
        }
    }
    for p in packages {
        if matches!(p.declared, Declared::Tier(Tier::Model | Tier::Data))
            && let Some(path) = protobuf_path(p, resolved)
        {
            report.violations.push(Finding {
                package: p.name.clone(),
                message: format!(
                    "{} reaches {} ({}): model and data crates must build without {}",
                    p.name,
                    path.last().map_or("?", String::as_str),
                    path.join(" -> "),
                    PROTOBUF_CRATES.join(" and "),
                ),
            });
        }
    }
    report
}

/// The words to add to a manifest, with a best guess at the tier.
fn how_to_declare(p: &Package) -> String {
    let guess = EXPECTED_TIERS
        .iter()
        .find(|(name, _)| *name == p.name)
        .map(|(_, t)| *t)
        .or_else(|| p.manifest.starts_with("bins/").then_some(Tier::Binary));
    let tiers: Vec<&str> = Tier::ALL.iter().map(|t| t.name()).collect();
    let tier = guess.map_or("<tier>", Tier::name);
    format!(
        "add these two lines to it:\n    [package.metadata.strait]\n    tier = \"{tier}\"\n  \
         (a tier is one of {}; the rules are in docs/ARCHITECTURE.md, \"Tiers\")",
        tiers.join(", ")
    )
}

/// The first path (by breadth) from `p` to a protobuf crate: `p`'s own
/// edges of every kind (as `cargo tree -p` shows them), then normal and
/// build edges only, since dev-dependencies of dependencies are never built.
/// Edges covered by an exception are not followed.
fn protobuf_path(p: &Package, resolved: &Resolved) -> Option<Vec<String>> {
    let mut parent: HashMap<&str, &str> = HashMap::new();
    let mut queue = VecDeque::from([p.id.as_str()]);
    parent.insert(p.id.as_str(), "");
    while let Some(id) = queue.pop_front() {
        let Some(Node { name, deps }) = resolved.nodes.get(id) else {
            continue;
        };
        if id != p.id && PROTOBUF_CRATES.contains(&name.as_str()) {
            let mut path = vec![name.clone()];
            let mut at = parent.get(id).copied().unwrap_or("");
            while !at.is_empty() {
                path.push(resolved.nodes.get(at).map_or(at, |n| &n.name).to_owned());
                at = parent.get(at).copied().unwrap_or("");
            }
            path.reverse();
            return Some(path);
        }
        for (dep, kinds) in deps {
            let dep_name = resolved.nodes.get(dep).map_or(dep.as_str(), |n| &n.name);
            let followed = kinds.iter().any(|k| {
                if id == p.id {
                    !EXCEPTIONS.iter().any(|e| e.covers(name, dep_name, *k))
                } else {
                    *k != Kind::Dev
                }
            });
            if followed && !parent.contains_key(dep.as_str()) {
                parent.insert(dep, id);
                queue.push_back(dep);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(name: &str, tier: Option<Tier>, deps: &[(&str, Kind)]) -> Package {
        Package {
            name: name.to_owned(),
            id: name.to_owned(),
            manifest: format!("crates/{name}/Cargo.toml"),
            declared: tier.map_or(Declared::Missing, Declared::Tier),
            deps: deps.iter().map(|(d, k)| ((*d).to_owned(), *k)).collect(),
        }
    }

    /// A resolve graph with the packages' own edges plus `extra` ones.
    fn resolved(packages: &[Package], extra: &[(&str, &str, Kind)]) -> Resolved {
        let mut r = Resolved::default();
        for p in packages {
            let deps = p.deps.iter().map(|(d, k)| (d.clone(), vec![*k])).collect();
            let name = p.name.clone();
            r.nodes.insert(p.id.clone(), Node { name, deps });
        }
        for (from, to, kind) in extra {
            let node = |name: &str| Node {
                name: name.to_owned(),
                deps: Vec::new(),
            };
            r.nodes
                .entry((*from).to_owned())
                .or_insert_with(|| node(from))
                .deps
                .push(((*to).to_owned(), vec![*kind]));
            r.nodes.entry((*to).to_owned()).or_insert_with(|| node(to));
        }
        r
    }

    fn clean() -> Vec<Package> {
        vec![
            package("strait-model", Some(Tier::Model), &[]),
            package(
                "strait-route",
                Some(Tier::Data),
                &[("strait-model", Kind::Normal)],
            ),
            package(
                "strait-envoy",
                Some(Tier::FrontEnd),
                &[("strait-model", Kind::Normal)],
            ),
            package(
                "strait-xds",
                Some(Tier::Control),
                &[
                    ("strait-envoy", Kind::Normal),
                    ("strait-route", Kind::Normal),
                    ("strait-test-support", Kind::Dev),
                ],
            ),
            package(
                "strait-app",
                Some(Tier::Composition),
                &[("strait-xds", Kind::Normal)],
            ),
            package(
                "strait-test-support",
                Some(Tier::Support),
                &[("strait-app", Kind::Normal)],
            ),
            package(
                "strait",
                Some(Tier::Binary),
                &[
                    ("strait-app", Kind::Normal),
                    ("strait-test-support", Kind::Dev),
                ],
            ),
            package(
                "xtask",
                Some(Tier::Tool),
                &[("strait-test-support", Kind::Normal)],
            ),
        ]
    }

    #[test]
    fn a_clean_graph_passes() {
        let packages = clean();
        let r = resolved(&packages, &[("strait-envoy", "envoy-types", Kind::Normal)]);
        let report = check(&packages, &r);
        assert!(report.violations.is_empty(), "{:?}", report.violations);
    }

    #[test]
    fn an_upward_edge_names_both_packages_and_the_rule() {
        let mut packages = clean();
        packages[1].deps.push(("strait-xds".into(), Kind::Normal));
        let report = check(&packages, &resolved(&packages, &[]));
        let [v] = report.violations.as_slice() else {
            panic!("{:?}", report.violations)
        };
        assert_eq!(v.package, "strait-route");
        assert!(
            v.message
                .contains("strait-route (data) -> strait-xds (control)"),
            "{v}"
        );
        assert!(v.message.contains(Tier::Data.rule()), "{v}");
    }

    #[test]
    fn front_end_as_a_data_dev_dependency_needs_an_exception() {
        let mut packages = clean();
        packages[1].deps.push(("strait-envoy".into(), Kind::Dev));
        let report = check(&packages, &resolved(&packages, &[]));
        assert_eq!(report.violations.len(), 1, "{:?}", report.violations);
        assert!(report.violations[0].message.contains("dev-dependency"));
    }

    #[test]
    fn support_only_as_a_dev_dependency() {
        let mut packages = clean();
        packages[6]
            .deps
            .push(("strait-test-support".into(), Kind::Normal));
        let report = check(&packages, &resolved(&packages, &[]));
        assert_eq!(report.violations.len(), 1, "{:?}", report.violations);
        assert!(
            report.violations[0]
                .message
                .contains("strait (binary) -> strait-test-support")
        );
    }

    #[test]
    fn a_missing_tier_says_what_to_add() {
        let mut packages = clean();
        packages.push(package(
            "strait-http",
            None,
            &[("strait-model", Kind::Normal)],
        ));
        packages.push(Package {
            manifest: "bins/strait-gateway/Cargo.toml".into(),
            ..package("strait-gateway", None, &[])
        });
        let report = check(&packages, &resolved(&packages, &[]));
        assert_eq!(report.violations.len(), 2, "{:?}", report.violations);
        assert!(
            report.violations[0]
                .message
                .contains("    [package.metadata.strait]\n    tier = \"data\"\n")
        );
        assert!(report.violations[1].message.contains("tier = \"binary\""));
    }

    #[test]
    fn protobuf_is_found_through_normal_dependencies() {
        let packages = clean();
        let r = resolved(
            &packages,
            &[
                ("strait-model", "some-codec", Kind::Normal),
                ("some-codec", "prost", Kind::Normal),
            ],
        );
        let report = check(&packages, &r);
        let messages: Vec<String> = report.violations.iter().map(|v| v.to_string()).collect();
        // The model and the data crate above it both reach prost.
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(
            messages.contains(
                &"strait-route reaches prost (strait-route -> strait-model -> some-codec -> prost): \
                  model and data crates must build without envoy-types and prost"
                    .to_owned()
            ),
            "{messages:?}"
        );
    }

    #[test]
    fn protobuf_counts_own_dev_dependencies_but_not_those_of_dependencies() {
        let packages = clean();
        let own = resolved(&packages, &[("strait-route", "prost", Kind::Dev)]);
        assert_eq!(check(&packages, &own).violations.len(), 1);
        let theirs = resolved(&packages, &[("strait-model", "prost", Kind::Dev)]);
        // The model's own dev-dependency is its violation, not the route's.
        let report = check(&packages, &theirs);
        assert_eq!(report.violations.len(), 1, "{:?}", report.violations);
        assert_eq!(report.violations[0].package, "strait-model");
    }

    #[test]
    fn the_snapshot_exception_covers_the_dev_edge_and_what_it_brings() {
        let mut packages = clean();
        packages.push(package(
            "strait-snapshot",
            Some(Tier::Data),
            &[("strait-model", Kind::Normal), ("strait-envoy", Kind::Dev)],
        ));
        let r = resolved(&packages, &[("strait-envoy", "envoy-types", Kind::Normal)]);
        let report = check(&packages, &r);
        assert!(report.violations.is_empty(), "{:?}", report.violations);
        assert!(
            report
                .notes
                .iter()
                .any(|n| n.message.contains("allowed by exception"))
        );
    }

    #[test]
    fn every_tier_may_use_the_model_except_the_model() {
        for t in Tier::ALL {
            assert_eq!(t.may_use(Tier::Model), t != Tier::Model, "{t}");
            assert_eq!(Tier::parse(t.name()), Some(t));
        }
    }
}
