//! The adapters built from the config: every port, the agent runner, the webhook parsers,
//! the board's links, and the copier of the adapters' API call counters into the metrics.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::task::JoinHandle;
use tracing::info;

use orch_core::domain::Agent;
use orch_core::event::Parsed;
use orch_core::links::WebLinks;
use orch_core::ports::{Clock, Notifier, NotifyError, Ports, Source, Store};
use orch_core::time::Timestamp;
use orch_http::{Metrics, WebhookEvents};

use crate::config::Config;
use crate::runtime::DeliveryParser;
use crate::wiring::{data_dir, RunError};

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis());
        Timestamp::from_millis(i64::try_from(millis).unwrap_or(i64::MAX))
    }
}

/// Notifications without Telegram: each one is an info log line.
#[derive(Debug, Default)]
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    async fn notify(&self, text: &str) -> Result<(), NotifyError> {
        info!(text = %text, "notification (no [telegram] section)");
        Ok(())
    }
}

/// How long a git mirror is trusted without a fetch when no webhook named its repository.
const MIRROR_MAX_AGE: Duration = Duration::from_secs(300);

/// The adapters' webhook parsers, by source.
pub fn delivery_parser() -> DeliveryParser {
    Arc::new(|source, event_type, body| -> Parsed {
        match source {
            Source::Plane => orch_plane::webhook::parse(event_type, body),
            Source::Gitea => orch_gitea::webhook::parse(event_type, body),
        }
    })
}

/// The webhook event types the ingress stores: those the parsers of `delivery_parser` read.
pub fn webhook_events() -> WebhookEvents {
    WebhookEvents {
        plane: orch_plane::webhook::WEBHOOK_EVENTS,
        gitea: orch_gitea::webhook::WEBHOOK_EVENTS,
    }
}

/// Every port, plus the concrete adapters whose own counters and budgets the daemon uses.
#[derive(Clone)]
pub struct Adapters {
    pub ports: Ports,
    pub plane: Arc<orch_plane::PlaneTracker>,
    pub gitea: Arc<orch_gitea::GiteaForge>,
    /// The workspace behind `ports.workspace`, which a reload's successor shares its locks
    /// and pool with.
    pub git: Arc<orch_git::GitWorkspace>,
}

/// Builds every port from the config. The store is opened by the caller.
pub fn build_ports(config: &Config, store: Arc<dyn Store>) -> Result<Ports, RunError> {
    build_adapters(config, store).map(|adapters| adapters.ports)
}

/// Builds every adapter from the config. The store is opened by the caller.
pub fn build_adapters(config: &Config, store: Arc<dyn Store>) -> Result<Adapters, RunError> {
    build_adapters_after(config, store, None)
}

/// `build_adapters` for a reload: a new git workspace over the same `repos_dir` as
/// `previous` takes turns with it (`GitWorkspace::succeeded_by`), since jobs given the old one
/// may still run.
pub(super) fn build_adapters_after(
    config: &Config,
    store: Arc<dyn Store>,
    previous: Option<&orch_git::GitWorkspace>,
) -> Result<Adapters, RunError> {
    let (tls, trust) = crate::tls::client_tls(&config.tls);
    tracing::debug!(
        system = trust.system,
        ca_file = trust.ca_file,
        built_in = trust.built_in,
        "trusted certificates"
    );
    let mut plane = orch_plane::PlaneSettings::new(
        config.plane.base_url.as_str(),
        config.plane.workspace_slug.clone(),
        config.plane.api_token.expose(),
    );
    plane.rate_limit_per_min = config.plane.rate_limit_per_min;
    plane.tls = tls.clone();
    let tracker = Arc::new(orch_plane::PlaneTracker::new(&plane));

    let mut gitea =
        orch_gitea::GiteaSettings::new(config.gitea.base_url.as_str(), config.gitea.token.expose());
    gitea.merge_style = config.gitea.merge_style;
    gitea.tls = tls.clone();
    let forge = Arc::new(
        orch_gitea::GiteaForge::new(gitea).map_err(|err| RunError::Adapter(err.to_string()))?,
    );

    let mut git = orch_git::GitConfig::new(
        config.workspace.repos_dir.clone(),
        config.gitea.base_url.as_str(),
    );
    git.token = Some(config.gitea.token.expose().to_owned());
    git.ca_file = config
        .tls
        .ca_file
        .as_ref()
        .map(|ca_file| ca_file.path.clone());
    // Pushes and CI statuses refresh the mirror off the dispatch path; this bounds how long
    // a missed webhook can leave it behind.
    git.warm = Some(MIRROR_MAX_AGE);
    let workspace = match previous {
        Some(previous) => previous.succeeded_by(git),
        None => orch_git::GitWorkspace::new(git),
    }
    .map_err(|err| RunError::Adapter(err.to_string()))?;
    let workspace = Arc::new(workspace);

    let agents = agent_runner(config)?;

    let notifier: Arc<dyn Notifier> = match &config.telegram {
        Some(telegram) => {
            let mut settings = orch_telegram::TelegramSettings::new(
                telegram.bot_token.expose(),
                telegram.chat_id.clone(),
            );
            settings.api_base = telegram.api_base.as_str().to_owned();
            settings.tls = tls;
            Arc::new(orch_telegram::TelegramNotifier::new(&settings).with_links(web_links(config)))
        }
        None => Arc::new(LogNotifier),
    };
    let mut ports = Ports {
        store,
        tracker: tracker.clone(),
        forge: forge.clone(),
        workspace: workspace.clone(),
        agents: Arc::new(agents),
        notifier,
        clock: Arc::new(SystemClock),
    };
    crate::failpoint::wrap_ports(&mut ports);
    Ok(Adapters {
        ports,
        plane: tracker,
        gitea: forge,
        git: workspace,
    })
}

/// Where the board's links point (Plane's and Gitea's web addresses) and where it reads the
/// agents' logs.
pub fn board_settings(config: &Config) -> orch_http::BoardSettings {
    orch_http::BoardSettings {
        links: Some(web_links(config)),
        logs_dir: Some(data_dir(config).join("logs")),
    }
}

/// Plane's and Gitea's web addresses, for the board's links and those under notifications.
fn web_links(config: &Config) -> WebLinks {
    WebLinks {
        plane_base: config.plane.base_url.as_str().to_owned(),
        plane_workspace: config.plane.workspace_slug.clone(),
        gitea_base: config.gitea.base_url.as_str().to_owned(),
    }
}

/// The agent runner's scratch directory; agents carry it as `ORCH_INSTANCE`, by which boot
/// finds those an earlier boot left (`orch_agent::reap_instance`). Always absolute: a data
/// directory given relative to the working directory (the default `data/orch.db`) would make
/// two instances started in different directories carry the same marker, and each boot would
/// kill the other's agents.
pub(super) fn agent_scratch_dir(data: &Path) -> PathBuf {
    let scratch = data.join("scratch");
    std::path::absolute(&scratch).unwrap_or(scratch)
}

/// The agent runner the config describes (SPEC §5.4): logs, scratch files and the agents'
/// private homes under the data directory; no sandbox ever shows the data directory, the
/// database or the repositories.
pub fn agent_runner(config: &Config) -> Result<orch_agent::ProcessAgentRunner, RunError> {
    let data = data_dir(config);
    let runner = orch_agent::RunnerConfig {
        roles: Agent::ALL
            .into_iter()
            .map(|agent| (agent, config.agent(agent).role_config()))
            .collect(),
        stall_timeout: config.worker.stall_timeout,
        kill_grace: orch_agent::DEFAULT_KILL_GRACE,
        logs_dir: data.join("logs"),
        scratch_dir: agent_scratch_dir(&data),
        homes_dir: data.join("homes"),
        sandbox: config.agents.sandbox(),
        protected_paths: vec![
            data,
            config.storage.db_path.clone(),
            config.workspace.repos_dir.clone(),
        ],
        nice: config.agents.nice,
    };
    orch_agent::ProcessAgentRunner::new(runner).map_err(|errors| {
        RunError::Adapter(
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })
}

/// The host of a base URL, for metric labels (`https://plane.example.com/x` → `plane.example.com`).
fn host_of(base_url: &str) -> String {
    let rest = base_url
        .split_once("://")
        .map_or(base_url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

/// How often the adapters' call counters are copied into the metrics.
const STATS_EVERY: Duration = Duration::from_secs(5);

/// Copies the adapters' API call and 429 counters into `metrics`, labelled by host.
pub(super) fn spawn_api_stats(
    adapters: &Adapters,
    config: &Config,
    metrics: Metrics,
) -> JoinHandle<()> {
    let (plane, gitea) = (adapters.plane.clone(), adapters.gitea.clone());
    let (plane_host, gitea_host) = (
        host_of(config.plane.base_url.as_str()),
        host_of(config.gitea.base_url.as_str()),
    );
    // Counting starts from what the adapters have counted so far, so a restarted copier
    // (after a reload that kept an adapter) never counts a call twice.
    let (first_plane, first_gitea) = (plane.stats(), gitea.stats());
    tokio::spawn(async move {
        let mut plane_seen = (first_plane.calls, first_plane.rate_limited);
        let mut gitea_seen = (first_gitea.calls, first_gitea.rate_limited);
        loop {
            let stats = plane.stats();
            metrics.add_api_calls(
                &plane_host,
                stats.calls - plane_seen.0,
                stats.rate_limited - plane_seen.1,
            );
            plane_seen = (stats.calls, stats.rate_limited);
            let stats = gitea.stats();
            metrics.add_api_calls(
                &gitea_host,
                stats.calls - gitea_seen.0,
                stats.rate_limited - gitea_seen.1,
            );
            gitea_seen = (stats.calls, stats.rate_limited);
            tokio::time::sleep(STATS_EVERY).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::agent_scratch_dir;

    #[test]
    fn the_agents_instance_marker_is_absolute_even_for_a_relative_data_directory() {
        let scratch = agent_scratch_dir(Path::new("data"));
        assert!(scratch.is_absolute(), "{}", scratch.display());
        let here = std::env::current_dir().expect("working directory");
        assert_eq!(scratch, here.join("data").join("scratch"));
        assert_eq!(
            agent_scratch_dir(Path::new("/var/lib/orch")),
            Path::new("/var/lib/orch/scratch")
        );
    }
}
