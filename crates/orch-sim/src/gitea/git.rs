//! Git plumbing for `GiteaSim`: bare repositories, ref snapshots and server-side merges.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// The longest any one git command of the simulator may take.
const GIT_TIMEOUT: Duration = Duration::from_secs(60);

/// The all-zero object id git uses for "no commit".
pub(crate) const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// Why a git command failed.
#[derive(Debug)]
pub(crate) struct GitError(pub(crate) String);

impl std::fmt::Display for GitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "git: {}", self.0)
    }
}

impl std::error::Error for GitError {}

/// What a git command printed and how it ended.
pub(crate) struct GitOutput {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// A `git` command isolated from the user's and the system's configuration.
pub(crate) fn command(repo: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(repo)
        .args([
            "-c",
            "user.name=Gitea Sim",
            "-c",
            "user.email=sim@gitea.invalid",
        ])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs git in `repo` with `args` and `envs`, feeding `input` on stdin.
pub(crate) async fn run(
    repo: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    input: Option<&[u8]>,
) -> Result<GitOutput, GitError> {
    let mut cmd = command(repo);
    cmd.args(args);
    for (key, value) in envs {
        cmd.env(key, value);
    }
    if input.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd
        .spawn()
        .map_err(|err| GitError(format!("spawn: {err}")))?;
    if let Some(input) = input {
        use tokio::io::AsyncWriteExt;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(input)
                .await
                .map_err(|err| GitError(format!("stdin: {err}")))?;
        }
    }
    let output = tokio::time::timeout(GIT_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| GitError(format!("git {} timed out", args.first().unwrap_or(&""))))?
        .map_err(|err| GitError(format!("wait: {err}")))?;
    Ok(GitOutput {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// Runs git and returns its trimmed stdout; a non-zero exit is an error.
pub(crate) async fn ok(repo: &Path, args: &[&str]) -> Result<String, GitError> {
    ok_with(repo, args, &[], None).await
}

async fn ok_with(
    repo: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    input: Option<&[u8]>,
) -> Result<String, GitError> {
    let out = run(repo, args, envs, input).await?;
    if out.code != 0 {
        return Err(GitError(format!(
            "git {} exited {}: {}",
            args.join(" "),
            out.code,
            out.stderr.trim()
        )));
    }
    Ok(out.stdout.trim().to_owned())
}

/// Creates a bare repository at `path` whose `main` holds one commit with a README.
pub(crate) async fn init_bare(
    path: &Path,
    default_branch: &str,
    readme: &str,
) -> Result<String, GitError> {
    std::fs::create_dir_all(path)
        .map_err(|err| GitError(format!("create {}: {err}", path.display())))?;
    ok(path, &["init", "--quiet", "--bare", "-b", default_branch]).await?;
    ok(path, &["config", "http.receivepack", "true"]).await?;
    ok(path, &["config", "receive.denyDeleteCurrent", "false"]).await?;
    let blob = ok_with(
        path,
        &["hash-object", "-w", "--stdin"],
        &[],
        Some(readme.as_bytes()),
    )
    .await?;
    let tree_line = format!("100644 blob {blob}\tREADME.md\n");
    let tree = ok_with(path, &["mktree"], &[], Some(tree_line.as_bytes())).await?;
    let commit = ok(path, &["commit-tree", &tree, "-m", "Initial commit"]).await?;
    let refname = format!("refs/heads/{default_branch}");
    ok(path, &["update-ref", &refname, &commit]).await?;
    Ok(commit)
}

/// Every ref of the repository and the object it points at.
pub(crate) async fn refs(repo: &Path) -> Result<BTreeMap<String, String>, GitError> {
    let out = ok(repo, &["for-each-ref", "--format=%(objectname) %(refname)"]).await?;
    Ok(out
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(sha, name)| (name.to_owned(), sha.to_owned()))
        .collect())
}

/// The commit `refs/heads/{branch}` points at, if the branch exists.
pub(crate) async fn branch_tip(repo: &Path, branch: &str) -> Result<Option<String>, GitError> {
    let refname = format!("refs/heads/{branch}^{{commit}}");
    let out = run(
        repo,
        &["rev-parse", "--verify", "--quiet", &refname],
        &[],
        None,
    )
    .await?;
    Ok((out.code == 0).then(|| out.stdout.trim().to_owned()))
}

/// Whether the tree of commit `sha` has a file at `path`.
pub(crate) async fn has_file(repo: &Path, sha: &str, path: &str) -> Result<bool, GitError> {
    let spec = format!("{sha}:{path}");
    let out = run(repo, &["cat-file", "-e", &spec], &[], None).await?;
    Ok(out.code == 0)
}

/// The best common ancestor of two commits.
pub(crate) async fn merge_base(
    repo: &Path,
    one: &str,
    two: &str,
) -> Result<Option<String>, GitError> {
    let out = run(repo, &["merge-base", one, two], &[], None).await?;
    Ok((out.code == 0).then(|| out.stdout.trim().to_owned()))
}

/// How many commits `head` has that `base` does not.
pub(crate) async fn count_ahead(repo: &Path, base: &str, head: &str) -> Result<u64, GitError> {
    let range = format!("{base}..{head}");
    let out = ok(repo, &["rev-list", "--count", &range]).await?;
    out.parse()
        .map_err(|_| GitError(format!("rev-list --count printed {out:?}")))
}

/// Commits in `range` (rev-list syntax), newest first.
pub(crate) async fn rev_list(repo: &Path, args: &[&str]) -> Result<Vec<String>, GitError> {
    let mut all = vec!["rev-list"];
    all.extend_from_slice(args);
    let out = ok(repo, &all).await?;
    Ok(out.lines().map(str::to_owned).collect())
}

/// What the simulator reports about one commit.
#[derive(Debug, Clone)]
pub(crate) struct CommitInfo {
    pub(crate) sha: String,
    pub(crate) author_name: String,
    pub(crate) author_email: String,
    pub(crate) committer_name: String,
    pub(crate) committer_email: String,
    pub(crate) timestamp: String,
    pub(crate) message: String,
    pub(crate) added: Vec<String>,
    pub(crate) removed: Vec<String>,
    pub(crate) modified: Vec<String>,
}

/// Reads one commit's metadata and changed files.
pub(crate) async fn commit_info(repo: &Path, sha: &str) -> Result<CommitInfo, GitError> {
    let out = ok(
        repo,
        &[
            "log",
            "-1",
            "--format=%H%x00%an%x00%ae%x00%cn%x00%ce%x00%cI%x00%B",
            sha,
        ],
    )
    .await?;
    let mut fields = out.splitn(7, '\0');
    let mut next = || fields.next().unwrap_or_default().to_owned();
    let mut info = CommitInfo {
        sha: next(),
        author_name: next(),
        author_email: next(),
        committer_name: next(),
        committer_email: next(),
        timestamp: next(),
        message: format!("{}\n", next().trim_end()),
        added: Vec::new(),
        removed: Vec::new(),
        modified: Vec::new(),
    };
    let changes = ok(
        repo,
        &[
            "diff-tree",
            "--root",
            "--no-commit-id",
            "--name-status",
            "-r",
            sha,
        ],
    )
    .await?;
    for line in changes.lines() {
        let Some((kind, path)) = line.split_once('\t') else {
            continue;
        };
        match kind.chars().next() {
            Some('A') => info.added.push(path.to_owned()),
            Some('D') => info.removed.push(path.to_owned()),
            _ => info.modified.push(path.to_owned()),
        }
    }
    Ok(info)
}

/// How a pull request is merged (Gitea's `Do`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MergeStyle {
    Merge,
    Squash,
    Rebase,
    RebaseMerge,
}

impl MergeStyle {
    pub(crate) fn parse(word: &str) -> Option<MergeStyle> {
        match word {
            "merge" => Some(MergeStyle::Merge),
            "squash" => Some(MergeStyle::Squash),
            "rebase" => Some(MergeStyle::Rebase),
            "rebase-merge" => Some(MergeStyle::RebaseMerge),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            MergeStyle::Merge => "merge",
            MergeStyle::Squash => "squash",
            MergeStyle::Rebase => "rebase",
            MergeStyle::RebaseMerge => "rebase-merge",
        }
    }
}

/// The result of a server-side merge.
pub(crate) enum Merged {
    /// The base branch now points at this commit.
    Done { sha: String },
    /// The branches conflict; nothing changed.
    Conflict { stdout: String, stderr: String },
}

/// Merges `head_sha` into `base_branch` (currently at `base_sha`) in the bare repository, with
/// `git merge-tree --write-tree` and `git commit-tree`, and moves the branch with a checked
/// `update-ref`.
pub(crate) async fn merge(
    repo: &Path,
    style: MergeStyle,
    base_branch: &str,
    base_sha: &str,
    head_sha: &str,
    message: &str,
) -> Result<Merged, GitError> {
    let new_tip = match style {
        MergeStyle::Merge | MergeStyle::Squash => {
            let tree = match merge_tree(repo, None, base_sha, head_sha).await? {
                Ok(tree) => tree,
                Err(conflict) => return Ok(conflict),
            };
            let mut args = vec!["commit-tree", tree.as_str(), "-p", base_sha];
            if style == MergeStyle::Merge {
                args.extend(["-p", head_sha]);
            }
            args.extend(["-m", message]);
            ok(repo, &args).await?
        }
        MergeStyle::Rebase | MergeStyle::RebaseMerge => {
            let range = format!("{base_sha}..{head_sha}");
            let commits = rev_list(repo, &["--reverse", "--no-merges", &range]).await?;
            let mut onto = base_sha.to_owned();
            for commit in commits {
                let parent = format!("{commit}^");
                let tree = match merge_tree(repo, Some(&parent), &onto, &commit).await? {
                    Ok(tree) => tree,
                    Err(conflict) => return Ok(conflict),
                };
                let info = commit_info(repo, &commit).await?;
                let envs = [
                    ("GIT_AUTHOR_NAME", info.author_name.as_str()),
                    ("GIT_AUTHOR_EMAIL", info.author_email.as_str()),
                ];
                onto = ok_with(
                    repo,
                    &[
                        "commit-tree",
                        &tree,
                        "-p",
                        &onto,
                        "-m",
                        info.message.trim_end(),
                    ],
                    &envs,
                    None,
                )
                .await?;
            }
            if style == MergeStyle::RebaseMerge {
                let tree = ok(repo, &["rev-parse", &format!("{onto}^{{tree}}")]).await?;
                onto = ok(
                    repo,
                    &[
                        "commit-tree",
                        &tree,
                        "-p",
                        base_sha,
                        "-p",
                        &onto,
                        "-m",
                        message,
                    ],
                )
                .await?;
            }
            onto
        }
    };
    let refname = format!("refs/heads/{base_branch}");
    ok(repo, &["update-ref", &refname, &new_tip, base_sha]).await?;
    Ok(Merged::Done { sha: new_tip })
}

/// Whether merging `head_sha` into `base_sha` conflicts (what Gitea's checker tests).
pub(crate) async fn conflicts(
    repo: &Path,
    base_sha: &str,
    head_sha: &str,
) -> Result<bool, GitError> {
    Ok(merge_tree(repo, None, base_sha, head_sha).await?.is_err())
}

/// The merged tree of `one` and `two`, or the conflict.
async fn merge_tree(
    repo: &Path,
    merge_base: Option<&str>,
    one: &str,
    two: &str,
) -> Result<Result<String, Merged>, GitError> {
    let base_arg;
    let mut args = vec!["merge-tree", "--write-tree"];
    if let Some(merge_base) = merge_base {
        base_arg = format!("--merge-base={merge_base}");
        args.push(&base_arg);
    }
    args.extend([one, two]);
    let out = run(repo, &args, &[], None).await?;
    match out.code {
        0 => Ok(Ok(out.stdout.lines().next().unwrap_or_default().to_owned())),
        1 => Ok(Err(Merged::Conflict {
            stdout: out.stdout,
            stderr: out.stderr,
        })),
        code => Err(GitError(format!(
            "git merge-tree exited {code}: {}",
            out.stderr.trim()
        ))),
    }
}
