//! Reading a ref of orch's mirror without starting `git`: the dispatch path reads a dozen refs
//! per `prepare`, and a process start costs milliseconds on a loaded machine (SPEC §7 wants an
//! agent started within 25 ms of its job).
//!
//! The mirror is orch's own bare repository with the `files` ref backend (its config is
//! rewritten from orch's template, which names no other): a ref is a loose file
//! `{git_dir}/{refname}` holding a sha, or else a line `{sha} {refname}` of `packed-refs`. git
//! writes both through a lock file and a rename, so a reader never sees half a file. Anything
//! this reader does not fully understand (a symbolic ref, a link, an odd file) is "cannot
//! tell", and the caller asks git.

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
    if !refname.starts_with("refs/")
        || refname
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return RefValue::AskGit;
    }
    match tokio::fs::symlink_metadata(git_dir.join(refname)).await {
        Ok(metadata) if metadata.is_file() && metadata.len() <= MAX_LOOSE_BYTES => {
            return match tokio::fs::read_to_string(git_dir.join(refname)).await {
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
    let packed = match tokio::fs::read_to_string(git_dir.join("packed-refs")).await {
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
