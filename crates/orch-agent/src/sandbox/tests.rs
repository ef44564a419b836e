//! Tests of the sandbox view and its bwrap arguments.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use orch_core::ports::{MountAccess, SandboxMount};

use crate::config::SandboxPath;
use crate::sandbox::{bwrap_args, find_program, installation, view, Isolation, View, ViewRequest};

/// A temp dir with a worktree, an output dir, a home and orch's data.
struct Dirs {
    dir: tempfile::TempDir,
}

impl Dirs {
    fn new() -> Dirs {
        let dir = tempfile::tempdir().expect("temp dir");
        for name in [
            "worktree",
            "output",
            "home",
            "data",
            "tools/bin",
            "tools/lib",
        ] {
            std::fs::create_dir_all(dir.path().join(name)).expect("dir");
        }
        Dirs { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn executable(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).expect("written");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    fn view(
        &self,
        program: &Path,
        args: &[String],
        read_only: &[SandboxPath],
        writable: &[SandboxPath],
    ) -> Result<View, String> {
        let search_path = OsString::from(format!("{}:/usr/bin", self.path("tools/bin").display()));
        view(&ViewRequest {
            program,
            args,
            worktree: &self.path("worktree"),
            output_dir: &self.path("output"),
            home: &self.path("home"),
            run_dir: None,
            analysis_file: None,
            worktree_mounts: &[],
            read_only_paths: read_only,
            writable_paths: writable,
            real_home: Some(&self.path("realhome")),
            search_path: Some(&search_path),
            protected: &[self.path("data")],
        })
    }
}

fn shown(view: &View) -> Vec<(PathBuf, MountAccess)> {
    view.mounts
        .iter()
        .map(|mount| (mount.source.clone(), mount.access))
        .collect()
}

#[test]
fn sandbox_paths_are_absolute_or_in_home_and_plain() {
    let check = |text: &str, expected: Result<SandboxPath, ()>| {
        assert_eq!(
            SandboxPath::parse(text).map_err(|_| ()),
            expected,
            "{text:?}"
        );
    };
    check(
        "/opt/agent",
        Ok(SandboxPath::Absolute(PathBuf::from("/opt/agent"))),
    );
    check(
        "/opt/agent/",
        Ok(SandboxPath::Absolute(PathBuf::from("/opt/agent"))),
    );
    check(
        "~/.claude",
        Ok(SandboxPath::InHome(PathBuf::from(".claude"))),
    );
    check(
        "~/.cache/pip",
        Ok(SandboxPath::InHome(PathBuf::from(".cache/pip"))),
    );
    for refused in [
        "~",
        "~/",
        "/",
        "relative",
        "./x",
        "/opt/../etc",
        "~/../x",
        "~//etc",
        "/a/./b",
        "~user/x",
    ] {
        check(refused, Err(()));
    }
}

#[test]
fn an_installation_is_the_directory_holding_bin() {
    assert_eq!(
        installation(Path::new("/opt/node/bin/node")),
        Some(PathBuf::from("/opt/node"))
    );
    assert_eq!(
        installation(Path::new("/srv/tools/sbin/agent")),
        Some(PathBuf::from("/srv/tools"))
    );
    assert_eq!(installation(Path::new("/opt/agent/run")), None);
    assert_eq!(installation(Path::new("/bin/sh")), None);
}

#[test]
fn the_program_brings_its_installation_and_its_env_interpreter() {
    let dirs = Dirs::new();
    let interpreter = dirs.executable("tools/bin/agent-node", "\x7fELF");
    let script = dirs.executable(
        "scripts-agent",
        "#!/usr/bin/env -S agent-node --flag\nconsole.log(1)\n",
    );
    let view = dirs
        .view(&script, &[], &[], &[])
        .expect("the view is allowed");
    let shown = shown(&view);
    assert!(
        shown.contains(&(script.clone(), MountAccess::ReadOnly)),
        "{shown:?}"
    );
    assert!(
        shown.contains(&(dirs.path("tools"), MountAccess::ReadOnly)),
        "{shown:?}"
    );
    assert!(interpreter.starts_with(dirs.path("tools")));
}

#[test]
fn a_missing_env_interpreter_is_noted() {
    let dirs = Dirs::new();
    let script = dirs.executable("agent", "#!/usr/bin/env no-such-runtime\n");
    let view = dirs.view(&script, &[], &[], &[]).expect("allowed");
    assert_eq!(view.notes.len(), 1, "{:?}", view.notes);
    assert!(
        view.notes[0].contains("no-such-runtime: not found on PATH"),
        "{:?}",
        view.notes
    );
}

#[test]
fn absolute_arguments_are_shown_unless_they_hold_orch_data_or_the_home() {
    let dirs = Dirs::new();
    std::fs::create_dir_all(dirs.path("realhome")).expect("home");
    std::fs::write(dirs.path("settings.json"), "{}").expect("settings");
    let args = vec![
        format!("--settings={}", dirs.path("settings.json").display()),
        dirs.path("data").display().to_string(),
        dirs.dir.path().display().to_string(),
        dirs.path("realhome").display().to_string(),
        "/no/such/file".to_owned(),
        "-p".to_owned(),
    ];
    let view = dirs
        .view(Path::new("/bin/sh"), &args, &[], &[])
        .expect("allowed");
    let shown = shown(&view);
    assert!(shown.contains(&(dirs.path("settings.json"), MountAccess::ReadOnly)));
    for hidden in [
        dirs.path("data"),
        dirs.dir.path().to_path_buf(),
        dirs.path("realhome"),
    ] {
        assert!(
            !shown.iter().any(|(path, _)| *path == hidden),
            "{hidden:?} in {shown:?}"
        );
    }
    assert_eq!(view.notes.len(), 3, "{:?}", view.notes);
}

#[test]
fn configured_paths_holding_orch_data_are_refused_and_missing_ones_noted() {
    let dirs = Dirs::new();
    let err = dirs
        .view(
            Path::new("/bin/sh"),
            &[],
            &[],
            &[SandboxPath::Absolute(dirs.dir.path().to_path_buf())],
        )
        .expect_err("the temp dir holds orch's data");
    assert!(err.starts_with("writable_paths: "), "{err}");
    assert!(err.contains("holds orch's own"), "{err}");

    let view = dirs
        .view(
            Path::new("/bin/sh"),
            &[],
            &[SandboxPath::InHome(PathBuf::from(".claude"))],
            &[],
        )
        .expect("allowed");
    assert_eq!(
        view.notes,
        vec![format!(
            "read_only_paths: {} is not shown: it does not exist",
            dirs.path("realhome/.claude").display()
        )]
    );
}

#[test]
fn home_paths_are_shown_inside_the_private_home() {
    let dirs = Dirs::new();
    std::fs::create_dir_all(dirs.path("realhome/.claude")).expect("claude dir");
    let view = dirs
        .view(
            Path::new("/bin/sh"),
            &[],
            &[],
            &[SandboxPath::InHome(PathBuf::from(".claude"))],
        )
        .expect("allowed");
    assert!(view.mounts.contains(&SandboxMount {
        source: dirs.path("realhome/.claude"),
        target: dirs.path("home/.claude"),
        access: MountAccess::Writable,
    }));
}

#[test]
fn mounts_come_after_the_system_parents_before_children() {
    let view = View {
        mounts: vec![
            SandboxMount {
                source: PathBuf::from("/src/objects"),
                target: PathBuf::from("/repo/mirror.git/objects"),
                access: MountAccess::Writable,
            },
            SandboxMount {
                source: PathBuf::from("/src/view"),
                target: PathBuf::from("/repo/mirror.git"),
                access: MountAccess::Writable,
            },
            SandboxMount {
                source: PathBuf::from("/src/tool"),
                target: PathBuf::from("/tool"),
                access: MountAccess::ReadOnly,
            },
        ],
        notes: Vec::new(),
    };
    let args: Vec<String> = bwrap_args(
        &view,
        Isolation {
            network: false,
            privileged: true,
        },
        Path::new("/repo/worktree"),
        Path::new("/usr/bin/agent"),
        &["-p".to_owned()],
    )
    .into_iter()
    .map(|arg| arg.to_string_lossy().into_owned())
    .collect();
    let position = |word: &str| {
        args.iter()
            .position(|arg| arg == word)
            .unwrap_or_else(|| panic!("{word} in {args:?}"))
    };
    assert!(position("/tmp") < position("/tool"));
    assert!(position("/tool") < position("/repo/mirror.git"));
    assert!(position("/repo/mirror.git") < position("/repo/mirror.git/objects"));
    for flag in [
        "--unshare-net",
        "--unshare-pid",
        "--die-with-parent",
        "--new-session",
        "ALL",
    ] {
        position(flag);
    }
    assert_eq!(
        &args[args.len() - 5..],
        ["--chdir", "/repo/worktree", "--", "/usr/bin/agent", "-p"]
    );
    assert!(!args.iter().any(|arg| arg == "/"), "never the whole root");
}

#[test]
fn programs_are_found_like_execvp() {
    let dirs = Dirs::new();
    let tool = dirs.executable("tools/bin/tool", "#!/bin/sh\n");
    std::fs::write(dirs.path("tools/bin/not-executable"), "").expect("file");
    let search_path = OsString::from(format!("relative/bin:{}", dirs.path("tools/bin").display()));
    assert_eq!(find_program("tool", Some(&search_path)), Ok(tool.clone()));
    assert_eq!(
        find_program("not-executable", Some(&search_path)),
        Err("not-executable: not found on PATH".to_owned())
    );
    assert_eq!(find_program(tool.to_str().expect("utf-8"), None), Ok(tool));
    assert!(find_program("/no/such/program", None)
        .expect_err("missing")
        .starts_with("/no/such/program: "));
}
