//! The JSON shapes of Gitea 1.26 that `GiteaSim` answers and sends, after `contracts/gitea/`.

use serde_json::{json, Value};

use crate::gitea::git::CommitInfo;
use crate::gitea::state::{CommentRec, Pull, RepoState, ReviewRec, StatusRec};

/// A Gitea user as `convert.ToUser` renders it.
pub(crate) fn user(base: &str, id: u64, login: &str) -> Value {
    json!({
        "id": id,
        "login": login,
        "login_name": "",
        "source_id": 0,
        "full_name": login,
        "email": format!("{id}+{login}@noreply.gitea.invalid"),
        "avatar_url": format!("{base}/avatars/{id}"),
        "html_url": format!("{base}/{login}"),
        "language": "",
        "is_admin": false,
        "last_login": "0001-01-01T00:00:00Z",
        "created": "2026-01-01T00:00:00Z",
        "restricted": false,
        "active": false,
        "prohibit_login": false,
        "location": "",
        "website": "",
        "description": "",
        "visibility": "public",
        "followers_count": 0,
        "following_count": 0,
        "starred_repos_count": 0,
        "username": login,
    })
}

/// A repository (`structs.Repository`).
pub(crate) fn repo(base: &str, repo: &RepoState) -> Value {
    let full = repo.full_name();
    let open_prs = repo.pulls.iter().filter(|pull| pull.open).count();
    let head = json!({
        "id": repo.id,
        "owner": user(base, repo.owner_id, &repo.owner),
        "name": repo.name,
        "full_name": full,
        "description": "",
        "empty": false,
        "private": true,
        "fork": false,
        "template": false,
        "mirror": false,
        "size": 0,
        "language": "",
        "languages_url": format!("{base}/api/v1/repos/{full}/languages"),
        "html_url": format!("{base}/{full}"),
        "url": format!("{base}/api/v1/repos/{full}"),
        "link": "",
        "ssh_url": format!("git@127.0.0.1:{full}.git"),
        "clone_url": format!("{base}/{full}.git"),
        "original_url": "",
        "website": "",
        "stars_count": 0,
        "forks_count": 0,
        "watchers_count": 0,
        "branch_count": 0,
        "open_issues_count": 0,
        "open_pr_counter": open_prs,
    });
    let rest = json!({
        "release_counter": 0,
        "default_branch": repo.default_branch,
        "archived": false,
        "created_at": repo.created_at,
        "updated_at": repo.created_at,
        "archived_at": "1970-01-01T00:00:00Z",
        "permissions": { "admin": true, "push": true, "pull": true },
        "has_code": true,
        "has_issues": true,
        "internal_tracker": {
            "enable_time_tracker": false,
            "allow_only_contributors_to_track_time": true,
            "enable_issue_dependencies": false,
        },
        "has_wiki": false,
        "has_pull_requests": true,
        "has_projects": false,
        "projects_mode": "all",
        "has_releases": false,
        "has_packages": false,
        "has_actions": false,
        "ignore_whitespace_conflicts": false,
        "allow_merge_commits": true,
        "allow_rebase": true,
        "allow_rebase_explicit": true,
        "allow_squash_merge": true,
        "allow_fast_forward_only_merge": true,
        "allow_rebase_update": true,
        "allow_manual_merge": false,
        "autodetect_manual_merge": false,
        "default_delete_branch_after_merge": false,
        "default_merge_style": "merge",
        "default_allow_maintainer_edit": false,
        "avatar_url": "",
        "internal": false,
        "mirror_interval": "",
        "object_format_name": "sha1",
        "mirror_updated": "0001-01-01T00:00:00Z",
        "topics": [],
        "licenses": [],
    });
    merge_objects(head, rest)
}

/// Concatenates two JSON objects (`json!` cannot expand objects this large in one go).
fn merge_objects(mut head: Value, rest: Value) -> Value {
    if let (Some(head_map), Value::Object(rest_map)) = (head.as_object_mut(), rest) {
        head_map.extend(rest_map);
    }
    head
}

/// A pull request (`convert.ToAPIPullRequest`).
pub(crate) fn pull(base: &str, repo_state: &RepoState, pull: &Pull) -> Value {
    let full = repo_state.full_name();
    let repo_json = repo(base, repo_state);
    let branch = |name: &str, sha: &str| {
        json!({
            "label": name,
            "ref": name,
            "sha": sha,
            "repo_id": repo_state.id,
            "repo": repo_json.clone(),
        })
    };
    let head = json!({
        "id": pull.id,
        "url": format!("{base}/{full}/pulls/{}", pull.number),
        "number": pull.number,
        "user": user(base, pull.poster.0, &pull.poster.1),
        "title": pull.title,
        "body": pull.body,
        "labels": [],
        "milestone": null,
        "assignee": null,
        "assignees": [],
        "requested_reviewers": [],
        "requested_reviewers_teams": [],
        "state": if pull.open { "open" } else { "closed" },
        "draft": false,
        "is_locked": false,
        "comments": repo_state.comments.iter().filter(|comment| comment.number == pull.number).count(),
        "additions": 0,
        "deletions": 0,
        "changed_files": 0,
        "html_url": format!("{base}/{full}/pulls/{}", pull.number),
        "diff_url": format!("{base}/{full}/pulls/{}.diff", pull.number),
        "patch_url": format!("{base}/{full}/pulls/{}.patch", pull.number),
    });
    let rest = json!({
        // Gitea's `Mergeable`: false while its checker runs and when the PR conflicts.
        "mergeable": !pull.checking && !pull.conflicted,
        "merged": pull.merged,
        "merged_at": pull.merged_at,
        "merge_commit_sha": pull.merge_commit_sha,
        "merged_by": pull.merged_by.as_ref().map(|(id, login)| user(base, *id, login)),
        "allow_maintainer_edit": false,
        "base": branch(&pull.base, &pull.base_sha),
        "head": branch(&pull.head, &pull.head_sha),
        "merge_base": pull.merge_base,
        "due_date": null,
        "created_at": pull.created_at,
        "updated_at": pull.updated_at,
        "closed_at": pull.closed_at,
        "pin_order": 0,
        "content_version": 0,
    });
    merge_objects(head, rest)
}

/// A commit as webhook payloads and branches carry it (`structs.PayloadCommit`).
pub(crate) fn payload_commit(base: &str, full: &str, info: &CommitInfo) -> Value {
    json!({
        "id": info.sha,
        "message": info.message,
        "url": format!("{base}/{full}/commit/{}", info.sha),
        "author": { "name": info.author_name, "email": info.author_email, "username": "" },
        "committer": { "name": info.committer_name, "email": info.committer_email, "username": "" },
        "verification": null,
        "timestamp": info.timestamp,
        "added": info.added,
        "removed": info.removed,
        "modified": info.modified,
    })
}

/// A branch (`structs.Branch`).
pub(crate) fn branch(base: &str, full: &str, name: &str, info: &CommitInfo) -> Value {
    json!({
        "name": name,
        "commit": payload_commit(base, full, info),
        "protected": false,
        "required_approvals": 0,
        "enable_status_check": false,
        "status_check_contexts": [],
        "user_can_push": true,
        "user_can_merge": true,
        "effective_branch_protection_name": "",
    })
}

/// A commit status as the REST API renders it: the state is in `status`.
pub(crate) fn status(base: &str, full: &str, status: &StatusRec) -> Value {
    json!({
        "id": status.index,
        "status": status.state,
        "target_url": status.target_url,
        "description": status.description,
        "url": format!("{base}/api/v1/repos/{full}/statuses/{}", status.sha),
        "context": status.context,
        "creator": user(base, status.creator.0, &status.creator.1),
        "created_at": status.created_at,
        "updated_at": status.created_at,
    })
}

/// A review (`structs.PullReview`).
pub(crate) fn review(base: &str, full: &str, review: &ReviewRec) -> Value {
    json!({
        "id": review.id,
        "user": user(base, review.user.0, &review.user.1),
        "team": null,
        "state": review.state,
        "body": review.body,
        "commit_id": review.commit_id,
        "stale": false,
        "official": false,
        "dismissed": false,
        "comments_count": 0,
        "submitted_at": review.submitted_at,
        "updated_at": review.submitted_at,
        "html_url": format!("{base}/{full}/pulls/{}#issuecomment-{}", review.number, review.id),
        "pull_request_url": format!("{base}/{full}/pulls/{}", review.number),
    })
}

/// An issue comment (`structs.Comment`).
pub(crate) fn comment(base: &str, full: &str, comment: &CommentRec) -> Value {
    json!({
        "id": comment.id,
        "html_url": format!("{base}/{full}/pulls/{}#issuecomment-{}", comment.number, comment.id),
        "pull_request_url": format!("{base}/{full}/pulls/{}", comment.number),
        "issue_url": "",
        "user": user(base, comment.user.0, &comment.user.1),
        "original_author": "",
        "original_author_id": 0,
        "body": comment.body,
        "assets": [],
        "created_at": comment.created_at,
        "updated_at": comment.created_at,
    })
}
