//! The loader: walks the TOML tree key by key, overlays the environment and collects every error.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use orch_agent::{PromptTemplate, SandboxPath};
use orch_core::config::{Grace, ProjectConfig};
use orch_core::ids::{BranchName, ProjectId, RepoSlug};
use orch_core::ports::StateNames;
use orch_core::secret::Secret;
use orch_gitea::MergeStyle;
use toml::{Table, Value};

use crate::config::error::{ConfigError, ConfigErrors};
use crate::config::schema::{Fallback, KeyDoc, SectionDoc};
use crate::config::secrets::{self, SecretFile, Shape, CREDENTIALS_ENV};
use crate::config::setting::{
    shown, shown_str, AbsolutePath, AgentEnv, Argv, List, PassEnvName, PathOrEmpty, ProjectKey,
    Ranged, Refused, SecretFilePath, SecretList, Setting, StateName, WorkItemPrefix, WorkspaceSlug,
};
use crate::config::values::{BaseUrl, CaFile, Prompt};
use crate::config::{
    AgentConfig, AgentsConfig, Config, GiteaConfig, PlaneConfig, ReconcileConfig, RetentionConfig,
    SandboxMode, ServerConfig, StorageConfig, TelegramConfig, TlsConfig, WorkerConfig,
    WorkspaceConfig, DAY_S, GRACE_SECTION, MAX_DAYS, PROJECT_SECTION, STATES_SECTION, WEEK_S,
};

/// The largest prompt template read, in bytes.
const MAX_PROMPT_BYTES: u64 = 1024 * 1024;

/// Whether the walk reads the secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Secrets {
    /// Read every secret from where it is given; a missing required one is an error.
    Read,
    /// Read no secret file, credential or variable; every secret is an empty placeholder.
    /// For commands that only read the database: the result must never reach an adapter.
    Withheld,
}

/// Checks `text`; `config_file` is where it was read from, if from a file (a secret given in
/// it makes it one of the returned secret files).
pub(crate) fn parse(
    text: &str,
    origin: &str,
    config_file: Option<&Path>,
    base_dir: &Path,
    env: &BTreeMap<String, String>,
    secrets: Secrets,
) -> Result<(Config, Vec<SecretFile>), ConfigErrors> {
    let document: Table = toml::from_str(text).map_err(|err| {
        let place = match err.span() {
            Some(span) => {
                let (line, column) = line_column(text, span.start);
                format!("{origin}:{line}:{column}")
            }
            None => origin.to_owned(),
        };
        ConfigErrors::single(place, format!("invalid TOML: {}", err.message().trim()))
    })?;
    let mut walker = Walker {
        env,
        base_dir,
        config_file,
        secrets,
        errors: Vec::new(),
        secret_files: Vec::new(),
    };
    let root = Section::new(
        String::new(),
        Cow::Borrowed(&document),
        &Config::SECTION,
        None,
    );
    let config = walker.config(&root);
    root.finish(&mut walker);
    match config {
        Some(config) if walker.errors.is_empty() => Ok((config, walker.secret_files)),
        _ => Err(ConfigErrors::new(walker.errors)),
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |tail| tail.chars().count())
        + 1;
    (line, column)
}

struct Walker<'e> {
    env: &'e BTreeMap<String, String>,
    base_dir: &'e Path,
    config_file: Option<&'e Path>,
    secrets: Secrets,
    errors: Vec<ConfigError>,
    /// Every file a secret came from, in the order read.
    secret_files: Vec<SecretFile>,
}

/// Where a key's value came from.
enum Lookup<'v> {
    /// Absent, with no default (`Required` or `Unset`).
    Missing,
    /// From the file, or the key's documented default.
    Toml(Cow<'v, Value>),
    /// From the key's environment variable (non-empty).
    Env(String),
}

/// Where a secret's text came from, after the precedence rules.
enum SecretLookup<'v> {
    /// Given nowhere.
    Missing,
    /// From the key's environment variable (non-empty).
    Env(String),
    /// The secrets of a `*_file` or of a credential, one per line.
    File(Vec<String>),
    /// From the config file (not empty).
    Toml(&'v Value),
    /// Not read (`Secrets::Withheld`).
    Withheld,
}

/// One table of the document being read, with the description of its keys.
struct Section<'d> {
    path: String,
    table: Cow<'d, Table>,
    doc: &'static SectionDoc,
    /// The agent role, substituted for `<role>` in defaults.
    role: Option<&'static str>,
}

impl<'e> Walker<'e> {
    fn error(&mut self, key: String, message: impl Into<String>) {
        self.errors.push(ConfigError {
            key,
            message: message.into(),
        });
    }

    /// The variable's value; an empty one counts as not set.
    fn env_value(&self, var: &str) -> Option<&'e str> {
        self.env
            .get(var)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }

    /// The file of the credential `name` in `$CREDENTIALS_DIRECTORY`, when that is set.
    fn credential(&self, name: &str) -> Option<PathBuf> {
        self.env_value(CREDENTIALS_ENV)
            .map(|dir| Path::new(dir).join(name))
    }

    fn secret_file(&mut self, key: String, path: PathBuf) {
        self.secret_files.push(SecretFile { key, path });
    }

    fn config(&mut self, root: &Section<'_>) -> Option<Config> {
        let server_section = root.table_or_default(self, "server", &ServerConfig::SECTION)?;
        let server = self.server(&server_section);
        let storage_section = root.table_or_default(self, "storage", &StorageConfig::SECTION)?;
        let storage = self.storage(&storage_section);
        let workspace_section =
            root.table_or_default(self, "workspace", &WorkspaceConfig::SECTION)?;
        let workspace = self.workspace(&workspace_section);
        let plane_section = root.table_or_default(self, "plane", &PlaneConfig::SECTION)?;
        let plane = self.plane(&plane_section);
        let gitea_section = root.table_or_default(self, "gitea", &GiteaConfig::SECTION)?;
        let gitea = self.gitea(&gitea_section);
        let tls_section = root.table_or_default(self, "tls", &TlsConfig::SECTION)?;
        let tls = self.tls(&tls_section);
        let telegram = self.telegram(root);
        let worker_section = root.table_or_default(self, "worker", &WorkerConfig::SECTION)?;
        let worker = self.worker(&worker_section);
        let reconcile_section =
            root.table_or_default(self, "reconcile", &ReconcileConfig::SECTION)?;
        let reconcile = self.reconcile(&reconcile_section);
        let retention_section =
            root.table_or_default(self, "retention", &RetentionConfig::SECTION)?;
        let retention = self.retention(&retention_section);
        let agents_section = root.table_or_default(self, "agents", &AgentsConfig::SECTION)?;
        let agents = self.agents(&agents_section, &worker);
        let projects = self.projects(root);
        Some(Config {
            server: server?,
            storage: storage?,
            workspace: workspace?,
            plane: plane?,
            gitea: gitea?,
            tls: tls?,
            telegram: telegram?,
            worker: worker?,
            reconcile: reconcile?,
            retention: retention?,
            agents: agents?,
            projects: projects?,
        })
    }

    fn server(&mut self, section: &Section<'_>) -> Option<ServerConfig> {
        let listen = section.value::<SocketAddr>(self, "listen");
        let admin_token = section.secret(self, "admin_token");
        let max_body_bytes = section.value::<Ranged<1, 1_073_741_824>>(self, "max_body_bytes");
        section.finish(self);
        Some(ServerConfig {
            listen: listen?,
            admin_token: admin_token?,
            admin_token_file: section.secret_file_path(self, "admin_token"),
            max_body_bytes: max_body_bytes?.get(),
        })
    }

    fn storage(&mut self, section: &Section<'_>) -> Option<StorageConfig> {
        let db_path = section.value::<PathBuf>(self, "db_path");
        section.finish(self);
        Some(StorageConfig { db_path: db_path? })
    }

    fn workspace(&mut self, section: &Section<'_>) -> Option<WorkspaceConfig> {
        let repos_dir = section.value::<PathBuf>(self, "repos_dir");
        section.finish(self);
        Some(WorkspaceConfig {
            repos_dir: repos_dir?,
        })
    }

    fn plane(&mut self, section: &Section<'_>) -> Option<PlaneConfig> {
        let base_url = section.value::<BaseUrl>(self, "base_url");
        let workspace_slug = section.value::<WorkspaceSlug>(self, "workspace_slug");
        let api_token = section.required_secret(self, "api_token");
        let webhook_secrets = section.secret_list(self, "webhook_secrets");
        let rate_limit_per_min = section.value::<Ranged<1, 100_000>>(self, "rate_limit_per_min");
        section.finish(self);
        Some(PlaneConfig {
            base_url: base_url?,
            workspace_slug: workspace_slug?.0,
            api_token: api_token?,
            api_token_file: section.secret_file_path(self, "api_token"),
            webhook_secrets: webhook_secrets?,
            webhook_secrets_file: section.secret_file_path(self, "webhook_secrets"),
            rate_limit_per_min: rate_limit_per_min?.get_u32(),
        })
    }

    fn gitea(&mut self, section: &Section<'_>) -> Option<GiteaConfig> {
        let base_url = section.value::<BaseUrl>(self, "base_url");
        let token = section.required_secret(self, "token");
        let webhook_secrets = section.secret_list(self, "webhook_secrets");
        let merge_style = section.value::<MergeStyle>(self, "merge_style");
        let require_ci = section.value::<bool>(self, "require_ci");
        section.finish(self);
        Some(GiteaConfig {
            base_url: base_url?,
            token: token?,
            token_file: section.secret_file_path(self, "token"),
            webhook_secrets: webhook_secrets?,
            webhook_secrets_file: section.secret_file_path(self, "webhook_secrets"),
            merge_style: merge_style?,
            require_ci: require_ci?,
        })
    }

    /// `Some(None)` when Telegram is not configured at all.
    fn telegram(&mut self, root: &Section<'_>) -> Option<Option<TelegramConfig>> {
        // The variables or the bot token's credential turn Telegram on without a section.
        let given_elsewhere = ["ORCH_TELEGRAM_BOT_TOKEN", "ORCH_TELEGRAM_CHAT_ID"]
            .into_iter()
            .any(|var| self.env_value(var).is_some())
            || self
                .credential("telegram.bot_token")
                .is_some_and(|path| path.exists());
        let section = match root.table(self, "telegram", &TelegramConfig::SECTION) {
            Ok(Some(section)) => section,
            Ok(None) if given_elsewhere => Section::new(
                "telegram".to_owned(),
                Cow::Owned(Table::new()),
                &TelegramConfig::SECTION,
                None,
            ),
            Ok(None) => return Some(None),
            Err(()) => return None,
        };
        let bot_token = section.required_secret(self, "bot_token");
        let chat_id = match section.lookup(self, "chat_id") {
            Lookup::Missing => {
                self.error(
                    section.label(self, "chat_id"),
                    required_message(section.key_doc("chat_id")),
                );
                None
            }
            Lookup::Env(text) => Some(text),
            Lookup::Toml(value) => match value.as_ref() {
                Value::String(text) if !text.trim().is_empty() => Some(text.trim().to_owned()),
                Value::Integer(number) => Some(number.to_string()),
                Value::String(_) => {
                    self.error(
                        section.label(self, "chat_id"),
                        required_message(section.key_doc("chat_id")),
                    );
                    None
                }
                other => {
                    self.error(
                        section.label(self, "chat_id"),
                        format!("expected a string or an integer, got {}", shown(other)),
                    );
                    None
                }
            },
        };
        let api_base = section.value::<BaseUrl>(self, "api_base");
        section.finish(self);
        Some(Some(TelegramConfig {
            bot_token: bot_token?,
            bot_token_file: section.secret_file_path(self, "bot_token"),
            chat_id: chat_id?,
            api_base: api_base?,
        }))
    }

    fn tls(&mut self, section: &Section<'_>) -> Option<TlsConfig> {
        let ca_file = match section
            .setting::<PathOrEmpty>(self, "ca_file")?
            .and_then(|path| path.0)
        {
            None => None,
            Some(path) => match CaFile::read(&self.base_dir.join(path)) {
                Ok(ca_file) => Some(ca_file),
                Err(message) => {
                    self.error(section.label(self, "ca_file"), message);
                    return None;
                }
            },
        };
        section.finish(self);
        Some(TlsConfig { ca_file })
    }

    fn worker(&mut self, section: &Section<'_>) -> Option<WorkerConfig> {
        let concurrency = section.value::<Ranged<1, 64>>(self, "concurrency");
        let per_repo_concurrency = section.value::<Ranged<1, 64>>(self, "per_repo_concurrency");
        let job_timeout = section.value::<Ranged<1, WEEK_S>>(self, "job_timeout_s");
        let stall_timeout = section.value::<Ranged<1, DAY_S>>(self, "stall_timeout_s");
        let max_attempts = section.value::<Ranged<1, 100>>(self, "max_attempts");
        let max_fix_rounds = section.value::<Ranged<0, 100>>(self, "max_fix_rounds");
        section.finish(self);
        Some(WorkerConfig {
            concurrency: concurrency?.get_u32(),
            per_repo_concurrency: per_repo_concurrency?.get_u32(),
            job_timeout: Duration::from_secs(job_timeout?.get()),
            stall_timeout: Duration::from_secs(stall_timeout?.get()),
            max_attempts: max_attempts?.get_u32(),
            max_fix_rounds: max_fix_rounds?.get_u32(),
        })
    }

    fn reconcile(&mut self, section: &Section<'_>) -> Option<ReconcileConfig> {
        let enabled = section.value::<bool>(self, "enabled");
        let plane_enabled = section.value::<bool>(self, "plane_enabled");
        let interval = section.value::<Ranged<1, DAY_S>>(self, "interval_s");
        let grace = match section.table_or_default(self, "grace_s", &GRACE_SECTION) {
            Some(grace_section) => {
                let seconds = |walker: &mut Walker<'_>, key: &str| {
                    grace_section
                        .value::<Ranged<0, WEEK_S>>(walker, key)
                        .map(|seconds| Duration::from_secs(seconds.get()))
                };
                let analysis = seconds(self, "analysis");
                let development = seconds(self, "development");
                let review = seconds(self, "review");
                grace_section.finish(self);
                Some(Grace {
                    analysis: analysis?,
                    development: development?,
                    review: review?,
                })
            }
            None => None,
        };
        section.finish(self);
        Some(ReconcileConfig {
            enabled: enabled?,
            plane_enabled: plane_enabled?,
            interval: Duration::from_secs(interval?.get()),
            grace: grace?,
        })
    }

    fn retention(&mut self, section: &Section<'_>) -> Option<RetentionConfig> {
        let enabled = section.value::<bool>(self, "enabled");
        let interval = section.value::<Ranged<60, DAY_S>>(self, "interval_s");
        let days = |days: Ranged<1, MAX_DAYS>| Duration::from_secs(days.get() * DAY_S);
        let deliveries = section
            .value::<Ranged<7, MAX_DAYS>>(self, "deliveries_days")
            .map(|days| Duration::from_secs(days.get() * DAY_S));
        let jobs = section.value(self, "jobs_days").map(days);
        let history = section.value(self, "history_days").map(days);
        let agent_logs = section.value(self, "agent_logs_days").map(days);
        section.finish(self);
        Some(RetentionConfig {
            enabled: enabled?,
            interval: Duration::from_secs(interval?.get()),
            deliveries: deliveries?,
            jobs: jobs?,
            history: history?,
            agent_logs: agent_logs?,
        })
    }

    fn agents(
        &mut self,
        section: &Section<'_>,
        worker: &Option<WorkerConfig>,
    ) -> Option<AgentsConfig> {
        let read = |walker: &mut Walker<'_>, role: &'static str| {
            let agent_section = section.table_or_default(walker, role, &AgentConfig::SECTION)?;
            let agent_section = Section {
                role: Some(role),
                ..agent_section
            };
            walker.agent(&agent_section, worker)
        };
        let sandbox = section.value::<SandboxMode>(self, "sandbox");
        let bwrap_path = section
            .setting::<AbsolutePath>(self, "bwrap_path")
            .map(|path| path.map(|path| path.0));
        let nice = section.value::<Ranged<0, 19>>(self, "nice");
        let analyst = read(self, "analyst");
        let developer = read(self, "developer");
        let reviewer = read(self, "reviewer");
        section.finish(self);
        Some(AgentsConfig {
            sandbox: sandbox?,
            bwrap_path: bwrap_path?,
            nice: nice?.get_u8(),
            analyst: analyst?,
            developer: developer?,
            reviewer: reviewer?,
        })
    }

    fn agent(
        &mut self,
        section: &Section<'_>,
        worker: &Option<WorkerConfig>,
    ) -> Option<AgentConfig> {
        let command = section.value::<Argv>(self, "command");
        let prompt = self.prompt(section);
        let timeout = section
            .value::<Ranged<1, WEEK_S>>(self, "timeout_s")
            .and_then(|seconds| {
                let seconds = seconds.get();
                let timeout = Duration::from_secs(seconds);
                match worker {
                    Some(worker) if timeout > worker.job_timeout => {
                        self.error(
                            section.label(self, "timeout_s"),
                            format!(
                                "{seconds} is longer than worker.job_timeout_s ({})",
                                worker.job_timeout.as_secs()
                            ),
                        );
                        None
                    }
                    _ => Some(timeout),
                }
            });
        let env = section.value::<AgentEnv>(self, "env");
        let pass_env = section.value::<List<PassEnvName>>(self, "pass_env");
        let network = section.value::<bool>(self, "network");
        let read_only_paths = section.value::<List<SandboxPath>>(self, "read_only_paths");
        let writable_paths = section.value::<List<SandboxPath>>(self, "writable_paths");
        let probe = section.value::<List<String>>(self, "probe");
        section.finish(self);
        Some(AgentConfig {
            command: command?.0,
            prompt: prompt?,
            timeout: timeout?,
            env: env?.0,
            pass_env: pass_env?.0.into_iter().map(|name| name.0).collect(),
            network: network?,
            read_only_paths: read_only_paths?.0,
            writable_paths: writable_paths?.0,
            probe: probe?.0,
        })
    }

    fn prompt(&mut self, section: &Section<'_>) -> Option<Prompt> {
        let relative = section.value::<PathBuf>(self, "prompt")?;
        let path = self.base_dir.join(&relative);
        let label = section.label(self, "prompt");
        let text = match read_prompt(&path) {
            Ok(text) => text,
            Err(reason) => {
                self.error(label, format!("cannot read {}: {reason}", path.display()));
                return None;
            }
        };
        // The agent runner's own parser decides, so `orch check` accepts exactly what it renders.
        if let Err(err) = PromptTemplate::parse(&text) {
            self.error(label, format!("{err} in {}", path.display()));
            return None;
        }
        Some(Prompt { path, text })
    }

    fn projects(&mut self, root: &Section<'_>) -> Option<Vec<ProjectConfig>> {
        let label = root.label(self, "projects");
        let entries = match root.lookup(self, "projects") {
            Lookup::Missing => {
                self.error(label, "at least one [[projects]] entry is required");
                return None;
            }
            Lookup::Env(_) => unreachable!("projects has no environment variable"),
            Lookup::Toml(value) => match value.as_ref() {
                Value::Array(entries) if !entries.is_empty() => entries.clone(),
                Value::Array(_) => {
                    self.error(label, "at least one [[projects]] entry is required");
                    return None;
                }
                other => {
                    self.error(
                        label,
                        format!(
                            "expected an array of tables ([[projects]]), got {}",
                            shown(other)
                        ),
                    );
                    return None;
                }
            },
        };
        let mut projects = Vec::new();
        let mut ok = true;
        for (idx, entry) in entries.iter().enumerate() {
            let path = format!("projects[{idx}]");
            let Value::Table(table) = entry else {
                self.error(path, format!("expected a table, got {}", shown(entry)));
                ok = false;
                continue;
            };
            let section = Section::new(path, Cow::Borrowed(table), &PROJECT_SECTION, None);
            match self.project(&section) {
                Some(project) => projects.push(project),
                None => ok = false,
            }
        }
        self.check_unique(&projects, "key", |project| project.key.clone());
        self.check_unique(&projects, "plane_project_id", |project| {
            project.plane_project_id.to_string()
        });
        self.check_unique(&projects, "repo", |project| project.repo.to_string());
        ok.then_some(projects)
    }

    fn check_unique(
        &mut self,
        projects: &[ProjectConfig],
        key: &str,
        value_of: impl Fn(&ProjectConfig) -> String,
    ) {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for (idx, project) in projects.iter().enumerate() {
            let value = value_of(project);
            match seen.get(&value) {
                Some(first) => self.error(
                    format!("projects[{idx}].{key}"),
                    format!("{} is already used by projects[{first}]", shown_str(&value)),
                ),
                None => {
                    seen.insert(value, idx);
                }
            }
        }
    }

    fn project(&mut self, section: &Section<'_>) -> Option<ProjectConfig> {
        let key = section.value::<ProjectKey>(self, "key");
        let plane_project_id = section.value::<ProjectId>(self, "plane_project_id");
        let repo = section.value::<RepoSlug>(self, "repo");
        let work_item_prefix = section.value::<WorkItemPrefix>(self, "work_item_prefix");
        let base_branch = section.value::<BranchName>(self, "base_branch");
        let states = section
            .table_or_default(self, "states", &STATES_SECTION)
            .and_then(|states| {
                let names = self.states(&states);
                states.finish(self);
                names
            });
        section.finish(self);
        Some(ProjectConfig {
            key: key?.0,
            plane_project_id: plane_project_id?,
            repo: repo?,
            work_item_prefix: work_item_prefix?.0,
            base_branch: base_branch?,
            states: states?,
        })
    }

    fn states(&mut self, section: &Section<'_>) -> Option<StateNames> {
        let name = |walker: &mut Walker<'_>, key: &str| {
            let name = section.setting::<StateName>(walker, key)?;
            Some(name.map(|name| name.0))
        };
        let in_progress = name(self, "in_progress");
        let approved = name(self, "approved");
        let rejected = name(self, "rejected");
        let awaiting = name(self, "awaiting");
        let done = name(self, "done");
        let cancelled = name(self, "cancelled");
        let names = StateNames {
            in_progress: in_progress??,
            approved: approved??,
            rejected: rejected??,
            awaiting: awaiting?,
            done: done??,
            cancelled: cancelled?,
        };
        let roles = [
            ("in_progress", Some(&names.in_progress)),
            ("approved", Some(&names.approved)),
            ("rejected", Some(&names.rejected)),
            ("awaiting", names.awaiting.as_ref()),
            ("done", Some(&names.done)),
            ("cancelled", names.cancelled.as_ref()),
        ];
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        let mut ok = true;
        for (role, state) in roles {
            let Some(state) = state else { continue };
            if let Some(first) = seen.get(state.as_str()) {
                self.error(
                    section.label(self, role),
                    format!("{} is already the state of {first}", shown_str(state)),
                );
                ok = false;
            } else {
                seen.insert(state, role);
            }
        }
        ok.then_some(names)
    }
}

fn read_prompt(path: &Path) -> Result<String, String> {
    let metadata = std::fs::metadata(path).map_err(|err| err.to_string())?;
    if !metadata.is_file() {
        return Err("not a file".to_owned());
    }
    if metadata.len() > MAX_PROMPT_BYTES {
        return Err(format!("larger than {MAX_PROMPT_BYTES} bytes"));
    }
    std::fs::read_to_string(path).map_err(|err| err.to_string())
}

impl<'d> Section<'d> {
    fn new(
        path: String,
        table: Cow<'d, Table>,
        doc: &'static SectionDoc,
        role: Option<&'static str>,
    ) -> Section<'d> {
        Section {
            path,
            table,
            doc,
            role,
        }
    }

    fn key_doc(&self, key: &str) -> &'static KeyDoc {
        self.doc
            .key(key)
            .expect("every key read is described in its section's doc")
    }

    fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The key path for messages, naming the environment variable when it supplied the value.
    fn label(&self, walker: &Walker<'_>, key: &str) -> String {
        let path = self.key_path(key);
        match self.key_doc(key).env {
            Some(var) if walker.env_value(var).is_some() => format!("{path} ({var})"),
            _ => path,
        }
    }

    fn lookup<'s>(&'s self, walker: &Walker<'_>, key: &str) -> Lookup<'s> {
        let doc = self.key_doc(key);
        if let Some(text) = doc.env.and_then(|var| walker.env_value(var)) {
            return Lookup::Env(text.to_owned());
        }
        if let Some(value) = self.table.get(key) {
            return Lookup::Toml(Cow::Borrowed(value));
        }
        match doc.fallback {
            Fallback::Required | Fallback::Unset => Lookup::Missing,
            Fallback::Table => Lookup::Toml(Cow::Owned(Value::Table(Table::new()))),
            Fallback::Value(default) => {
                let mut value = default();
                if let (Value::String(text), Some(role)) = (&mut value, self.role) {
                    *text = text.replace("<role>", role);
                }
                Lookup::Toml(Cow::Owned(value))
            }
        }
    }

    /// Reports every key of this table that is not described.
    fn finish(&self, walker: &mut Walker<'_>) {
        for key in self.table.keys() {
            if self.doc.key(key).is_none() {
                walker.error(self.key_path(key), "unknown key");
            }
        }
    }

    /// A sub-table: `Ok(None)` when absent without a default, `Err` when it is not a table.
    fn table(
        &self,
        walker: &mut Walker<'_>,
        key: &str,
        doc: &'static SectionDoc,
    ) -> Result<Option<Section<'_>>, ()> {
        let path = self.key_path(key);
        match self.lookup(walker, key) {
            Lookup::Missing => {
                if self.key_doc(key).fallback.is_required() {
                    walker.error(path, "required");
                    return Err(());
                }
                Ok(None)
            }
            Lookup::Env(_) => unreachable!("tables have no environment variable"),
            Lookup::Toml(Cow::Borrowed(Value::Table(table))) => Ok(Some(Section::new(
                path,
                Cow::Borrowed(table),
                doc,
                self.role,
            ))),
            Lookup::Toml(Cow::Owned(Value::Table(table))) => {
                Ok(Some(Section::new(path, Cow::Owned(table), doc, self.role)))
            }
            Lookup::Toml(other) => {
                let message = format!("expected a table, got {}", shown(&other));
                walker.error(path, message);
                Err(())
            }
        }
    }

    /// A sub-table whose absence means "all defaults"; `None` after an error.
    fn table_or_default(
        &self,
        walker: &mut Walker<'_>,
        key: &str,
        doc: &'static SectionDoc,
    ) -> Option<Section<'_>> {
        match self.table(walker, key, doc) {
            Ok(Some(section)) => Some(section),
            Ok(None) => Some(Section::new(
                self.key_path(key),
                Cow::Owned(Table::new()),
                doc,
                self.role,
            )),
            Err(()) => None,
        }
    }

    /// Panics unless `key` is declared with the setting type `T`.
    fn assert_type<T: 'static>(&self, key: &str) {
        assert!(
            self.key_doc(key).ty.is::<T>(),
            "{} is read as the type its declaration names",
            self.key_path(key)
        );
    }

    /// The value of `key`, decoded and checked by `T`, the setting type its declaration names:
    /// `Some(None)` when absent without default, `None` after an error.
    fn setting<T: Setting>(&self, walker: &mut Walker<'_>, key: &str) -> Option<Option<T>> {
        let doc = self.key_doc(key);
        self.assert_type::<T>(key);
        let label = self.label(walker, key);
        let decoded = match self.lookup(walker, key) {
            Lookup::Missing if doc.fallback.is_required() => {
                walker.error(label, required_message(doc));
                return None;
            }
            Lookup::Missing => return Some(None),
            Lookup::Env(text) => T::from_env(&text),
            Lookup::Toml(value) => T::from_toml(&value),
        };
        report(walker, &label, decoded).map(Some)
    }

    /// A setting that is given or has a default: `None` after an error.
    fn value<T: Setting>(&self, walker: &mut Walker<'_>, key: &str) -> Option<T> {
        let value = self.setting(walker, key)?;
        debug_assert!(value.is_some(), "{key} has a default or is required");
        value
    }

    /// Where the secret `key` comes from, in the order of precedence: its environment
    /// variable; its `{key}_file` or its value in the file (an empty value counts as not
    /// given; both given is an error); the credential named after its key path in
    /// `$CREDENTIALS_DIRECTORY`. `None` after an error; no error quotes a secret.
    fn secret_lookup(
        &self,
        walker: &mut Walker<'_>,
        key: &str,
        shape: Shape,
    ) -> Option<SecretLookup<'_>> {
        let file_key = format!("{key}_file");
        let inline = self.table.get(key).filter(|value| !is_unset_secret(value));
        let file = self
            .setting::<SecretFilePath>(walker, &file_key)?
            .and_then(|path| path.0)
            .map(|path| walker.base_dir.join(path));
        if inline.is_some() && file.is_some() {
            walker.error(
                self.key_path(&file_key),
                format!("give {key} or {file_key}, not both"),
            );
            return None;
        }
        if walker.secrets == Secrets::Withheld {
            return Some(SecretLookup::Withheld);
        }
        if let (Some(_), Some(config_file)) = (inline, walker.config_file) {
            // The file holds the secret even when the environment overrides it.
            walker.secret_file(self.key_path(key), config_file.to_path_buf());
        }
        if let Some(text) = self.key_doc(key).env.and_then(|var| walker.env_value(var)) {
            return Some(SecretLookup::Env(text.to_owned()));
        }
        if let Some(path) = file {
            return match secrets::read(&path, shape) {
                Ok(lines) => {
                    walker.secret_file(self.key_path(key), path);
                    Some(SecretLookup::File(lines))
                }
                Err(reason) => {
                    walker.error(self.key_path(&file_key), reason);
                    None
                }
            };
        }
        if let Some(value) = inline {
            return Some(SecretLookup::Toml(value));
        }
        let Some(path) = walker.credential(&self.key_path(key)) else {
            return Some(SecretLookup::Missing);
        };
        match secrets::read_if_present(&path, shape) {
            Ok(Some(lines)) => {
                walker.secret_file(self.key_path(key), path);
                Some(SecretLookup::File(lines))
            }
            Ok(None) => Some(SecretLookup::Missing),
            Err(reason) => {
                walker.error(
                    format!("{} (${CREDENTIALS_ENV})", self.key_path(key)),
                    reason,
                );
                None
            }
        }
    }

    /// The `{key}_file` of a secret as given, resolved against the config file's directory.
    fn secret_file_path(&self, walker: &Walker<'_>, key: &str) -> Option<PathBuf> {
        let path = SecretFilePath::from_toml(self.table.get(&format!("{key}_file"))?).ok()?;
        Some(walker.base_dir.join(path.0?))
    }

    /// "required; set …" for a secret, naming every place it can come from.
    fn secret_required(&self, walker: &mut Walker<'_>, key: &str) {
        let env = match self.key_doc(key).env {
            Some(var) => format!(", in {var}"),
            None => String::new(),
        };
        walker.error(
            self.key_path(key),
            format!(
                "required; set it in the file (or {key}_file){env}, or as the credential {}",
                self.key_path(key)
            ),
        );
    }

    /// An optional secret: absent or empty is `None`. Its text is never shown in errors.
    fn secret(&self, walker: &mut Walker<'_>, key: &str) -> Option<Option<Secret>> {
        self.assert_type::<Secret>(key);
        let label = self.label(walker, key);
        match self.secret_lookup(walker, key, Shape::OneLine)? {
            SecretLookup::Missing => Some(None),
            SecretLookup::Withheld => Some(Some(Secret::new(String::new()))),
            SecretLookup::Env(text) => report(walker, &label, Secret::from_env(&text)).map(Some),
            SecretLookup::File(lines) => Some(lines.into_iter().next().map(Secret::new)),
            SecretLookup::Toml(value) => report(walker, &label, Secret::from_toml(value)).map(Some),
        }
    }

    fn required_secret(&self, walker: &mut Walker<'_>, key: &str) -> Option<Secret> {
        let secret = self.secret(walker, key)?;
        if secret.is_none() {
            self.secret_required(walker, key);
        }
        secret
    }

    /// A non-empty list of secrets; a file gives them one per line.
    fn secret_list(&self, walker: &mut Walker<'_>, key: &str) -> Option<Vec<Secret>> {
        self.assert_type::<SecretList>(key);
        let label = self.label(walker, key);
        let secrets = match self.secret_lookup(walker, key, Shape::Lines)? {
            SecretLookup::Missing => Vec::new(),
            SecretLookup::Withheld => vec![Secret::new(String::new())],
            SecretLookup::Env(text) => report(walker, &label, SecretList::from_env(&text))?.0,
            SecretLookup::File(lines) => lines.into_iter().map(Secret::new).collect(),
            SecretLookup::Toml(value) => report(walker, &label, SecretList::from_toml(value))?.0,
        };
        if secrets.is_empty() {
            self.secret_required(walker, key);
            return None;
        }
        Some(secrets)
    }
}

/// The value, or `None` after reporting each part of its refusal under `label`.
fn report<T>(walker: &mut Walker<'_>, label: &str, decoded: Result<T, Refused>) -> Option<T> {
    match decoded {
        Ok(value) => Some(value),
        Err(refused) => {
            for (part, message) in refused.into_parts() {
                walker.error(format!("{label}{part}"), message);
            }
            None
        }
    }
}

/// A secret's value in the file that counts as not given: `""` or a list of only `""`.
fn is_unset_secret(value: &Value) -> bool {
    match value {
        Value::String(text) => text.is_empty(),
        Value::Array(items) => items.iter().all(|item| item.as_str() == Some("")),
        _ => false,
    }
}

fn required_message(doc: &KeyDoc) -> String {
    match doc.env {
        Some(var) => format!("required; set it in the file or in {var}"),
        None => "required".to_owned(),
    }
}
