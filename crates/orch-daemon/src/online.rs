//! `orch check --online`: every configured outside system reached, every problem reported.
//!
//! Each problem line names the setting to fix.
//! Plane: `users/me` (the token), then each project's states by name (a missing name is
//! reported with the project key and the state). Gitea: each project's repository. Telegram
//! (when configured): `getMe` (the token), then `getChat` (the bot sees `telegram.chat_id`).
//! The three systems are checked concurrently.
//!
//! Exit codes (`orch check --online`): a wrong setting (a refused token, a missing project,
//! state or repository) is bad config, exit 2; a system that does not answer usefully (down,
//! timing out, 5xx) is a runtime failure, exit 1. When both happen the exit code is 2: the
//! wrong setting has to be fixed whatever the outage does, and the outage may be hiding more.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use orch_core::backoff::{Backoff, RetryPolicy};
use orch_core::config::ProjectConfig;
use orch_core::ids::RepoSlug;
use orch_core::ports::{ErrorClass, StateNames, Tracker, TrackerError};
use ureq::tls::TlsConfig;

use crate::config::Config;

/// The deadline of one HTTP call of the check.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How the check calls the outside systems.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnlineOptions {
    /// The deadline of one HTTP call.
    pub request_timeout: Duration,
    /// Retries after a failed call (429, 5xx, timeouts); 0 = try once.
    pub retries: u32,
    /// The backoff before the first retry (full jitter, doubling).
    pub retry_base: Duration,
}

impl Default for OnlineOptions {
    fn default() -> OnlineOptions {
        OnlineOptions {
            request_timeout: REQUEST_TIMEOUT,
            retries: 1,
            retry_base: Duration::from_secs(1),
        }
    }
}

/// The adapters' retry policy for the check: `retries` after the first attempt, backing off
/// from `retry_base` up to eight times it.
fn retry_policy(options: &OnlineOptions) -> RetryPolicy {
    RetryPolicy {
        max_attempts: options.retries.saturating_add(1),
        backoff: Backoff {
            base: options.retry_base,
            cap: options.retry_base.saturating_mul(8),
        },
    }
}

/// What kind of problem a line reports, which decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProblemKind {
    /// The system does not answer usefully (down, timing out, 5xx): exit 1.
    Unreachable,
    /// A setting is wrong (refused token, missing project, state or repository): exit 2.
    Config,
}

/// One problem, with the setting to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    /// The config key path, e.g. `projects[0].states.approved` or `gitea.token`.
    pub setting: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.setting, self.message)
    }
}

/// Everything the check found: one OK line per system that passed, and every problem.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OnlineReport {
    pub ok: Vec<String>,
    pub problems: Vec<Problem>,
}

impl OnlineReport {
    /// `None` when everything passed; `Config` when any setting is wrong; else `Unreachable`.
    pub fn worst(&self) -> Option<ProblemKind> {
        self.problems.iter().map(|problem| problem.kind).max()
    }

    fn problem(&mut self, kind: ProblemKind, setting: impl Into<String>, message: String) {
        self.problems.push(Problem {
            kind,
            setting: setting.into(),
            message,
        });
    }

    fn merge(&mut self, other: OnlineReport) {
        self.ok.extend(other.ok);
        self.problems.extend(other.problems);
    }

    /// Replaces every configured secret in every line (defence in depth: the adapters already
    /// keep tokens out of their errors).
    fn redact(mut self, secrets: &[String]) -> OnlineReport {
        let scrub = |text: &mut String| {
            for secret in secrets {
                if !secret.is_empty() && text.contains(secret.as_str()) {
                    *text = text.replace(secret.as_str(), "<redacted>");
                }
            }
        };
        self.ok.iter_mut().for_each(scrub);
        for problem in &mut self.problems {
            scrub(&mut problem.message);
        }
        self
    }
}

/// Reaches every configured system and reports what it found.
pub async fn check(config: &Config, options: OnlineOptions) -> OnlineReport {
    let (tls, _) = crate::tls::client_tls(&config.tls);
    let (plane, gitea, telegram) = tokio::join!(
        check_plane(config, options, &tls),
        check_gitea(config, options, &tls),
        check_telegram(config, options, &tls),
    );
    let mut report = OnlineReport::default();
    report.merge(plane);
    report.merge(gitea);
    report.merge(telegram);
    report.redact(&secrets(config))
}

fn secrets(config: &Config) -> Vec<String> {
    let mut secrets = vec![
        config.plane.api_token.expose().to_owned(),
        config.gitea.token.expose().to_owned(),
    ];
    secrets.extend(
        config
            .plane
            .webhook_secrets
            .iter()
            .chain(&config.gitea.webhook_secrets)
            .chain(&config.server.admin_token)
            .map(|secret| secret.expose().to_owned()),
    );
    if let Some(telegram) = &config.telegram {
        secrets.push(telegram.bot_token.expose().to_owned());
    }
    secrets
}

/// Plane: `users/me`, then the states of each project.
async fn check_plane(config: &Config, options: OnlineOptions, tls: &TlsConfig) -> OnlineReport {
    let mut report = OnlineReport::default();
    let mut settings = orch_plane::PlaneSettings::new(
        config.plane.base_url.as_str(),
        config.plane.workspace_slug.clone(),
        config.plane.api_token.expose(),
    );
    settings.rate_limit_per_min = config.plane.rate_limit_per_min;
    settings.request_timeout = options.request_timeout;
    settings.tls = tls.clone();
    settings.retry = retry_policy(&options);
    let tracker = orch_plane::PlaneTracker::new(&settings);
    let user = match tracker.me().await {
        Ok(user) => user,
        Err(err) => {
            let setting = match err {
                TrackerError::Unauthorized(_) => "plane.api_token",
                _ => "plane.base_url",
            };
            report.problem(tracker_kind(&err), setting, format!("users/me: {err}"));
            return report;
        }
    };
    for (index, project) in config.projects.iter().enumerate() {
        check_project_states(&tracker, config, index, project, &mut report).await;
    }
    if report.problems.is_empty() {
        report.ok.push(format!(
            "plane ok: {} as user {user}; every state of {} project(s) found",
            config.plane.base_url.as_str(),
            config.projects.len()
        ));
    }
    report
}

async fn check_project_states(
    tracker: &dyn Tracker,
    config: &Config,
    index: usize,
    project: &ProjectConfig,
    report: &mut OnlineReport,
) {
    let id = &project.plane_project_id;
    let key = &project.key;
    let project_setting = format!("projects[{index}].plane_project_id");
    let err = match tracker.project_states(id, &project.states).await {
        Ok(_) => return,
        Err(err) => err,
    };
    match err {
        // A state name is missing, or the project itself is: a look at its work items tells.
        TrackerError::NotFound(_) => {}
        // The token itself passed users/me: the project id is wrong, or its user is no member.
        TrackerError::Unauthorized(_) => {
            report.problem(
                ProblemKind::Config,
                project_setting,
                format!(
                    "project {key}: plane refuses access to project {id} in workspace {:?}: \
                     check the id, and that the api token's user is a member of the project",
                    config.plane.workspace_slug
                ),
            );
            return;
        }
        TrackerError::Invalid(_) => {
            report.problem(
                ProblemKind::Config,
                project_setting,
                format!("project {key}: plane refuses project {id}: {err}"),
            );
            return;
        }
        err => {
            report.problem(
                tracker_kind(&err),
                "plane.base_url",
                format!("project {key}: states: {err}"),
            );
            return;
        }
    }
    if let Err(err) = tracker.list_work_items(id, None).await {
        let (kind, setting) = match tracker_kind(&err) {
            ProblemKind::Config => (ProblemKind::Config, project_setting),
            ProblemKind::Unreachable => (ProblemKind::Unreachable, "plane.base_url".to_owned()),
        };
        report.problem(
            kind,
            setting,
            format!(
                "project {key}: plane has no project {id} in workspace {:?} that the api token's user can see: {err}",
                config.plane.workspace_slug
            ),
        );
        return;
    }
    for (role, name) in state_roles(&project.states) {
        match tracker.project_states(id, &only(name)).await {
            Ok(_) => {}
            Err(TrackerError::NotFound(_)) => report.problem(
                ProblemKind::Config,
                format!("projects[{index}].states.{role}"),
                format!("plane project {key} ({id}) has no state named {name:?}"),
            ),
            Err(err) => {
                report.problem(
                    tracker_kind(&err),
                    "plane.base_url",
                    format!("project {key}: states: {err}"),
                );
                return;
            }
        }
    }
}

/// The configured state names with their keys under `[projects.states]`.
fn state_roles(names: &StateNames) -> Vec<(&'static str, &str)> {
    let mut roles = vec![
        ("in_progress", names.in_progress.as_str()),
        ("approved", names.approved.as_str()),
        ("rejected", names.rejected.as_str()),
    ];
    if let Some(awaiting) = &names.awaiting {
        roles.push(("awaiting", awaiting.as_str()));
    }
    roles.push(("done", names.done.as_str()));
    if let Some(cancelled) = &names.cancelled {
        roles.push(("cancelled", cancelled.as_str()));
    }
    roles
}

/// Names that ask about one state only.
fn only(name: &str) -> StateNames {
    StateNames {
        in_progress: name.to_owned(),
        approved: name.to_owned(),
        rejected: name.to_owned(),
        awaiting: None,
        done: name.to_owned(),
        cancelled: None,
    }
}

fn tracker_kind(err: &TrackerError) -> ProblemKind {
    class_kind(err.class())
}

fn class_kind(class: ErrorClass) -> ProblemKind {
    match class {
        ErrorClass::Unavailable { .. } | ErrorClass::Other => ProblemKind::Unreachable,
        ErrorClass::NotFound
        | ErrorClass::Conflict
        | ErrorClass::Unauthorized
        | ErrorClass::Invalid => ProblemKind::Config,
    }
}

/// Gitea: each project's repository, once per repository.
async fn check_gitea(config: &Config, options: OnlineOptions, tls: &TlsConfig) -> OnlineReport {
    let mut report = OnlineReport::default();
    let mut settings =
        orch_gitea::GiteaSettings::new(config.gitea.base_url.as_str(), config.gitea.token.expose());
    settings.request_timeout = options.request_timeout;
    settings.connect_timeout = options.request_timeout;
    settings.tls = tls.clone();
    settings.retry = retry_policy(&options);
    let forge = match orch_gitea::GiteaForge::new(settings) {
        Ok(forge) => forge,
        Err(err) => {
            report.problem(ProblemKind::Config, "gitea.base_url", err.to_string());
            return report;
        }
    };
    let mut repos: BTreeMap<&RepoSlug, Vec<usize>> = BTreeMap::new();
    for (index, project) in config.projects.iter().enumerate() {
        repos.entry(&project.repo).or_default().push(index);
    }
    let mut found = Vec::new();
    for (repo, indexes) in &repos {
        match forge.repository_exists(repo).await {
            Ok(true) => found.push(repo.to_string()),
            Ok(false) => {
                for index in indexes {
                    report.problem(
                        ProblemKind::Config,
                        format!("projects[{index}].repo"),
                        format!("gitea has no repository {repo}, or gitea.token cannot see it"),
                    );
                }
            }
            Err(err) => {
                let kind = class_kind(err.class());
                let setting = match (&err, kind) {
                    (orch_core::ports::ForgeError::Unauthorized(_), _) => "gitea.token".to_owned(),
                    (_, ProblemKind::Unreachable) => "gitea.base_url".to_owned(),
                    (_, ProblemKind::Config) => format!("projects[{}].repo", indexes[0]),
                };
                report.problem(kind, setting, format!("repository {repo}: {err}"));
                // A refused token or a server that is down fails every repository alike.
                if kind == ProblemKind::Unreachable
                    || matches!(err, orch_core::ports::ForgeError::Unauthorized(_))
                {
                    return report;
                }
            }
        }
    }
    if report.problems.is_empty() {
        report.ok.push(format!(
            "gitea ok: {}; repositories found: {}",
            config.gitea.base_url.as_str(),
            found.join(", ")
        ));
    }
    report
}

/// Telegram: `getMe`, when a `[telegram]` section is configured.
async fn check_telegram(config: &Config, options: OnlineOptions, tls: &TlsConfig) -> OnlineReport {
    let mut report = OnlineReport::default();
    let Some(telegram) = &config.telegram else {
        report
            .ok
            .push("telegram off: no [telegram] section, notifications are logged".to_owned());
        return report;
    };
    let mut settings =
        orch_telegram::TelegramSettings::new(telegram.bot_token.expose(), telegram.chat_id.clone());
    settings.api_base = telegram.api_base.as_str().trim_end_matches('/').to_owned();
    settings.request_timeout = options.request_timeout;
    settings.tls = tls.clone();
    let notifier = orch_telegram::TelegramNotifier::new(&settings);
    let bot = match notifier.get_me().await {
        Ok(bot) => bot
            .username
            .map_or(bot.first_name, |username| format!("@{username}")),
        Err(err) => {
            let kind = class_kind(err.class());
            let setting = match kind {
                ProblemKind::Config => "telegram.bot_token",
                ProblemKind::Unreachable => "telegram.api_base",
            };
            report.problem(kind, setting, format!("getMe: {err}"));
            return report;
        }
    };
    match notifier.get_chat().await {
        Ok(chat) => {
            let title = chat
                .title
                .map_or_else(String::new, |title| format!(" {title:?}"));
            report.ok.push(format!(
                "telegram ok: bot {bot}; chat {} ({}{title})",
                chat.id, chat.kind
            ));
        }
        Err(err) => {
            let (kind, message) = match class_kind(err.class()) {
                ProblemKind::Config => (
                    ProblemKind::Config,
                    format!(
                        "getChat: {err}; add the bot {bot} to the chat, or fix the id (a group's id is negative, a channel may be @name)"
                    ),
                ),
                ProblemKind::Unreachable => (ProblemKind::Unreachable, format!("getChat: {err}")),
            };
            let setting = match kind {
                ProblemKind::Config => "telegram.chat_id",
                ProblemKind::Unreachable => "telegram.api_base",
            };
            report.problem(kind, setting, message);
        }
    }
    report
}

#[cfg(test)]
mod tests;
