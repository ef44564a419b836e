//! The bubblewrap sandbox of one agent run: what it shows (`View`) and the `bwrap` arguments.
//!
//! The view starts from nothing and adds: the system read-only (`/usr`, the `/bin` and `/lib`
//! links or directories, the pieces of `/etc` that DNS, TLS and user lookups need), fresh
//! `/proc`, `/dev`, `/tmp` and `/var/tmp`, and then the run's own paths: the worktree, the
//! output directory and the private home (writable), the run's prompt files (read-only), the
//! worktree's git directories (as the workspace asked), the agent's program with its
//! installation and every absolute path named in its command (read-only), and the role's
//! `read_only_paths` and `writable_paths`. Nothing that holds one of the protected paths
//! (orch's database, config, data and repositories) is ever shown.

use std::ffi::{OsStr, OsString};
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};

use orch_core::ports::{MountAccess, SandboxMount};

use crate::config::SandboxPath;

/// Top-level system directories: on merged-`/usr` systems these are links into `/usr`.
const SYSTEM_LINKS: [&str; 6] = ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];

/// What of `/etc` an agent sees: name resolution, TLS roots, users and groups, time zone,
/// the dynamic linker's cache and Debian's alternatives.
const ETC_PIECES: [&str; 20] = [
    "resolv.conf",
    "hosts",
    "host.conf",
    "nsswitch.conf",
    "gai.conf",
    "services",
    "protocols",
    "passwd",
    "group",
    "localtime",
    "timezone",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "pki",
    "crypto-policies",
    "alternatives",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
];

/// How many interpreters deep `#!` lines are followed (a script run by `env node`, …).
const MAX_INTERPRETER_DEPTH: usize = 4;

/// How much of a program is read to find its `#!` line.
const SHEBANG_BYTES: u64 = 256;

/// Everything one sandbox shows besides the system.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct View {
    pub(crate) mounts: Vec<SandboxMount>,
    /// What was left out, and why (for `orch check`).
    pub(crate) notes: Vec<String>,
}

/// The paths of one run, resolved by the runner.
#[derive(Debug, Clone)]
pub(crate) struct ViewRequest<'a> {
    /// The program, as found on `PATH` (absolute).
    pub(crate) program: &'a Path,
    /// The configured command's arguments (every absolute path among them is shown).
    pub(crate) args: &'a [String],
    pub(crate) worktree: &'a Path,
    pub(crate) output_dir: &'a Path,
    pub(crate) home: &'a Path,
    /// The run's prompt, description and feedback files.
    pub(crate) run_dir: Option<&'a Path>,
    pub(crate) analysis_file: Option<&'a Path>,
    /// What the workspace asked for (the worktree's git directories).
    pub(crate) worktree_mounts: &'a [SandboxMount],
    pub(crate) read_only_paths: &'a [SandboxPath],
    pub(crate) writable_paths: &'a [SandboxPath],
    /// The home of the user orch runs as, for `~/…` paths.
    pub(crate) real_home: Option<&'a Path>,
    /// The agent's `PATH`, to find `#!/usr/bin/env NAME` interpreters.
    pub(crate) search_path: Option<&'a OsStr>,
    pub(crate) protected: &'a [PathBuf],
}

/// How the sandbox is started, besides what it shows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Isolation {
    pub(crate) network: bool,
    /// orch holds capabilities (it runs as root): the sandbox drops them all.
    pub(crate) privileged: bool,
}

/// Computes what the sandbox of `request` shows. Errors name a path that must not be shown
/// (it holds orch's data) or that the run cannot do without.
pub(crate) fn view(request: &ViewRequest<'_>) -> Result<View, String> {
    let protected: Vec<PathBuf> = request
        .protected
        .iter()
        .map(|path| lenient_canonical(path))
        .collect();
    let mut builder = Builder {
        view: View::default(),
        protected,
        real_home: request.real_home.map(lenient_canonical),
    };
    for (path, access) in [
        (request.worktree, MountAccess::Writable),
        (request.output_dir, MountAccess::Writable),
        (request.home, MountAccess::Writable),
    ] {
        builder.require(path, path, access)?;
    }
    for mount in request.worktree_mounts {
        builder.require(&mount.source, &mount.target, mount.access)?;
    }
    if let Some(run_dir) = request.run_dir {
        builder.require(run_dir, run_dir, MountAccess::ReadOnly)?;
    }
    if let Some(file) = request.analysis_file {
        builder.require(file, file, MountAccess::ReadOnly)?;
    }
    builder.program(request.program, request.search_path, 0);
    for arg in request.args {
        let candidate = match arg.split_once('=') {
            Some((option, value)) if option.starts_with('-') => value,
            _ => arg.as_str(),
        };
        if candidate.starts_with('/') {
            builder.optional(Path::new(candidate), MountAccess::ReadOnly);
        }
    }
    for (paths, access, key) in [
        (
            request.read_only_paths,
            MountAccess::ReadOnly,
            "read_only_paths",
        ),
        (
            request.writable_paths,
            MountAccess::Writable,
            "writable_paths",
        ),
    ] {
        for path in paths {
            let (source, target) = match path {
                SandboxPath::Absolute(path) => (path.clone(), path.clone()),
                SandboxPath::InHome(relative) => match request.real_home {
                    Some(real_home) => (real_home.join(relative), request.home.join(relative)),
                    None => {
                        builder.note(format!("{key}: ~/{}: orch has no HOME", relative.display()));
                        continue;
                    }
                },
            };
            if std::fs::symlink_metadata(&source).is_err() {
                builder.note(format!(
                    "{key}: {} is not shown: it does not exist",
                    source.display()
                ));
                continue;
            }
            if let Some(reason) = builder.forbidden(&source) {
                return Err(format!("{key}: {} {reason}", source.display()));
            }
            builder.push(&source, &target, access);
        }
    }
    Ok(builder.view)
}

/// The `bwrap` arguments that show `view` and run `program args` in `cwd`.
pub(crate) fn bwrap_args(
    view: &View,
    isolation: Isolation,
    cwd: &Path,
    program: &Path,
    args: &[String],
) -> Vec<OsString> {
    let mut argv: Vec<OsString> = [
        "--die-with-parent",
        "--new-session",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    if !isolation.network {
        argv.push("--unshare-net".into());
    }
    if isolation.privileged {
        argv.extend(["--cap-drop".into(), "ALL".into()]);
    }
    let mut push = |words: &[&OsStr]| argv.extend(words.iter().map(|word| word.to_os_string()));
    push(&["--ro-bind".as_ref(), "/usr".as_ref(), "/usr".as_ref()]);
    for link in SYSTEM_LINKS {
        match std::fs::symlink_metadata(link) {
            Ok(metadata) if metadata.file_type().is_symlink() => {
                if let Ok(target) = std::fs::read_link(link) {
                    push(&["--symlink".as_ref(), target.as_os_str(), link.as_ref()]);
                }
            }
            Ok(metadata) if metadata.is_dir() => {
                push(&["--ro-bind".as_ref(), link.as_ref(), link.as_ref()])
            }
            _ => {}
        }
    }
    for piece in ETC_PIECES {
        let path = Path::new("/etc").join(piece);
        push(&["--ro-bind-try".as_ref(), path.as_os_str(), path.as_os_str()]);
    }
    push(&[
        "--proc".as_ref(),
        "/proc".as_ref(),
        "--dev".as_ref(),
        "/dev".as_ref(),
        "--tmpfs".as_ref(),
        "/tmp".as_ref(),
        "--tmpfs".as_ref(),
        "/var/tmp".as_ref(),
    ]);
    // A mount's parent is mounted first, so what lies inside another mount shows on top of it.
    let mut mounts: Vec<&SandboxMount> = view.mounts.iter().collect();
    mounts.sort_by_key(|mount| mount.target.components().count());
    for mount in mounts {
        let flag = match mount.access {
            MountAccess::ReadOnly => "--ro-bind",
            MountAccess::Writable => "--bind",
        };
        push(&[
            flag.as_ref(),
            mount.source.as_os_str(),
            mount.target.as_os_str(),
        ]);
    }
    push(&[
        "--chdir".as_ref(),
        cwd.as_os_str(),
        "--".as_ref(),
        program.as_os_str(),
    ]);
    argv.extend(args.iter().map(OsString::from));
    argv
}

/// Finds `name` the way `execvp` would: a name with a `/` is a path (relative to orch's working
/// directory), anything else is looked up in `search_path`. The result is absolute.
pub(crate) fn find_program(name: &str, search_path: Option<&OsStr>) -> Result<PathBuf, String> {
    if name.contains('/') {
        let path = std::path::absolute(name).map_err(|err| format!("{name}: {err}"))?;
        return match std::fs::metadata(&path) {
            Ok(metadata) if metadata.is_file() => Ok(path),
            Ok(_) => Err(format!("{name}: not a file")),
            Err(err) => Err(format!("{name}: {err}")),
        };
    }
    search_path
        .into_iter()
        .flat_map(std::env::split_paths)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| format!("{name}: not found on PATH"))
}

/// The `bwrap` program: `configured`, else `bwrap` on orch's `PATH`, else in `/usr/bin` or
/// `/bin` (a service's `PATH` may be minimal).
pub(crate) fn find_bwrap(configured: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = configured {
        return find_program(&path.to_string_lossy(), None);
    }
    find_system_program("bwrap").map_err(|err| {
        format!("{err}: install bubblewrap (Debian: apt-get install bubblewrap), or set agents.bwrap_path")
    })
}

/// A program orch itself runs around an agent: `name` on orch's `PATH`, else in `/usr/bin` or
/// `/bin` (a service's `PATH` may be minimal).
pub(crate) fn find_system_program(name: &str) -> Result<PathBuf, String> {
    let standard = OsString::from("/usr/bin:/bin");
    find_program(name, std::env::var_os("PATH").as_deref())
        .or_else(|_| find_program(name, Some(&standard)))
}

/// Whether orch holds any capability (it runs as root, or was given some): then agents are
/// started without them, so they cannot read orch's memory or environment.
pub(crate) fn orch_is_privileged() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps != 0)
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

struct Builder {
    view: View,
    /// Canonical.
    protected: Vec<PathBuf>,
    /// Canonical.
    real_home: Option<PathBuf>,
}

impl Builder {
    fn note(&mut self, note: String) {
        self.view.notes.push(note);
    }

    fn push(&mut self, source: &Path, target: &Path, access: MountAccess) {
        let mount = SandboxMount {
            source: source.to_path_buf(),
            target: target.to_path_buf(),
            access,
        };
        if !self.view.mounts.contains(&mount) {
            self.view.mounts.push(mount);
        }
    }

    /// A path the run cannot do without; refused if it holds a protected path.
    fn require(&mut self, source: &Path, target: &Path, access: MountAccess) -> Result<(), String> {
        if let Some(reason) = self.forbidden(source) {
            return Err(format!("{} {reason}", source.display()));
        }
        self.push(source, target, access);
        Ok(())
    }

    /// A path shown if it exists and may be shown; otherwise a note says why not.
    fn optional(&mut self, path: &Path, access: MountAccess) {
        if std::fs::symlink_metadata(path).is_err() {
            return;
        }
        if self.is_shown(path, access) {
            return;
        }
        match self.forbidden(path).or_else(|| self.too_broad(path)) {
            Some(reason) => self.note(format!("{} is not shown: it {reason}", path.display())),
            None => self.push(path, path, access),
        }
    }

    /// Shows the program and what it needs to run: its installation (the directory holding
    /// its `bin/`) when there is one, and the interpreter of a `#!` script, followed through
    /// `env` and symbolic links.
    fn program(&mut self, program: &Path, search_path: Option<&OsStr>, depth: usize) {
        let resolved = std::fs::canonicalize(program).unwrap_or_else(|_| program.to_path_buf());
        for path in [program, resolved.as_path()] {
            match installation(path) {
                Some(prefix)
                    if self.forbidden(&prefix).is_none() && self.too_broad(&prefix).is_none() =>
                {
                    self.optional(&prefix, MountAccess::ReadOnly)
                }
                _ => self.optional(path, MountAccess::ReadOnly),
            }
        }
        if depth >= MAX_INTERPRETER_DEPTH {
            return;
        }
        let Some(interpreter) = interpreter(&resolved, search_path) else {
            return;
        };
        match interpreter {
            Ok(interpreter) => self.program(&interpreter, search_path, depth + 1),
            Err(note) => self.note(note),
        }
    }

    /// Why `path` must not be shown: it holds (or is) a protected path, or is `/`.
    fn forbidden(&self, path: &Path) -> Option<String> {
        let canonical = lenient_canonical(path);
        if canonical == Path::new("/") {
            return Some("is the whole file system".to_owned());
        }
        self.protected
            .iter()
            .find(|protected| protected.starts_with(&canonical))
            .map(|protected| format!("holds orch's own {}", protected.display()))
    }

    /// Why a path found in the command is not shown although it may be: it is the user's
    /// whole home or holds it.
    fn too_broad(&self, path: &Path) -> Option<String> {
        let canonical = lenient_canonical(path);
        self.real_home
            .as_ref()
            .filter(|home| home.starts_with(&canonical))
            .map(|_| "holds the whole home of orch's user".to_owned())
    }

    /// Whether `path` is already shown, with at least `access`, at its own place: inside the
    /// system's read-only directories or inside a mount added before.
    fn is_shown(&self, path: &Path, access: MountAccess) -> bool {
        let canonical = lenient_canonical(path);
        let in_system = access == MountAccess::ReadOnly
            && (canonical.starts_with("/usr")
                || ETC_PIECES
                    .iter()
                    .any(|piece| canonical.starts_with(Path::new("/etc").join(piece))));
        in_system
            || self.view.mounts.iter().any(|mount| {
                mount.source == mount.target
                    && canonical.starts_with(lenient_canonical(&mount.source))
                    && (access == MountAccess::ReadOnly || mount.access == MountAccess::Writable)
            })
    }
}

/// The installation a program belongs to: the directory holding the `bin/` (or `sbin/`) it
/// lies in, which also holds its `lib/` and `share/`.
fn installation(program: &Path) -> Option<PathBuf> {
    let bin = program.parent()?;
    let name = bin.file_name()?;
    (name == "bin" || name == "sbin")
        .then(|| bin.parent().map(Path::to_path_buf))
        .flatten()
        .filter(|prefix| prefix.components().count() > 1)
}

/// The interpreter named by `program`'s `#!` line, found on `search_path` for
/// `#!/usr/bin/env NAME`; `None` for a program without one.
fn interpreter(program: &Path, search_path: Option<&OsStr>) -> Option<Result<PathBuf, String>> {
    let mut head = Vec::new();
    std::fs::File::open(program)
        .ok()?
        .take(SHEBANG_BYTES)
        .read_to_end(&mut head)
        .ok()?;
    let line = head.strip_prefix(b"#!")?;
    let line = line.split(|byte| *byte == b'\n').next()?;
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    let interpreter = PathBuf::from(words.next()?);
    if interpreter.file_name() != Some(OsStr::new("env")) {
        return Some(Ok(interpreter));
    }
    let name = words.find(|word| !word.starts_with('-') && !word.contains('='))?;
    Some(find_program(name, search_path).map_err(|err| {
        format!(
            "{}: its interpreter {err} (the agent's PATH)",
            program.display()
        )
    }))
}

/// `path` with symbolic links resolved in its longest existing prefix.
fn lenient_canonical(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(resolved) = std::fs::canonicalize(existing) {
            return rest
                .iter()
                .rev()
                .fold(resolved, |path: PathBuf, part: &&OsStr| path.join(part));
        }
        match (existing.parent(), existing.components().next_back()) {
            (Some(parent), Some(Component::Normal(name))) => {
                rest.push(name);
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

#[cfg(test)]
mod tests;
