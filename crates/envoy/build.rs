//! Finds the protobuf descriptor set that `envoy-types` ships beside its
//! generated code (`src/generated/types.bin`) and copies it into OUT_DIR, so
//! the config crate can parse Envoy's proto3 JSON/YAML with reflection into
//! exactly the types that crate generated. Nothing is copied into the repo.

use std::{env, fs, path::PathBuf, process::Command};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let src = envoy_types_dir().join("src/generated/types.bin");
    let bytes = fs::read(&src).unwrap_or_else(|e| panic!("reading {}: {e}", src.display()));
    fs::write(out.join("envoy_types.bin"), bytes).expect("writing OUT_DIR/envoy_types.bin");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", src.display());
}

/// Finds the `envoy-types` sources that cargo unpacked for this build. Cargo
/// gives build scripts no path to a dependency's sources unless it declares
/// `links`, so: the locked version from `Cargo.lock`, looked up in the cargo
/// registry cache; failing that, `cargo metadata` (which may download).
fn envoy_types_dir() -> PathBuf {
    if let Some(dir) = from_registry_cache() {
        return dir;
    }
    from_cargo_metadata()
}

fn from_registry_cache() -> Option<PathBuf> {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR")?);
    let lock = manifest
        .ancestors()
        .map(|d| d.join("Cargo.lock"))
        .find(|p| p.exists())?;
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = fs::read_to_string(lock).ok()?;
    let at = text.find("name = \"envoy-types\"\nversion = \"")?
        + "name = \"envoy-types\"\nversion = \"".len();
    let version = &text[at..at + text[at..].find('"')?];
    let home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    fs::read_dir(home.join("registry/src"))
        .ok()?
        .filter_map(Result::ok)
        .map(|index| index.path().join(format!("envoy-types-{version}")))
        .find(|dir| dir.join("src/generated/types.bin").exists())
}

fn from_cargo_metadata() -> PathBuf {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1"])
        .current_dir(&manifest)
        .output()
        .expect("running cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("cargo metadata prints UTF-8");
    // A targeted scan keeps serde out of the build script. Each package object
    // has "name":"envoy-types" ... "manifest_path":"...".
    let start = text
        .find("\"name\":\"envoy-types\"")
        .expect("envoy-types in cargo metadata");
    let rest = &text[start..];
    let key = "\"manifest_path\":\"";
    let at = rest.find(key).expect("manifest_path after envoy-types") + key.len();
    let end = rest[at..].find('"').expect("closing quote") + at;
    PathBuf::from(&rest[at..end])
        .parent()
        .expect("manifest has a parent directory")
        .to_path_buf()
}
