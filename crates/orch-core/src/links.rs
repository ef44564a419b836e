//! `WebLinks`: the web addresses people open, a work item in Plane and a pull request in Gitea.

use crate::ids::{IssueId, PrNumber, ProjectId, RepoSlug};

/// Where people open work items and pull requests in their browsers: the board's links and
/// those under a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebLinks {
    /// Plane's root URL, e.g. `https://plane.example.com` (a trailing `/` is ignored).
    pub plane_base: String,
    /// The Plane workspace's slug.
    pub plane_workspace: String,
    /// Gitea's root URL, e.g. `https://gitea.example.com` (a trailing `/` is ignored).
    pub gitea_base: String,
}

impl WebLinks {
    /// `{plane}/{workspace}/projects/{project}/issues/{issue}/`, the work item's page (Plane's
    /// web app routes end with `/`).
    pub fn work_item(&self, project: &ProjectId, issue: &IssueId) -> String {
        format!(
            "{}/{}/projects/{}/issues/{}/",
            self.plane_base.trim_end_matches('/'),
            self.plane_workspace,
            project.as_str(),
            issue.as_str()
        )
    }

    /// `{gitea}/{owner}/{name}/pulls/{number}`, the pull request's page.
    pub fn pull_request(&self, repo: &RepoSlug, number: PrNumber) -> String {
        format!(
            "{}/{repo}/pulls/{}",
            self.gitea_base.trim_end_matches('/'),
            number.get()
        )
    }
}

#[cfg(test)]
mod tests;
