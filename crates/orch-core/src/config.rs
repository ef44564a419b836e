//! The part of orch's configuration the core decides with.

use std::time::Duration;

use crate::domain::Stage;
use crate::ids::{BranchName, ProjectId, RepoSlug};
use crate::ports::StateNames;

/// One `[[projects]]` entry: a Plane project bound to a Gitea repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectConfig {
    pub key: String,
    pub plane_project_id: ProjectId,
    pub repo: RepoSlug,
    pub work_item_prefix: String,
    pub base_branch: BranchName,
    pub states: StateNames,
}

/// Per-stage grace periods of the reconciler (`reconcile.grace_s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grace {
    pub analysis: Duration,
    pub development: Duration,
    pub review: Duration,
}

impl Grace {
    pub fn uniform(grace: Duration) -> Grace {
        Grace {
            analysis: grace,
            development: grace,
            review: grace,
        }
    }

    /// The grace of `stage`; terminal stages have none.
    pub fn of(&self, stage: Stage) -> Duration {
        match stage {
            Stage::Analysis => self.analysis,
            Stage::Development => self.development,
            Stage::Review => self.review,
            Stage::Done | Stage::Cancelled => Duration::ZERO,
        }
    }

    pub fn largest(&self) -> Duration {
        self.analysis.max(self.development).max(self.review)
    }
}

impl Default for Grace {
    fn default() -> Grace {
        Grace::uniform(Duration::from_secs(300))
    }
}

/// What the `Orchestrator` and `Reconciler` need to decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineConfig {
    pub projects: Vec<ProjectConfig>,
    /// Agent attempts before a task is blocked (`worker.max_attempts`).
    pub max_attempts: u32,
    /// Fix rounds and review rounds before a task is blocked (`worker.max_fix_rounds`).
    pub max_fix_rounds: u32,
    /// `gitea.require_ci`: with `false`, a commit with no statuses counts as green.
    pub require_ci: bool,
    pub grace: Grace,
    /// F-2 does a full pass (ignoring the watermark) at least this often.
    pub full_pass_every: Duration,
}

impl PipelineConfig {
    pub fn project(&self, id: &ProjectId) -> Option<&ProjectConfig> {
        self.projects
            .iter()
            .find(|project| &project.plane_project_id == id)
    }

    pub fn project_of_repo(&self, repo: &RepoSlug) -> Option<&ProjectConfig> {
        self.projects.iter().find(|project| &project.repo == repo)
    }
}

impl Default for PipelineConfig {
    fn default() -> PipelineConfig {
        PipelineConfig {
            projects: Vec::new(),
            max_attempts: 3,
            max_fix_rounds: 3,
            require_ci: true,
            grace: Grace::default(),
            full_pass_every: Duration::from_secs(3600),
        }
    }
}
