//! `cargo xtask dist`: a release tarball and its SHA-256 checksum in `target/dist/`.
//!
//! The tarball `orch-<version>-<target>.tar.gz` unpacks into one folder of the same name with
//! the `orch` binary, `deploy/` (the systemd unit, an example configuration, prompts and alert
//! rules), the README, the changelog, the licences and the generated configuration reference.
//! `<name>.sha256` sits beside it in `sha256sum`'s format, so `sha256sum -c` checks it.
//! xtask stays std-only (STYLE.md §9): the archive and the checksum come from the system's
//! `tar` and `sha256sum`, and the archive is reproducible (sorted names, fixed owner and time).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process::{self, cargo};
use crate::Result;

/// The binary orch-daemon builds (SPEC §5.1).
const BINARY: &str = "orch";

/// The release's version: the workspace's, which every crate (xtask too) inherits.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Files of the repository's root that go into the tarball, each required.
const ROOT_FILES: &[&str] = &["README.md", "CHANGELOG.md", "LICENSE-MIT", "LICENSE-APACHE"];

/// Files under `docs/` that a person installing orch needs without the repository.
const DOCS: &[&str] = &["config.md", "agents.md"];

/// The modification time stamped on every archived file (2026-01-01T00:00:00Z): a tarball built
/// twice from the same sources has the same bytes, so its checksum means something.
const ARCHIVE_MTIME: &str = "@1767225600";

pub(crate) fn run(root: &Path) -> Result<()> {
    process::run(cargo(root).args(["build", "--locked", "--release", "-p", "orch-daemon"]))?;
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    };
    let binary = target
        .join("release")
        .join(format!("{BINARY}{}", std::env::consts::EXE_SUFFIX));
    if !binary.is_file() {
        return Err(format!(
            "{} was not built: is orch-daemon's binary named `{BINARY}`?",
            binary.display()
        )
        .into());
    }
    let dist = target.join("dist");
    if dist.exists() {
        fs::remove_dir_all(&dist)
            .map_err(|err| format!("cannot empty {}: {err}", dist.display()))?;
    }
    let name = release_name(VERSION, std::env::consts::ARCH, std::env::consts::OS);
    let stage = dist.join(&name);
    fs::create_dir_all(&stage)
        .map_err(|err| format!("cannot create {}: {err}", stage.display()))?;
    copy(
        &binary,
        &stage.join(binary.file_name().expect("the binary path has a file name")),
    )?;
    copy_dir(&root.join("deploy"), &stage.join("deploy"))?;
    for file in ROOT_FILES {
        copy(&root.join(file), &stage.join(file))?;
    }
    fs::create_dir_all(stage.join("docs"))
        .map_err(|err| format!("cannot create {}/docs: {err}", stage.display()))?;
    for file in DOCS {
        let from = root.join("docs").join(file);
        if from.is_file() {
            copy(&from, &stage.join("docs").join(file))?;
        }
    }

    let tarball = format!("{name}.tar.gz");
    process::run(
        Command::new("tar")
            .current_dir(&dist)
            .args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner"])
            .arg(format!("--mtime={ARCHIVE_MTIME}"))
            .args(["-czf", &tarball, &name]),
    )?;
    let output = process::output(Command::new("sha256sum").current_dir(&dist).arg(&tarball))?;
    let line = String::from_utf8(output.stdout)
        .map_err(|err| format!("sha256sum printed something that is not UTF-8: {err}"))?;
    let digest = checksum_line(&line, &tarball)?;
    fs::write(dist.join(format!("{tarball}.sha256")), &digest)
        .map_err(|err| format!("cannot write the checksum of {tarball}: {err}"))?;
    print!("dist: {}\n      {digest}", dist.join(&tarball).display());
    Ok(())
}

/// `orch-0.1.0-x86_64-linux`: what the tarball and its top folder are called.
fn release_name(version: &str, arch: &str, os: &str) -> String {
    format!("{BINARY}-{version}-{arch}-{os}")
}

/// The line `sha256sum -c` expects for `file`, from what `sha256sum file` printed; anything
/// else (another file, a digest that is not 64 hex digits) is an error rather than a checksum
/// file that would never verify.
fn checksum_line(printed: &str, file: &str) -> Result<String> {
    let mut words = printed.split_whitespace();
    let (Some(digest), Some(named), None) = (words.next(), words.next(), words.next()) else {
        return Err(format!("unexpected sha256sum output: {printed:?}").into());
    };
    let hex = digest.len() == 64 && digest.bytes().all(|byte| byte.is_ascii_hexdigit());
    if !hex || named != file {
        return Err(format!("unexpected sha256sum output for {file}: {printed:?}").into());
    }
    Ok(format!("{}  {file}\n", digest.to_ascii_lowercase()))
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).map_err(|err| format!("cannot create {}: {err}", to.display()))?;
    let entries =
        fs::read_dir(from).map_err(|err| format!("cannot list {}: {err}", from.display()))?;
    let mut paths: Vec<PathBuf> = entries.flatten().map(|entry| entry.path()).collect();
    paths.sort();
    for path in paths {
        let target = to.join(path.file_name().expect("a listed entry has a name"));
        if path.is_dir() {
            copy_dir(&path, &target)?;
        } else {
            copy(&path, &target)?;
        }
    }
    Ok(())
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to)
        .map_err(|err| format!("cannot copy {} to {}: {err}", from.display(), to.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn names_carry_version_and_platform() {
        assert_eq!(
            release_name("0.1.0", "x86_64", "linux"),
            "orch-0.1.0-x86_64-linux"
        );
    }

    #[test]
    fn the_workspace_version_is_released() {
        // Every crate inherits the workspace's version; a release without one is a mistake.
        assert_ne!(VERSION, "0.0.0");
    }

    #[test]
    fn a_checksum_line_is_what_sha256sum_c_reads() {
        let printed = format!("{DIGEST}  orch.tar.gz\n");
        assert_eq!(
            checksum_line(&printed, "orch.tar.gz").unwrap(),
            format!("{DIGEST}  orch.tar.gz\n")
        );
    }

    #[test]
    fn a_checksum_of_another_file_or_a_short_digest_is_refused() {
        assert!(checksum_line(&format!("{DIGEST}  other.tar.gz\n"), "orch.tar.gz").is_err());
        assert!(checksum_line("abc  orch.tar.gz\n", "orch.tar.gz").is_err());
        assert!(checksum_line(&format!("{DIGEST}\n"), "orch.tar.gz").is_err());
        assert!(checksum_line("", "orch.tar.gz").is_err());
    }
}
