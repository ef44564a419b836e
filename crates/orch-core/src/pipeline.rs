//! The pipeline as data: `STAGE_TRANSITIONS`, `QG_CHECKS`, and read-only gate evaluation.

use crate::domain::{Agent, CiState, Stage, Task};
use crate::ports::{Forge, ForgeError, PrState, PullRequest};

/// How a stage is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitGate {
    /// A person gives a verdict in Plane.
    Human,
    /// All of these checks are true.
    Automatic(&'static [QgCheck]),
    /// Nothing leaves a terminal stage.
    Terminal,
}

/// One row of SPEC §1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageTransition {
    pub stage: Stage,
    /// The agent orch runs on entry.
    pub agent: Option<Agent>,
    /// The artifact check after the agent succeeds.
    pub artifact: Option<QgCheck>,
    pub exit_gate: ExitGate,
    /// Where a passed gate (Approved, or a green automatic gate) leads.
    pub on_pass: Option<Stage>,
    /// Where a rejection or failure leads (the same stage means: run its agent again).
    pub on_reject: Option<Stage>,
}

/// The pipeline (SPEC §1.1).
pub const STAGE_TRANSITIONS: &[StageTransition] = &[
    StageTransition {
        stage: Stage::Analysis,
        agent: Some(Agent::Analyst),
        artifact: Some(QgCheck::AnalysisPresent),
        exit_gate: ExitGate::Human,
        on_pass: Some(Stage::Development),
        on_reject: Some(Stage::Analysis),
    },
    StageTransition {
        stage: Stage::Development,
        agent: Some(Agent::Developer),
        artifact: Some(QgCheck::BranchAhead),
        exit_gate: ExitGate::Automatic(DEVELOPMENT_GATE),
        on_pass: Some(Stage::Review),
        on_reject: Some(Stage::Development),
    },
    StageTransition {
        stage: Stage::Review,
        agent: Some(Agent::Reviewer),
        artifact: Some(QgCheck::ReviewPresent),
        exit_gate: ExitGate::Human,
        on_pass: Some(Stage::Done),
        on_reject: Some(Stage::Development),
    },
    StageTransition {
        stage: Stage::Done,
        agent: None,
        artifact: None,
        exit_gate: ExitGate::Terminal,
        on_pass: None,
        on_reject: None,
    },
    StageTransition {
        stage: Stage::Cancelled,
        agent: None,
        artifact: None,
        exit_gate: ExitGate::Terminal,
        on_pass: None,
        on_reject: None,
    },
];

/// The canonical gate of `development`: `pr_open ∧ ci_green`.
pub const DEVELOPMENT_GATE: &[QgCheck] = &[QgCheck::PrOpen, QgCheck::CiGreen];

/// The row of `stage`.
pub fn transition_of(stage: Stage) -> &'static StageTransition {
    STAGE_TRANSITIONS
        .iter()
        .find(|row| row.stage == stage)
        .expect("STAGE_TRANSITIONS has a row for every stage")
}

/// A quality-gate check (SPEC §1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QgCheck {
    AnalysisPresent,
    BranchAhead,
    PrOpen,
    CiGreen,
    ReviewPresent,
}

impl QgCheck {
    pub fn as_str(self) -> &'static str {
        match self {
            QgCheck::AnalysisPresent => "analysis_present",
            QgCheck::BranchAhead => "branch_ahead",
            QgCheck::PrOpen => "pr_open",
            QgCheck::CiGreen => "ci_green",
            QgCheck::ReviewPresent => "review_present",
        }
    }
}

/// Which port a check's facts come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactSource {
    Workspace,
    Forge,
}

/// One row of SPEC §1.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QgCheckDef {
    pub check: QgCheck,
    pub true_when: &'static str,
    pub facts_from: FactSource,
}

/// The checks (SPEC §1.2).
pub const QG_CHECKS: &[QgCheckDef] = &[
    QgCheckDef {
        check: QgCheck::AnalysisPresent,
        true_when: "analysis.md written by the analyst is non-empty",
        facts_from: FactSource::Workspace,
    },
    QgCheckDef {
        check: QgCheck::BranchAhead,
        true_when: "the branch has at least one commit ahead of base",
        facts_from: FactSource::Workspace,
    },
    QgCheckDef {
        check: QgCheck::PrOpen,
        true_when: "an open PR exists for the task's branch",
        facts_from: FactSource::Forge,
    },
    QgCheckDef {
        check: QgCheck::CiGreen,
        true_when: "the combined status of the head sha is success (or empty, without require_ci)",
        facts_from: FactSource::Forge,
    },
    QgCheckDef {
        check: QgCheck::ReviewPresent,
        true_when: "review.md written by the reviewer is non-empty",
        facts_from: FactSource::Workspace,
    },
];

/// One failed check, with what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub check: QgCheck,
    pub detail: String,
}

/// The value of a gate evaluation. A red gate is a value, not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateReport {
    pub green: bool,
    pub findings: Vec<Finding>,
    /// The CI state seen at the head sha, when `ci_green` was evaluated.
    pub ci: Option<CiState>,
    /// Failure descriptions from CI, for a fix round's feedback.
    pub ci_feedback: Option<String>,
    /// The task's pull request as the forge sees it, when one is recorded.
    pub pull: Option<PullRequest>,
}

/// Evaluates the canonical gate of `development` for `task`, read-only.
/// `Err` only means the facts could not be read.
pub async fn evaluate_development_gate(
    task: &Task,
    forge: &dyn Forge,
    require_ci: bool,
) -> Result<GateReport, ForgeError> {
    let mut findings = Vec::new();
    let (Some(pr), Some(head_sha)) = (task.pr, task.head_sha.as_ref()) else {
        findings.push(Finding {
            check: QgCheck::PrOpen,
            detail: "no pull request recorded yet".to_owned(),
        });
        return Ok(GateReport {
            green: false,
            findings,
            ci: None,
            ci_feedback: None,
            pull: None,
        });
    };
    let pull = forge.pull_request(&task.repo, pr).await?;
    if pull.state != PrState::Open {
        findings.push(Finding {
            check: QgCheck::PrOpen,
            detail: format!("pull request {pr} is closed"),
        });
    }
    let status = forge.combined_status(&task.repo, head_sha).await?;
    let ci = status.state;
    let mut ci_feedback = None;
    match ci {
        CiState::Success => {}
        CiState::Pending if status.checks.is_empty() && !require_ci => {}
        CiState::Pending => findings.push(Finding {
            check: QgCheck::CiGreen,
            detail: format!("CI is pending at {}", head_sha.short()),
        }),
        CiState::Failure => {
            let lines: Vec<String> = status
                .checks
                .iter()
                .filter(|check| !matches!(check.state.as_str(), "success" | "skipped" | "pending"))
                .map(|check| {
                    format!(
                        "- {} ({}): {} {}",
                        check.context, check.state, check.description, check.target_url
                    )
                })
                .collect();
            ci_feedback = Some(format!("CI failed at {}:\n{}", head_sha, lines.join("\n")));
            findings.push(Finding {
                check: QgCheck::CiGreen,
                detail: format!("CI failed at {}", head_sha.short()),
            });
        }
    }
    let ci = if ci == CiState::Pending && status.checks.is_empty() && !require_ci {
        CiState::Success
    } else {
        ci
    };
    Ok(GateReport {
        green: findings.is_empty(),
        findings,
        ci: Some(ci),
        ci_feedback,
        pull: Some(pull),
    })
}
