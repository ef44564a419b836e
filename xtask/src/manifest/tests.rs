//! Tests of the manifest reader against the shapes our `Cargo.toml` files use.

use crate::manifest::{DepKind, Dependency, Manifest};

const SAMPLE: &str = r#"
[package]
name = "orch-plane" # the crate
version = "0.0.0"
publish = false
description = "a # inside a string is not a comment"

[lib]
doctest = false

[dependencies]
orch-core.workspace = true
serde = { workspace = true, features = [
    "derive",
] }
renamed = { package = "ureq", version = "3" }

[dependencies.thiserror]
workspace = true

[target.'cfg(unix)'.dependencies]
libc.workspace = true

[dev-dependencies]
orch-sim = { path = "../orch-sim" }

[lints]
workspace = true
"#;

fn names(deps: Vec<Dependency>) -> Vec<String> {
    deps.into_iter().map(|dep| dep.name).collect()
}

#[test]
fn normal_dependencies_include_dotted_inline_renamed_table_and_target_forms() {
    let manifest = Manifest::parse(SAMPLE);
    assert_eq!(
        names(manifest.dependencies(DepKind::Normal)),
        ["orch-core", "serde", "ureq", "thiserror", "libc"]
    );
    assert_eq!(names(manifest.dependencies(DepKind::Dev)), ["orch-sim"]);
    assert!(manifest.dependencies(DepKind::Build).is_empty());
}

#[test]
fn a_value_spanning_lines_does_not_swallow_the_next_key() {
    let manifest = Manifest::parse(SAMPLE);
    let deps = manifest.dependencies(DepKind::Normal);
    assert_eq!(deps[1].line, 13);
    assert_eq!(deps[2].line, 16);
    assert_eq!(deps[3].line, 18);
}

#[test]
fn strings_and_booleans_are_read_with_their_line() {
    let manifest = Manifest::parse(SAMPLE);
    assert_eq!(
        manifest.string("package", "name").as_deref(),
        Some("orch-plane")
    );
    assert_eq!(
        manifest.string("package", "description").as_deref(),
        Some("a # inside a string is not a comment")
    );
    let publish = manifest.get("package", "publish").expect("publish is set");
    assert_eq!((publish.value.as_str(), publish.line), ("false", 5));
    assert_eq!(
        manifest
            .get("lints", "workspace")
            .map(|entry| entry.value.as_str()),
        Some("true")
    );
    assert_eq!(
        manifest
            .get("lib", "doctest")
            .map(|entry| entry.value.as_str()),
        Some("false")
    );
    assert!(manifest.has_table("lints"));
    assert!(!manifest.has_table("features"));
}
