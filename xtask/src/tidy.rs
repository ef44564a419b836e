//! `cargo xtask tidy`: the workspace's structural rules, checked on the source tree.
//!
//! The rules come from SPEC.md §6 (which crate may depend on which) and STYLE.md §1–§3, §8
//! and §9. Every violation is reported with `file:line`, not just the first one. The same
//! check runs as the test `repository_follows_the_tidy_rules`, so `cargo test` enforces it.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use crate::manifest::{DepKind, Manifest};
use crate::Result;

/// The only crates orch-core may depend on (SPEC §6).
const CORE_ALLOWED_DEPENDENCIES: &[&str] = &["async-trait", "serde", "thiserror", "tracing"];

/// The adapters: each depends on orch-core and on no other workspace crate.
const ADAPTERS: &[&str] = &[
    "orch-sqlite",
    "orch-plane",
    "orch-gitea",
    "orch-telegram",
    "orch-git",
    "orch-agent",
    "orch-http",
];

const CORE: &str = "orch-core";
const SIM: &str = "orch-sim";
const CRATE_PREFIX: &str = "orch-";

// The needles are built with `concat!` so that this file does not trip its own checks.
const BANNED_TEST_ATTRIBUTES: &[&str] = &[concat!("#[", "ignore"), concat!("#[", "should_panic")];
const BANNED_IN_CORE: &[(&str, &str)] = &[
    (
        concat!("SystemTime", "::now"),
        "time comes from the `Clock` port",
    ),
    (
        concat!("Instant", "::now"),
        "time comes from the `Clock` port",
    ),
    (
        concat!("thread", "::sleep"),
        "orch-core never blocks or waits",
    ),
    (
        concat!("env", "::var"),
        "configuration is passed in, never read from the environment",
    ),
];
const FORBID_UNSAFE: &str = concat!("#![forbid(", "unsafe_code)]");
const DOC_HEADER: &str = "//!";

/// One broken rule, at a place in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    /// Path relative to the workspace root, with `/` separators.
    pub(crate) file: String,
    /// 1-based line, or 0 when the whole file is meant.
    pub(crate) line: usize,
    pub(crate) message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

pub(crate) fn run(root: &Path) -> Result<()> {
    let violations = check(root)?;
    if violations.is_empty() {
        println!("tidy: ok");
        return Ok(());
    }
    for violation in &violations {
        println!("{violation}");
    }
    Err(format!("tidy: {} violation(s)", violations.len()).into())
}

/// Every violation in the workspace at `root`.
pub(crate) fn check(root: &Path) -> Result<Vec<Violation>> {
    let mut out = Vec::new();
    let packages = discover_packages(root, &mut out)?;
    let mut crate_roots = BTreeSet::new();
    for package in &packages {
        check_manifest(package, &mut out);
        check_dependencies(
            &package.name,
            &package.manifest_path(),
            &package.manifest,
            &mut out,
        );
        check_test_binaries(root, package, &mut out);
        crate_roots.extend(package.crate_roots(root));
    }
    for dir in ["crates", "tests", "xtask"] {
        for file in rust_files(&root.join(dir))? {
            let text = fs::read_to_string(&file)
                .map_err(|err| format!("cannot read {}: {err}", file.display()))?;
            let rel = relative(root, &file);
            let kind = SourceKind {
                crate_root: crate_roots.contains(&rel),
                core_source: rel.starts_with("crates/orch-core/src/"),
            };
            check_source(&rel, &text, kind, &mut out);
        }
    }
    let architecture_path = "docs/ARCHITECTURE.md";
    let names: Vec<&str> = packages
        .iter()
        .map(|package| package.name.as_str())
        .collect();
    match fs::read_to_string(root.join(architecture_path)) {
        Ok(text) => check_code_map(architecture_path, &text, &names, &mut out),
        Err(_) => out.push(violation(
            architecture_path,
            0,
            "missing: the code map must name every crate",
        )),
    }
    Ok(out)
}

/// A workspace package as tidy sees it.
#[derive(Debug)]
pub(crate) struct Package {
    /// Directory relative to the root: `crates/orch-core`, `tests`, `xtask`.
    pub(crate) dir: String,
    pub(crate) name: String,
    pub(crate) manifest: Manifest,
    /// Whether `src/lib.rs` exists.
    pub(crate) has_lib_file: bool,
}

impl Package {
    fn manifest_path(&self) -> String {
        format!("{}/Cargo.toml", self.dir)
    }

    /// The crate roots (lib and bins) of this package, relative to the workspace root.
    fn crate_roots(&self, root: &Path) -> Vec<String> {
        let dir = root.join(&self.dir);
        let mut roots = Vec::new();
        match self.manifest.string("lib", "path") {
            Some(path) => roots.push(format!("{}/{path}", self.dir)),
            None if dir.join("src/lib.rs").is_file() => {
                roots.push(format!("{}/src/lib.rs", self.dir))
            }
            None => {}
        }
        if dir.join("src/main.rs").is_file() {
            roots.push(format!("{}/src/main.rs", self.dir));
        }
        if let Ok(entries) = fs::read_dir(dir.join("src/bin")) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|ext| ext == "rs") {
                    roots.push(relative(root, &path));
                }
            }
        }
        roots.extend(
            self.declared_targets("bin")
                .into_iter()
                .map(|path| format!("{}/{path}", self.dir)),
        );
        roots
    }

    /// The `path`s of the `[[kind]]` targets declared in the manifest.
    fn declared_targets(&self, kind: &str) -> Vec<String> {
        self.manifest
            .tables
            .iter()
            .filter(|table| table.path == [kind])
            .filter_map(|table| table.entries.iter().find(|entry| entry.key == ["path"]))
            .filter_map(|entry| crate::manifest::unquote(&entry.value))
            .collect()
    }
}

fn discover_packages(root: &Path, out: &mut Vec<Violation>) -> Result<Vec<Package>> {
    let mut dirs = Vec::new();
    let crates_dir = root.join("crates");
    let mut entries: Vec<PathBuf> = fs::read_dir(&crates_dir)
        .map_err(|err| format!("cannot list {}: {err}", crates_dir.display()))?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.is_dir())
        .collect();
    entries.sort();
    dirs.extend(entries);
    dirs.push(root.join("xtask"));
    dirs.push(root.join("tests"));

    let mut packages = Vec::new();
    for dir in dirs {
        let rel = relative(root, &dir);
        let manifest_path = dir.join("Cargo.toml");
        let Ok(text) = fs::read_to_string(&manifest_path) else {
            out.push(violation(
                &rel,
                0,
                "a directory in crates/ without a Cargo.toml",
            ));
            continue;
        };
        let manifest = Manifest::parse(&text);
        let Some(name) = manifest.string("package", "name") else {
            out.push(violation(
                &format!("{rel}/Cargo.toml"),
                0,
                "no [package] name",
            ));
            continue;
        };
        let has_lib_file = dir.join("src/lib.rs").is_file();
        packages.push(Package {
            dir: rel,
            name,
            manifest,
            has_lib_file,
        });
    }
    Ok(packages)
}

/// STYLE §1: folder == name, `orch-` prefix, publish = false, lints from the workspace, no
/// doctests. The version is the release's, written once in `[workspace.package]` and inherited
/// (ADR 0008: one version for the product, where STYLE §1 had 0.0.0 for unreleased crates).
pub(crate) fn check_manifest(package: &Package, out: &mut Vec<Violation>) {
    let path = package.manifest_path();
    let manifest = &package.manifest;
    let name_line = manifest
        .get("package", "name")
        .map_or(0, |entry| entry.line);
    if let Some(folder) = package.dir.strip_prefix("crates/") {
        if folder != package.name {
            out.push(violation(
                &path,
                name_line,
                &format!(
                    "package `{}` lives in crates/{folder}: folder name must equal package name",
                    package.name
                ),
            ));
        }
        if !package.name.starts_with(CRATE_PREFIX) {
            out.push(violation(
                &path,
                name_line,
                &format!("package `{}` must be prefixed `orch-`", package.name),
            ));
        }
    }
    let package_line = manifest
        .tables
        .iter()
        .find(|table| table.path == ["package"])
        .map_or(0, |table| table.line);
    match (
        manifest.get("package", "version"),
        manifest.get("package", "version.workspace"),
    ) {
        (None, Some(entry)) if entry.value == "true" => {}
        (Some(entry), _) | (None, Some(entry)) => out.push(violation(
            &path,
            entry.line,
            "crates inherit the release version: version.workspace = true",
        )),
        (None, None) => out.push(violation(
            &path,
            package_line,
            "missing version.workspace = true",
        )),
    }
    match manifest.get("package", "publish") {
        Some(entry) if entry.value == "false" => {}
        Some(entry) => out.push(violation(
            &path,
            entry.line,
            "internal crates have publish = false",
        )),
        None => out.push(violation(&path, package_line, "missing publish = false")),
    }
    if manifest
        .get("lints", "workspace")
        .is_none_or(|entry| entry.value != "true")
    {
        out.push(violation(&path, 0, "missing [lints] workspace = true"));
    }
    let has_lib = manifest.has_table("lib") || package.has_lib_file;
    if has_lib
        && manifest
            .get("lib", "doctest")
            .is_none_or(|entry| entry.value != "false")
    {
        out.push(violation(&path, 0, "a library needs [lib] doctest = false"));
    }
}

/// SPEC §6: who may depend on whom.
pub(crate) fn check_dependencies(
    name: &str,
    path: &str,
    manifest: &Manifest,
    out: &mut Vec<Violation>,
) {
    let normal = manifest.dependencies(DepKind::Normal);
    if name == CORE {
        for dep in &normal {
            if !CORE_ALLOWED_DEPENDENCIES.contains(&dep.name.as_str()) {
                out.push(violation(
                    path,
                    dep.line,
                    &format!(
                        "orch-core may depend only on {}, not `{}`",
                        CORE_ALLOWED_DEPENDENCIES.join(", "),
                        dep.name
                    ),
                ));
            }
        }
        // A dev-dependency on a crate that depends on orch-core links two copies of it.
        for dep in manifest.dependencies(DepKind::Dev) {
            if dep.name.starts_with(CRATE_PREFIX) && dep.name != CORE {
                out.push(violation(
                    path,
                    dep.line,
                    &format!(
                        "orch-core must not dev-depend on `{}`: fakes live in orch-core",
                        dep.name
                    ),
                ));
            }
        }
    }
    if ADAPTERS.contains(&name) {
        for dep in &normal {
            if dep.name.starts_with(CRATE_PREFIX) && dep.name != CORE {
                out.push(violation(
                    path,
                    dep.line,
                    &format!(
                        "adapter {name} depends on `{}`: adapters depend only on orch-core",
                        dep.name
                    ),
                ));
            }
        }
    }
    if name == SIM {
        let all = [DepKind::Normal, DepKind::Dev, DepKind::Build]
            .into_iter()
            .flat_map(|kind| manifest.dependencies(kind));
        for dep in all {
            if dep.name.starts_with(CRATE_PREFIX) {
                out.push(violation(
                    path,
                    dep.line,
                    &format!(
                        "orch-sim depends on `{}`: it speaks only HTTP and git",
                        dep.name
                    ),
                ));
            }
        }
    }
}

/// STYLE §8: at most one integration test binary per package.
fn check_test_binaries(root: &Path, package: &Package, out: &mut Vec<Violation>) {
    let tests_dir = root.join(&package.dir).join("tests");
    let mut binaries: BTreeSet<String> = package.declared_targets("test").into_iter().collect();
    if let Ok(entries) = fs::read_dir(&tests_dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_file() && name.ends_with(".rs") {
                binaries.insert(format!("tests/{name}"));
            } else if path.join("main.rs").is_file() {
                binaries.insert(format!("tests/{name}/main.rs"));
            }
        }
    }
    if binaries.len() > 1 {
        let list: Vec<&str> = binaries.iter().map(String::as_str).collect();
        out.push(violation(
            &package.manifest_path(),
            0,
            &format!(
                "more than one integration test binary ({}): use tests/it/main.rs plus modules",
                list.join(", ")
            ),
        ));
    }
}

/// What a source file is, for the rules that apply only to some files.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SourceKind {
    /// A `lib.rs` or `main.rs` that roots a crate.
    pub(crate) crate_root: bool,
    /// Under `crates/orch-core/src/`.
    pub(crate) core_source: bool,
}

/// STYLE §3 and §8, SPEC §6: headers, `forbid(unsafe_code)`, banned attributes and calls.
pub(crate) fn check_source(path: &str, text: &str, kind: SourceKind, out: &mut Vec<Violation>) {
    let first = text.lines().find(|line| !line.trim().is_empty());
    if !first.is_some_and(|line| line.starts_with(DOC_HEADER)) {
        out.push(violation(
            path,
            1,
            "the file must start with a `//!` comment saying what it is",
        ));
    }
    if kind.crate_root && !text.lines().any(|line| line.trim() == FORBID_UNSAFE) {
        out.push(violation(
            path,
            0,
            "a crate root must have #![forbid(unsafe_code)]",
        ));
    }
    for (line_idx, line) in text.lines().enumerate() {
        for needle in BANNED_TEST_ATTRIBUTES {
            if line.contains(needle) {
                out.push(violation(
                    path,
                    line_idx + 1,
                    &format!("no {needle}]: assert today's behaviour and add a FIXME (STYLE §8)"),
                ));
            }
        }
        if kind.core_source {
            let code = line.split("//").next().unwrap_or_default();
            for (needle, why) in BANNED_IN_CORE {
                if code.contains(needle) {
                    out.push(violation(
                        path,
                        line_idx + 1,
                        &format!("no {needle} in orch-core: {why}"),
                    ));
                }
            }
        }
    }
}

/// STYLE §9: every crate has a heading in ARCHITECTURE.md's code map.
pub(crate) fn check_code_map(path: &str, text: &str, names: &[&str], out: &mut Vec<Violation>) {
    let headings: Vec<&str> = text.lines().filter(|line| line.starts_with('#')).collect();
    for name in names {
        if !headings.iter().any(|heading| names_word(heading, name)) {
            out.push(violation(
                path,
                0,
                &format!("the code map has no heading naming `{name}`"),
            ));
        }
    }
}

/// Whether `name` occurs in `text` as a whole crate name (not as part of a longer one).
fn names_word(text: &str, name: &str) -> bool {
    let is_name_char = |ch: char| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_';
    text.match_indices(name).any(|(idx, _)| {
        let before = text[..idx].chars().next_back();
        let after = text[idx + name.len()..].chars().next();
        !before.is_some_and(is_name_char) && !after.is_some_and(is_name_char)
    })
}

fn violation(file: &str, line: usize, message: &str) -> Violation {
    Violation {
        file: file.to_owned(),
        line,
        message: message.to_owned(),
    }
}

/// Every `.rs` file under `dir`, sorted, skipping build output and hidden directories.
fn rust_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = fs::read_dir(&current)
            .map_err(|err| format!("cannot list {}: {err}", current.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if path.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    pending.push(path);
                }
            } else if name.ends_with(".rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|component| component.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests;
