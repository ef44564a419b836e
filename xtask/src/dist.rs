//! `cargo xtask dist`: the release binary and the `deploy/` bundle in `target/dist/`.

use std::fs;
use std::path::{Path, PathBuf};

use crate::process::{self, cargo};
use crate::Result;

/// The binary orch-daemon builds (SPEC §5.1).
const BINARY: &str = "orch";

pub(crate) fn run(root: &Path) -> Result<()> {
    process::run(cargo(root).args(["build", "--release", "-p", "orch-daemon"]))?;
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
    fs::create_dir_all(&dist).map_err(|err| format!("cannot create {}: {err}", dist.display()))?;
    let file_name = binary.file_name().expect("the binary path has a file name");
    copy(&binary, &dist.join(file_name))?;
    let deploy = root.join("deploy");
    if deploy.is_dir() {
        copy_dir(&deploy, &dist.join("deploy"))?;
    } else {
        println!("dist: deploy/ does not exist yet: only the binary is bundled");
    }
    println!("dist: {}", dist.display());
    Ok(())
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
