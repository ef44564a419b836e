//! The pipeline as data: `STAGE_TRANSITIONS`, `QG_CHECKS`, and read-only gate evaluation.
//!
//! The `Orchestrator` reads these rows to decide: which agent a stage runs, which artifact
//! its agent must leave, what passing and rejecting its gate do, and which checks make up
//! an automatic gate. Changing a row changes behaviour.

use crate::domain::{Agent, CiState, JobOutput, Stage, Task};
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

/// What passing a stage's exit gate does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnPass {
    /// Enter this stage (and run its agent).
    Enter(Stage),
    /// Merge the task's pull request, pinned to its head; once merged, enter this stage.
    MergeThen(Stage),
    /// Nothing: a terminal stage.
    Nothing,
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
    /// What a passed gate (Approved, or a green automatic gate) does.
    pub on_pass: OnPass,
    /// Where a rejection or failure leads (the same stage means: run its agent again). A
    /// blocked task unblocked with Rejected always runs its own stage's agent again.
    pub on_reject: Option<Stage>,
}

/// The pipeline (SPEC §1.1).
pub const STAGE_TRANSITIONS: &[StageTransition] = &[
    StageTransition {
        stage: Stage::Analysis,
        agent: Some(Agent::Analyst),
        artifact: Some(QgCheck::AnalysisPresent),
        exit_gate: ExitGate::Human,
        on_pass: OnPass::Enter(Stage::Development),
        on_reject: Some(Stage::Analysis),
    },
    StageTransition {
        stage: Stage::Development,
        agent: Some(Agent::Developer),
        artifact: Some(QgCheck::BranchAhead),
        exit_gate: ExitGate::Automatic(DEVELOPMENT_GATE),
        on_pass: OnPass::Enter(Stage::Review),
        on_reject: Some(Stage::Development),
    },
    StageTransition {
        stage: Stage::Review,
        agent: Some(Agent::Reviewer),
        artifact: Some(QgCheck::ReviewPresent),
        exit_gate: ExitGate::Human,
        on_pass: OnPass::MergeThen(Stage::Done),
        on_reject: Some(Stage::Development),
    },
    StageTransition {
        stage: Stage::Done,
        agent: None,
        artifact: None,
        exit_gate: ExitGate::Terminal,
        on_pass: OnPass::Nothing,
        on_reject: None,
    },
    StageTransition {
        stage: Stage::Cancelled,
        agent: None,
        artifact: None,
        exit_gate: ExitGate::Terminal,
        on_pass: OnPass::Nothing,
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

impl QgCheck {
    /// The definition of this check in `QG_CHECKS`.
    pub fn definition(self) -> &'static QgCheckDef {
        QG_CHECKS
            .iter()
            .find(|def| def.check == self)
            .expect("QG_CHECKS has a row for every check")
    }
}

/// Whether an agent's output passes the artifact check `check` (a `Workspace` fact the
/// executor read into the job's output); `Some(finding)` when it does not.
pub fn check_artifact(check: QgCheck, output: &JobOutput) -> Option<Finding> {
    let present = match check {
        QgCheck::AnalysisPresent => non_empty(output.analysis.as_deref()),
        QgCheck::ReviewPresent => non_empty(output.review.as_deref()),
        QgCheck::BranchAhead => output.commits_ahead.is_some_and(|ahead| ahead > 0),
        // Forge checks are facts of a gate, not of an agent's output.
        QgCheck::PrOpen | QgCheck::CiGreen => true,
    };
    (!present).then(|| Finding {
        check,
        detail: format!(
            "{}: not true ({})",
            check.as_str(),
            check.definition().true_when
        ),
    })
}

fn non_empty(text: Option<&str>) -> bool {
    text.is_some_and(|text| !text.trim().is_empty())
}

/// Evaluates the automatic exit gate of `task`'s stage, read-only: every check of the row's
/// `ExitGate::Automatic` list, with facts from the forge. A stage without an automatic gate
/// is never green. `Err` only means the facts could not be read.
pub async fn evaluate_exit_gate(
    task: &Task,
    forge: &dyn Forge,
    require_ci: bool,
) -> Result<GateReport, ForgeError> {
    let checks = match transition_of(task.stage).exit_gate {
        ExitGate::Automatic(checks) => checks,
        ExitGate::Human | ExitGate::Terminal => &[],
    };
    let mut report = GateReport {
        green: false,
        findings: Vec::new(),
        ci: None,
        ci_feedback: None,
        pull: None,
    };
    if checks.is_empty() {
        return Ok(report);
    }
    let (Some(pr), Some(head_sha)) = (task.pr, task.head_sha.as_ref()) else {
        report.findings.push(Finding {
            check: QgCheck::PrOpen,
            detail: "no pull request recorded yet".to_owned(),
        });
        return Ok(report);
    };
    let pull = forge.pull_request(&task.repo, pr).await?;
    for check in checks {
        match check {
            QgCheck::PrOpen => {
                if pull.state != PrState::Open {
                    report.findings.push(Finding {
                        check: QgCheck::PrOpen,
                        detail: format!("pull request {pr} is closed"),
                    });
                }
            }
            QgCheck::CiGreen => {
                let status = forge.combined_status(&task.repo, head_sha).await?;
                let no_statuses = status.checks.is_empty();
                match status.state {
                    CiState::Success => report.ci = Some(CiState::Success),
                    CiState::Pending if no_statuses && !require_ci => {
                        report.ci = Some(CiState::Success);
                    }
                    CiState::Pending => {
                        report.ci = Some(CiState::Pending);
                        report.findings.push(Finding {
                            check: QgCheck::CiGreen,
                            detail: format!("CI is pending at {}", head_sha.short()),
                        });
                    }
                    CiState::Failure => {
                        report.ci = Some(CiState::Failure);
                        let lines: Vec<String> = status
                            .checks
                            .iter()
                            .filter(|check| {
                                !matches!(check.state.as_str(), "success" | "skipped" | "pending")
                            })
                            .map(|check| {
                                format!(
                                    "- {} ({}): {} {}",
                                    check.context, check.state, check.description, check.target_url
                                )
                            })
                            .collect();
                        report.ci_feedback =
                            Some(format!("CI failed at {}:\n{}", head_sha, lines.join("\n")));
                        report.findings.push(Finding {
                            check: QgCheck::CiGreen,
                            detail: format!("CI failed at {}", head_sha.short()),
                        });
                    }
                }
            }
            // Workspace checks are artifact checks of the stage's agent (`check_artifact`).
            QgCheck::AnalysisPresent | QgCheck::BranchAhead | QgCheck::ReviewPresent => {}
        }
    }
    report.pull = Some(pull);
    report.green = report.findings.is_empty();
    Ok(report)
}

/// The pull request of `task` as the forge sees it, as a report of facts only (for a stage
/// whose exit gate is not automatic). `None` when no pull request is recorded.
pub async fn read_pull_request(
    task: &Task,
    forge: &dyn Forge,
) -> Result<Option<GateReport>, ForgeError> {
    let Some(pr) = task.pr else {
        return Ok(None);
    };
    let pull = forge.pull_request(&task.repo, pr).await?;
    Ok(Some(GateReport {
        green: false,
        findings: Vec::new(),
        ci: None,
        ci_feedback: None,
        pull: Some(pull),
    }))
}
