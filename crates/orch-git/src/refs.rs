//! Reading and writing a ref of orch's mirror without starting `git`: the dispatch path reads a
//! dozen refs per `prepare` and writes two for a new task, and a process start costs
//! milliseconds on a loaded machine (SPEC §7 wants an agent started within 25 ms of its job).
//!
//! The mirror is orch's own bare repository with the `files` ref backend (its config is
//! rewritten from orch's template, which names no other): a ref is a loose file
//! `{git_dir}/{refname}` holding a sha, or else a line `{sha} {refname}` of `packed-refs`. git
//! writes both through a lock file and a rename, so a reader never sees half a file, and `write`
//! follows the same protocol. Anything this module does not fully understand (a symbolic ref,
//! a link, an odd file, a held lock) is "cannot tell", and the caller asks git.

use std::path::Path;

use orch_core::ids::CommitSha;

/// The largest loose ref file read.
const MAX_LOOSE_BYTES: u64 = 4096;

/// What the files say about one ref.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RefValue {
    /// The ref points at this commit.
    Points(CommitSha),
    /// The ref does not exist.
    Missing,
    /// The files say something this reader does not interpret: ask git.
    AskGit,
}

/// The value of `refname` (a full name under `refs/`) in `git_dir`.
pub(crate) async fn read(git_dir: &Path, refname: &str) -> RefValue {
    let (git_dir, refname) = (git_dir.to_path_buf(), refname.to_owned());
    tokio::task::spawn_blocking(move || read_blocking(&git_dir, &refname))
        .await
        .unwrap_or(RefValue::AskGit)
}

fn read_blocking(git_dir: &Path, refname: &str) -> RefValue {
    if !refname.starts_with("refs/")
        || refname
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return RefValue::AskGit;
    }
    match std::fs::symlink_metadata(git_dir.join(refname)) {
        Ok(metadata) if metadata.is_file() && metadata.len() <= MAX_LOOSE_BYTES => {
            return match std::fs::read_to_string(git_dir.join(refname)) {
                Ok(text) => CommitSha::new(text.trim_end_matches('\n'))
                    .map_or(RefValue::AskGit, RefValue::Points),
                // Gone between the two calls (packed, or deleted): git knows.
                Err(_) => RefValue::AskGit,
            };
        }
        // A directory of that name holds longer refs (`refs/heads/a/b`), not this one.
        Ok(metadata) if metadata.is_dir() => {}
        Ok(_) => return RefValue::AskGit,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(_) => return RefValue::AskGit,
    }
    let packed = match std::fs::read_to_string(git_dir.join("packed-refs")) {
        Ok(packed) => packed,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return RefValue::Missing,
        Err(_) => return RefValue::AskGit,
    };
    let mut lines = packed.lines().peekable();
    while let Some(line) = lines.next() {
        if line.starts_with('#') || line.starts_with('^') {
            continue;
        }
        let Some((sha, name)) = line.split_once(' ') else {
            return RefValue::AskGit;
        };
        if name == refname {
            if lines.peek().is_some_and(|next| next.starts_with('^')) {
                // An annotated tag: git peels it to its commit.
                return RefValue::AskGit;
            }
            return CommitSha::new(sha).map_or(RefValue::AskGit, RefValue::Points);
        }
    }
    RefValue::Missing
}

/// What a ref must be before `write` changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// It must not exist (`git update-ref <ref> <new> ""`).
    Missing,
    /// Any commit, or missing (`git update-ref <ref> <new>`).
    Anything,
}

/// What `write` did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Written {
    /// The ref now points at the new commit.
    Done,
    /// Not written: the ref was not as expected, or this writer does not handle the case (a
    /// lock held, a symbolic ref, a name git might refuse, a directory in the way). Ask
    /// `git update-ref`, which writes it or says why not.
    AskGit,
}

/// Points `refname` of `git_dir` at `new` as `git update-ref` does, without a process: the
/// lock file `<ref>.lock` is created exclusively (so git and this writer exclude each other),
/// the value is checked against `expected` under it, written, and renamed over the ref. A
/// crash leaves either the old ref or the new one, and at worst a stale `.lock` (as a crashed
/// git does). No reflog: orch's mirror is bare and logs no ref updates. Not fsynced, as git by
/// default does not either.
pub(crate) async fn write(
    git_dir: &Path,
    refname: &str,
    new: &CommitSha,
    expected: Expect,
) -> Written {
    let (git_dir, refname, new) = (git_dir.to_path_buf(), refname.to_owned(), new.clone());
    tokio::task::spawn_blocking(move || write_blocking(&git_dir, &refname, &new, expected))
        .await
        .unwrap_or(Written::AskGit)
}

fn write_blocking(git_dir: &Path, refname: &str, new: &CommitSha, expected: Expect) -> Written {
    if !plain_refname(refname) {
        return Written::AskGit;
    }
    let path = git_dir.join(refname);
    let lock = git_dir.join(format!("{refname}.lock"));
    if let Some(parent) = path.parent() {
        // A file where a directory must be (`refs/heads/a` for `refs/heads/a/b`) fails here.
        if std::fs::create_dir_all(parent).is_err() {
            return Written::AskGit;
        }
    }
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&lock)
    {
        Ok(file) => file,
        Err(_) => return Written::AskGit,
    };
    let ok = match (read_blocking(git_dir, refname), expected) {
        (RefValue::Missing, Expect::Missing) => !packed_name_conflicts(git_dir, refname),
        (RefValue::Points(_) | RefValue::Missing, Expect::Anything) => true,
        _ => false,
    };
    let written = ok
        && std::io::Write::write_all(&mut file, format!("{}\n", new.as_str()).as_bytes()).is_ok()
        && std::fs::rename(&lock, &path).is_ok();
    if written {
        Written::Done
    } else {
        let _ = std::fs::remove_file(&lock);
        Written::AskGit
    }
}

/// A name this writer may create: `refs/…` whose every part is a plain name of letters,
/// digits, `-`, `_` and `.` that git's `check-ref-format` accepts (not starting with `.`, not
/// ending with `.` or `.lock`). Anything else is left to git.
fn plain_refname(refname: &str) -> bool {
    refname.starts_with("refs/")
        && refname.split('/').all(|part| {
            !part.is_empty()
                && !part.starts_with('.')
                && !part.ends_with('.')
                && !part.ends_with(".lock")
                && !part.contains("..")
                && part
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
        })
}

/// Whether `packed-refs` holds a ref that is a prefix directory of `refname` or lies under
/// it (`refs/heads/a` and `refs/heads/a/b` cannot both exist): git would refuse the new ref.
/// An unreadable file counts as a conflict.
fn packed_name_conflicts(git_dir: &Path, refname: &str) -> bool {
    let packed = match std::fs::read_to_string(git_dir.join("packed-refs")) {
        Ok(packed) => packed,
        Err(err) => return err.kind() != std::io::ErrorKind::NotFound,
    };
    let under = format!("{refname}/");
    packed
        .lines()
        .filter_map(|line| line.split_once(' ').map(|(_, name)| name))
        .any(|name| name.starts_with(&under) || refname.starts_with(&format!("{name}/")))
}

/// Whether `git_dir`'s `HEAD` (a worktree's admin directory) is attached to `refname`, as
/// git writes it; `None` when the file says anything else (detached, another branch, an odd
/// file an agent wrote): ask git.
pub(crate) async fn head_is(git_dir: &Path, refname: &str) -> Option<bool> {
    let path = git_dir.join("HEAD");
    let metadata = tokio::fs::symlink_metadata(&path).await.ok()?;
    if !metadata.is_file() || metadata.len() > MAX_LOOSE_BYTES {
        return None;
    }
    let text = tokio::fs::read_to_string(&path).await.ok()?;
    (text == format!("ref: {refname}\n")).then_some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";

    fn sha(text: &str) -> CommitSha {
        CommitSha::new(text).expect("sha")
    }

    #[tokio::test]
    async fn a_loose_ref_wins_over_its_packed_line() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("refs/heads")).expect("refs dir");
        std::fs::write(
            dir.path().join("packed-refs"),
            format!("# pack-refs with: peeled fully-peeled sorted \n{A} refs/heads/main\n{A} refs/heads/other\n"),
        )
        .expect("packed-refs");
        std::fs::write(dir.path().join("refs/heads/main"), format!("{B}\n")).expect("loose");
        assert_eq!(
            read(dir.path(), "refs/heads/main").await,
            RefValue::Points(sha(B))
        );
        assert_eq!(
            read(dir.path(), "refs/heads/other").await,
            RefValue::Points(sha(A))
        );
        assert_eq!(read(dir.path(), "refs/heads/gone").await, RefValue::Missing);
    }

    #[tokio::test]
    async fn without_packed_refs_a_missing_ref_is_missing() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("refs/heads/et-1")).expect("refs dir");
        assert_eq!(read(dir.path(), "refs/heads/main").await, RefValue::Missing);
        // A directory is a prefix of longer names, not this ref.
        assert_eq!(read(dir.path(), "refs/heads/et-1").await, RefValue::Missing);
    }

    #[tokio::test]
    async fn what_the_reader_does_not_understand_goes_to_git() {
        let dir = tempfile::tempdir().expect("temp dir");
        let heads = dir.path().join("refs/heads");
        std::fs::create_dir_all(&heads).expect("refs dir");
        std::fs::write(heads.join("symbolic"), "ref: refs/heads/main\n").expect("symbolic");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), heads.join("link")).expect("link");
        for name in [
            "refs/heads/symbolic",
            "refs/heads/link",
            "HEAD",
            "refs/heads/../../HEAD",
            "refs//heads",
        ] {
            assert_eq!(read(dir.path(), name).await, RefValue::AskGit, "{name}");
        }
        std::fs::write(dir.path().join("packed-refs"), "garbage\n").expect("packed-refs");
        assert_eq!(read(dir.path(), "refs/heads/main").await, RefValue::AskGit);
    }

    #[tokio::test]
    async fn write_creates_a_missing_ref_and_never_overwrites_one_it_did_not_expect() {
        let dir = tempfile::tempdir().expect("temp dir");
        let git_dir = dir.path();
        let name = "refs/heads/feature/et-1";
        assert_eq!(
            write(git_dir, name, &sha(A), Expect::Missing).await,
            Written::Done
        );
        assert_eq!(read(git_dir, name).await, RefValue::Points(sha(A)));
        assert_eq!(
            write(git_dir, name, &sha(B), Expect::Missing).await,
            Written::AskGit,
            "it exists now"
        );
        assert_eq!(read(git_dir, name).await, RefValue::Points(sha(A)));
        assert_eq!(
            write(git_dir, name, &sha(B), Expect::Anything).await,
            Written::Done
        );
        assert_eq!(read(git_dir, name).await, RefValue::Points(sha(B)));
        assert!(
            !git_dir.join(format!("{name}.lock")).exists(),
            "no lock left"
        );

        // A packed ref exists as much as a loose one.
        std::fs::write(
            git_dir.join("packed-refs"),
            format!("{A} refs/heads/packed\n"),
        )
        .expect("packed-refs");
        assert_eq!(
            write(git_dir, "refs/heads/packed", &sha(B), Expect::Missing).await,
            Written::AskGit
        );
        assert!(!git_dir.join("refs/heads/packed").exists());
    }

    #[tokio::test]
    async fn write_leaves_to_git_a_held_lock_a_name_conflict_and_odd_names() {
        let dir = tempfile::tempdir().expect("temp dir");
        let git_dir = dir.path();
        std::fs::create_dir_all(git_dir.join("refs/heads")).expect("refs dir");
        // Another writer (git) holds the lock: its lock stays, the ref is not written.
        std::fs::write(git_dir.join("refs/heads/held.lock"), "").expect("lock");
        assert_eq!(
            write(git_dir, "refs/heads/held", &sha(A), Expect::Anything).await,
            Written::AskGit
        );
        assert!(git_dir.join("refs/heads/held.lock").exists());
        assert!(!git_dir.join("refs/heads/held").exists());
        // `refs/heads/a` and `refs/heads/a/b` cannot both exist, loose or packed.
        std::fs::write(git_dir.join("refs/heads/a"), format!("{A}\n")).expect("loose");
        std::fs::write(git_dir.join("packed-refs"), format!("{A} refs/heads/p/q\n"))
            .expect("packed-refs");
        for name in ["refs/heads/a/b", "refs/heads/p"] {
            assert_eq!(
                write(git_dir, name, &sha(B), Expect::Missing).await,
                Written::AskGit,
                "{name}"
            );
        }
        for name in [
            "refs/heads/x.lock",
            "refs/heads/.hidden",
            "refs/heads/a..b",
            "refs/heads/with space",
            "refs/heads/tilde~1",
            "HEAD",
            "refs/heads/",
        ] {
            assert_eq!(
                write(git_dir, name, &sha(B), Expect::Anything).await,
                Written::AskGit,
                "{name}"
            );
        }
    }

    #[tokio::test]
    async fn git_reads_a_ref_written_here() {
        let dir = tempfile::tempdir().expect("temp dir");
        let run = |args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .current_dir(dir.path())
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("HOME", dir.path())
                .output()
                .expect("git")
        };
        assert!(run(&["init", "--bare", "--quiet"]).status.success());
        let blob = run(&["hash-object", "-w", "--stdin"]);
        assert!(blob.status.success());
        let tree = run(&["mktree"]);
        let tree = String::from_utf8_lossy(&tree.stdout).trim().to_owned();
        let commit = std::process::Command::new("git")
            .args(["commit-tree", &tree, "-m", "x"])
            .current_dir(dir.path())
            .env("HOME", dir.path())
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@localhost")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@localhost")
            .output()
            .expect("commit-tree");
        let commit = sha(String::from_utf8_lossy(&commit.stdout).trim());
        assert_eq!(
            write(dir.path(), "refs/heads/task/et-1", &commit, Expect::Missing).await,
            Written::Done
        );
        let parsed = run(&["rev-parse", "--verify", "refs/heads/task/et-1"]);
        assert_eq!(
            String::from_utf8_lossy(&parsed.stdout).trim(),
            commit.as_str()
        );
        let list = run(&["for-each-ref", "--format=%(refname)"]);
        assert_eq!(
            String::from_utf8_lossy(&list.stdout).trim(),
            "refs/heads/task/et-1"
        );
    }

    #[tokio::test]
    async fn head_is_true_only_for_the_exact_attachment() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(head_is(dir.path(), "refs/heads/main").await, None);
        std::fs::write(dir.path().join("HEAD"), "ref: refs/heads/main\n").expect("HEAD");
        assert_eq!(head_is(dir.path(), "refs/heads/main").await, Some(true));
        assert_eq!(head_is(dir.path(), "refs/heads/other").await, None);
        std::fs::write(dir.path().join("HEAD"), format!("{A}\n")).expect("HEAD");
        assert_eq!(head_is(dir.path(), "refs/heads/main").await, None);
    }
}
