//! Tests of each tidy rule on small inputs, and the rule set applied to this repository.

use crate::manifest::Manifest;
use crate::tidy::{
    check, check_code_map, check_dependencies, check_manifest, check_source, Package, SourceKind,
    Violation,
};

// Built with `concat!` so that this file does not trip the checks it tests.
const IGNORE_ATTRIBUTE: &str = concat!("#[", "ignore]");
const SHOULD_PANIC_ATTRIBUTE: &str = concat!("#[", "should_panic]");
const FORBID_UNSAFE: &str = concat!("#![forbid(", "unsafe_code)]");

fn reports(violations: &[Violation]) -> Vec<String> {
    violations.iter().map(ToString::to_string).collect()
}

fn dependencies_of(name: &str, manifest: &str) -> Vec<String> {
    let mut out = Vec::new();
    check_dependencies(name, "Cargo.toml", &Manifest::parse(manifest), &mut out);
    reports(&out)
}

fn source(path: &str, text: &str, kind: SourceKind) -> Vec<String> {
    let mut out = Vec::new();
    check_source(path, text, kind, &mut out);
    reports(&out)
}

#[test]
fn repository_follows_the_tidy_rules() {
    let violations = check(&crate::project_root()).expect("the tree can be read");
    assert!(
        violations.is_empty(),
        "cargo xtask tidy found {} violation(s):\n{}",
        violations.len(),
        reports(&violations).join("\n")
    );
}

#[test]
fn core_may_depend_only_on_the_four_allowed_crates() {
    let manifest = "[dependencies]\nasync-trait.workspace = true\ntokio.workspace = true\nserde = \"1\"\nureq = \"3\"\n";
    assert_eq!(
        dependencies_of("orch-core", manifest),
        [
            "Cargo.toml:3: orch-core may depend only on async-trait, serde, thiserror, tracing, not `tokio`",
            "Cargo.toml:5: orch-core may depend only on async-trait, serde, thiserror, tracing, not `ureq`",
        ]
    );
}

#[test]
fn core_dev_dependencies_may_name_only_itself() {
    let manifest = "[dev-dependencies]\norch-core = { path = \".\", features = [\"fakes\"] }\norch-sqlite.workspace = true\n";
    assert_eq!(
        dependencies_of("orch-core", manifest),
        ["Cargo.toml:3: orch-core must not dev-depend on `orch-sqlite`: fakes live in orch-core"]
    );
}

#[test]
fn an_adapter_depending_on_another_adapter_is_reported_but_dev_dependencies_are_not() {
    let manifest = "[dependencies]\norch-core.workspace = true\norch-sqlite.workspace = true\n\
                    [target.'cfg(unix)'.dependencies]\norch-git = { workspace = true }\n\
                    [dev-dependencies]\norch-sim.workspace = true\n";
    assert_eq!(
        dependencies_of("orch-http", manifest),
        [
            "Cargo.toml:3: adapter orch-http depends on `orch-sqlite`: adapters depend only on orch-core",
            "Cargo.toml:5: adapter orch-http depends on `orch-git`: adapters depend only on orch-core",
        ]
    );
}

#[test]
fn the_simulators_must_not_depend_on_any_workspace_crate() {
    let manifest =
        "[dependencies]\nhyper.workspace = true\n[dev-dependencies]\norch-core.workspace = true\n";
    assert_eq!(
        dependencies_of("orch-sim", manifest),
        ["Cargo.toml:4: orch-sim depends on `orch-core`: it speaks only HTTP and git"]
    );
}

#[test]
fn the_daemon_may_depend_on_everything() {
    let manifest = "[dependencies]\norch-core.workspace = true\norch-sqlite.workspace = true\norch-http.workspace = true\n";
    assert!(dependencies_of("orch-daemon", manifest).is_empty());
}

#[test]
fn manifest_rules_report_each_missing_setting() {
    let package = Package {
        dir: "crates/plane".to_owned(),
        name: "plane".to_owned(),
        manifest: Manifest::parse("[package]\nname = \"plane\"\nversion = \"0.1.0\"\n\n[lib]\n"),
        has_lib_file: true,
    };
    let mut out = Vec::new();
    check_manifest(&package, &mut out);
    assert_eq!(
        reports(&out),
        [
            "crates/plane/Cargo.toml:2: package `plane` must be prefixed `orch-`",
            "crates/plane/Cargo.toml:3: crates inherit the release version: version.workspace = true",
            "crates/plane/Cargo.toml:1: missing publish = false",
            "crates/plane/Cargo.toml: missing [lints] workspace = true",
            "crates/plane/Cargo.toml: a library needs [lib] doctest = false",
        ]
    );
}

#[test]
fn a_folder_named_differently_from_its_package_is_reported() {
    let package = Package {
        dir: "crates/orch-plane".to_owned(),
        name: "orch-tracker".to_owned(),
        manifest: Manifest::parse(
            "[package]\nname = \"orch-tracker\"\nversion.workspace = true\npublish = false\n[lints]\nworkspace = true\n",
        ),
        has_lib_file: false,
    };
    let mut out = Vec::new();
    check_manifest(&package, &mut out);
    assert_eq!(
        reports(&out),
        ["crates/orch-plane/Cargo.toml:2: package `orch-tracker` lives in crates/orch-plane: folder name must equal package name"]
    );
}

#[test]
fn a_file_without_a_doc_header_is_reported() {
    assert_eq!(
        source(
            "crates/orch-x/src/a.rs",
            "\nuse std::fs;\n",
            SourceKind::default()
        ),
        ["crates/orch-x/src/a.rs:1: the file must start with a `//!` comment saying what it is"]
    );
    assert!(source(
        "crates/orch-x/src/b.rs",
        "\n//! B.\n",
        SourceKind::default()
    )
    .is_empty());
}

#[test]
fn a_crate_root_needs_forbid_unsafe_code() {
    let root = SourceKind {
        crate_root: true,
        core_source: false,
    };
    assert_eq!(
        source("crates/orch-x/src/lib.rs", "//! X.\n", root),
        ["crates/orch-x/src/lib.rs: a crate root must have #![forbid(unsafe_code)]"]
    );
    assert!(source(
        "crates/orch-x/src/lib.rs",
        &format!("//! X.\n\n{FORBID_UNSAFE}\n"),
        root
    )
    .is_empty());
}

#[test]
fn every_ignored_or_should_panic_test_is_reported_with_its_line() {
    let text =
        format!("//! T.\n{IGNORE_ATTRIBUTE}\nfn a() {{}}\n{SHOULD_PANIC_ATTRIBUTE}\nfn b() {{}}\n");
    let reports = source("crates/orch-x/src/tests.rs", &text, SourceKind::default());
    assert_eq!(reports.len(), 2);
    assert!(reports[0].starts_with("crates/orch-x/src/tests.rs:2: no "));
    assert!(reports[1].starts_with("crates/orch-x/src/tests.rs:4: no "));
}

#[test]
fn wall_clock_sleep_and_environment_in_core_code_are_reported_but_not_in_comments() {
    let now = concat!("std::time::", "SystemTime", "::now()");
    let sleep = concat!("std::", "thread", "::sleep(d)");
    let var = concat!("std::", "env", "::var(\"X\")");
    let text = format!("//! C.\nlet t = {now};\n// {sleep} is banned\nlet v = {var};\n");
    let core = SourceKind {
        crate_root: false,
        core_source: true,
    };
    let reports = source("crates/orch-core/src/a.rs", &text, core);
    assert_eq!(reports.len(), 2, "{reports:?}");
    assert!(reports[0].starts_with("crates/orch-core/src/a.rs:2: no "));
    assert!(reports[1].starts_with("crates/orch-core/src/a.rs:4: no "));
    assert!(source("crates/orch-daemon/src/a.rs", &text, SourceKind::default()).is_empty());
}

#[test]
fn the_code_map_must_have_a_heading_per_crate_by_whole_name() {
    let text =
        "# Architecture\n\n### `orch-core`\n\nmentions orch-git in prose\n\n### orch-git-extra\n";
    let mut out = Vec::new();
    check_code_map(
        "docs/ARCHITECTURE.md",
        text,
        &["orch-core", "orch-git"],
        &mut out,
    );
    assert_eq!(
        reports(&out),
        ["docs/ARCHITECTURE.md: the code map has no heading naming `orch-git`"]
    );
}
