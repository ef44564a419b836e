//! `orch check --online` against the Plane, Gitea and Telegram simulators.

use std::collections::BTreeMap;
use std::time::Duration;

use orch_sim::gitea::GiteaSim;
use orch_sim::plane::PlaneSim;
use orch_sim::telegram::TelegramSim;
use orch_sim::tls::{TestCa, TlsFront};

use crate::config::{self, Config};
use crate::online::{check, OnlineOptions, OnlineReport, Problem, ProblemKind};

const TELEGRAM_TOKEN: &str = "424242:online-check-bot-token";
const TELEGRAM_CHAT: &str = "777";
/// A Plane project id no simulator knows.
const UNKNOWN_PROJECT: &str = "0b9f7a52-1c1e-4a43-9a65-5d3c0f1e2a77";

/// Short calls and no retries, so unreachable systems fail fast.
fn fast() -> OnlineOptions {
    OnlineOptions {
        request_timeout: Duration::from_secs(3),
        retries: 0,
        retry_base: Duration::from_millis(5),
    }
}

/// The three simulators, a Plane project and a Gitea repository.
struct Systems {
    plane: PlaneSim,
    project: String,
    gitea: GiteaSim,
    telegram: TelegramSim,
}

impl Systems {
    async fn start() -> Systems {
        let plane = PlaneSim::start().await.expect("plane sim");
        let project = plane.add_project("ET");
        let gitea = GiteaSim::start().await.expect("gitea sim");
        gitea
            .create_repo("acme", "widgets")
            .await
            .expect("repository");
        let telegram = TelegramSim::start(TELEGRAM_TOKEN, TELEGRAM_CHAT)
            .await
            .expect("telegram sim");
        Systems {
            plane,
            project,
            gitea,
            telegram,
        }
    }

    fn settings(&self) -> Settings {
        Settings {
            plane_url: self.plane.base_url(),
            plane_token: self.plane.api_token().to_owned(),
            workspace: self.plane.workspace_slug().to_owned(),
            gitea_url: self.gitea.base_url(),
            gitea_token: self.gitea.token().to_owned(),
            telegram: Some((self.telegram.api_base(), TELEGRAM_TOKEN.to_owned())),
            ca_file: None,
            chat_id: TELEGRAM_CHAT.to_owned(),
            projects: vec![ProjectSettings {
                plane_project_id: self.project.clone(),
                repo: "acme/widgets".to_owned(),
                approved: "Approved",
                done: "Done",
            }],
        }
    }
}

struct ProjectSettings {
    plane_project_id: String,
    repo: String,
    approved: &'static str,
    done: &'static str,
}

struct Settings {
    plane_url: String,
    plane_token: String,
    workspace: String,
    gitea_url: String,
    gitea_token: String,
    /// `api_base` and the bot token; `None` leaves `[telegram]` out.
    telegram: Option<(String, String)>,
    /// `tls.ca_file`, when set.
    ca_file: Option<std::path::PathBuf>,
    /// `telegram.chat_id`.
    chat_id: String,
    projects: Vec<ProjectSettings>,
}

impl Settings {
    /// A config file for these settings, parsed (prompts are written to a temp dir).
    fn config(&self) -> Config {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("prompts")).expect("prompts dir");
        for role in ["analyst", "developer", "reviewer"] {
            std::fs::write(
                dir.path().join(format!("prompts/{role}.md")),
                format!("You are the {role} of {{{{task}}}}.\n"),
            )
            .expect("prompt");
        }
        let mut text = format!(
            "[plane]\nbase_url = {:?}\nworkspace_slug = {:?}\napi_token = {:?}\nwebhook_secrets = [\"plane-hook\"]\n\n\
             [gitea]\nbase_url = {:?}\ntoken = {:?}\nwebhook_secrets = [\"gitea-hook\"]\n\n",
            self.plane_url, self.workspace, self.plane_token, self.gitea_url, self.gitea_token
        );
        if let Some(ca_file) = &self.ca_file {
            text.push_str(&format!(
                "[tls]\nca_file = {:?}\n\n",
                ca_file.display().to_string()
            ));
        }
        if let Some((api_base, token)) = &self.telegram {
            text.push_str(&format!(
                "[telegram]\nbot_token = {token:?}\nchat_id = {:?}\napi_base = {api_base:?}\n\n",
                self.chat_id
            ));
        }
        for (index, project) in self.projects.iter().enumerate() {
            text.push_str(&format!(
                "[[projects]]\nkey = \"project-{index}\"\nplane_project_id = {:?}\nrepo = {:?}\n\
                 work_item_prefix = {:?}\nbase_branch = \"main\"\n\
                 [projects.states]\nin_progress = \"In Progress\"\napproved = {:?}\nrejected = \"Rejected\"\n\
                 awaiting = \"In Review\"\ndone = {:?}\ncancelled = \"Cancelled\"\n\n",
                project.plane_project_id,
                project.repo,
                ["ET", "OT", "XT"][index % 3],
                project.approved,
                project.done
            ));
        }
        config::parse(&text, "orch.toml", dir.path(), &BTreeMap::new())
            .unwrap_or_else(|errors| panic!("the test config is valid: {errors}\n{text}"))
    }
}

/// `setting (kind)` of every problem, sorted, for comparisons.
fn settings_of(report: &OnlineReport) -> Vec<(String, ProblemKind)> {
    let mut settings: Vec<(String, ProblemKind)> = report
        .problems
        .iter()
        .map(|problem| (problem.setting.clone(), problem.kind))
        .collect();
    settings.sort();
    settings
}

fn assert_no_secret(report: &OnlineReport, secrets: &[&str]) {
    let lines: Vec<String> = report
        .ok
        .iter()
        .cloned()
        .chain(report.problems.iter().map(Problem::to_string))
        .collect();
    for line in &lines {
        for secret in secrets {
            assert!(!line.contains(secret), "a secret in {line:?}");
        }
    }
}

/// A loopback port nothing listens on.
async fn closed_port_url() -> String {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    format!("http://{addr}")
}

#[tokio::test]
async fn good_settings_give_one_ok_line_per_system_and_no_problem() {
    let systems = Systems::start().await;
    let report = check(&systems.settings().config(), fast()).await;
    assert_eq!(report.problems, Vec::new());
    assert_eq!(report.worst(), None);
    assert_eq!(report.ok.len(), 3, "{:?}", report.ok);
    assert!(report.ok[0].starts_with("plane ok: "), "{:?}", report.ok);
    assert!(
        report.ok[1].starts_with("gitea ok: ") && report.ok[1].ends_with("acme/widgets"),
        "{:?}",
        report.ok
    );
    assert!(
        report.ok[2].starts_with("telegram ok: bot @orch_sim_bot"),
        "{:?}",
        report.ok
    );
    assert!(
        report.ok[2].ends_with(&format!(
            "chat {TELEGRAM_CHAT} (private \"orch sim person\")"
        )),
        "{:?}",
        report.ok
    );
    assert_eq!(systems.telegram.get_me_calls(), 1);
    assert_eq!(systems.telegram.calls(), ["getMe", "getChat"]);
    assert!(
        systems.telegram.messages().is_empty(),
        "the check sends nothing"
    );
}

#[tokio::test]
async fn every_wrong_setting_is_reported_at_once_with_its_key() {
    let systems = Systems::start().await;
    let mut settings = systems.settings();
    settings.projects[0].approved = "Aproved";
    settings.projects[0].done = "Finished";
    settings.projects.push(ProjectSettings {
        plane_project_id: UNKNOWN_PROJECT.to_owned(),
        repo: "acme/no-such-repo".to_owned(),
        approved: "Approved",
        done: "Done",
    });
    settings.telegram = Some((
        systems.telegram.api_base(),
        "999:wrong-bot-token".to_owned(),
    ));
    let report = check(&settings.config(), fast()).await;

    let config = ProblemKind::Config;
    assert_eq!(
        settings_of(&report),
        vec![
            ("projects[0].states.approved".to_owned(), config),
            ("projects[0].states.done".to_owned(), config),
            ("projects[1].plane_project_id".to_owned(), config),
            ("projects[1].repo".to_owned(), config),
            ("telegram.bot_token".to_owned(), config),
        ],
        "{:#?}",
        report.problems
    );
    assert_eq!(report.worst(), Some(ProblemKind::Config));
    let approved = report
        .problems
        .iter()
        .find(|problem| problem.setting == "projects[0].states.approved")
        .expect("the approved state problem");
    assert!(
        approved.message.contains("project-0") && approved.message.contains("\"Aproved\""),
        "names the project key and the state: {approved}"
    );
    assert!(report.ok.is_empty(), "{:?}", report.ok);
    assert_no_secret(
        &report,
        &[
            systems.plane.api_token(),
            systems.gitea.token(),
            "wrong-bot-token",
        ],
    );
}

#[tokio::test]
async fn refused_tokens_are_reported_once_against_the_token_settings() {
    let systems = Systems::start().await;
    let mut settings = systems.settings();
    settings.plane_token = "plane-token-nobody-has".to_owned();
    settings.gitea_token = "gitea-token-nobody-has".to_owned();
    settings.projects.push(ProjectSettings {
        plane_project_id: systems.plane.add_project("OT"),
        repo: "acme/other".to_owned(),
        approved: "Approved",
        done: "Done",
    });
    let report = check(&settings.config(), fast()).await;
    assert_eq!(
        settings_of(&report),
        vec![
            ("gitea.token".to_owned(), ProblemKind::Config),
            ("plane.api_token".to_owned(), ProblemKind::Config),
        ],
        "{:#?}",
        report.problems
    );
    assert_eq!(report.ok.len(), 1, "telegram still passes: {:?}", report.ok);
    assert_no_secret(
        &report,
        &["plane-token-nobody-has", "gitea-token-nobody-has"],
    );
}

#[tokio::test]
async fn unreachable_systems_are_runtime_failures_naming_their_url_setting() {
    let systems = Systems::start().await;
    let mut settings = systems.settings();
    settings.plane_url = closed_port_url().await;
    settings.gitea_url = closed_port_url().await;
    settings.telegram = Some((closed_port_url().await, TELEGRAM_TOKEN.to_owned()));
    let report = check(&settings.config(), fast()).await;
    let unreachable = ProblemKind::Unreachable;
    assert_eq!(
        settings_of(&report),
        vec![
            ("gitea.base_url".to_owned(), unreachable),
            ("plane.base_url".to_owned(), unreachable),
            ("telegram.api_base".to_owned(), unreachable),
        ],
        "{:#?}",
        report.problems
    );
    assert_eq!(report.worst(), Some(ProblemKind::Unreachable));
    assert_no_secret(&report, &[TELEGRAM_TOKEN]);
}

#[tokio::test]
async fn a_wrong_setting_outranks_an_unreachable_system() {
    let systems = Systems::start().await;
    let mut settings = systems.settings();
    settings.gitea_url = closed_port_url().await;
    settings.projects[0].done = "Finished";
    let report = check(&settings.config(), fast()).await;
    assert_eq!(
        settings_of(&report),
        vec![
            ("gitea.base_url".to_owned(), ProblemKind::Unreachable),
            ("projects[0].states.done".to_owned(), ProblemKind::Config),
        ],
        "{:#?}",
        report.problems
    );
    assert_eq!(report.worst(), Some(ProblemKind::Config));
}

#[tokio::test]
async fn a_failing_telegram_is_unreachable_and_without_a_section_it_is_not_called() {
    let systems = Systems::start().await;
    systems
        .telegram
        .push_fault(orch_sim::telegram::TelegramFault::ServerError { status: 502 });
    let report = check(&systems.settings().config(), fast()).await;
    assert_eq!(
        settings_of(&report),
        vec![("telegram.api_base".to_owned(), ProblemKind::Unreachable)],
        "{:#?}",
        report.problems
    );

    let mut settings = systems.settings();
    settings.telegram = None;
    let calls_before = systems.telegram.calls().len();
    let report = check(&settings.config(), fast()).await;
    assert_eq!(report.worst(), None, "{:#?}", report.problems);
    assert!(
        report
            .ok
            .iter()
            .any(|line| line.starts_with("telegram off")),
        "{:?}",
        report.ok
    );
    assert_eq!(systems.telegram.calls().len(), calls_before);
}

/// The three systems, each behind an HTTPS front whose certificate a CA made for the test signed.
struct TlsSystems {
    systems: Systems,
    ca_dir: tempfile::TempDir,
    _fronts: Vec<TlsFront>,
    urls: [String; 3],
}

impl TlsSystems {
    async fn start() -> TlsSystems {
        let systems = Systems::start().await;
        let ca = TestCa::new().expect("a test CA");
        let ca_dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(ca_dir.path().join("ca.pem"), ca.ca_pem()).expect("ca file");
        let mut fronts = Vec::new();
        for upstream in [
            systems.plane.base_url(),
            systems.gitea.base_url(),
            systems.telegram.api_base(),
        ] {
            fronts.push(TlsFront::start(&upstream, &ca).await.expect("tls front"));
        }
        let urls = [
            fronts[0].base_url(),
            fronts[1].base_url(),
            fronts[2].base_url(),
        ];
        TlsSystems {
            systems,
            ca_dir,
            _fronts: fronts,
            urls,
        }
    }

    fn settings(&self, with_ca_file: bool) -> Settings {
        let mut settings = self.systems.settings();
        settings.plane_url = self.urls[0].clone();
        settings.gitea_url = self.urls[1].clone();
        settings.telegram = Some((self.urls[2].clone(), TELEGRAM_TOKEN.to_owned()));
        settings.ca_file = with_ca_file.then(|| self.ca_dir.path().join("ca.pem"));
        settings
    }
}

#[tokio::test]
async fn servers_signed_by_a_private_ca_are_reached_with_tls_ca_file_and_refused_without() {
    let tls = TlsSystems::start().await;

    let report = check(&tls.settings(true).config(), fast()).await;
    assert_eq!(report.problems, Vec::new());
    assert_eq!(report.ok.len(), 3, "{:?}", report.ok);

    let report = check(&tls.settings(false).config(), fast()).await;
    assert_eq!(
        settings_of(&report),
        vec![
            ("gitea.base_url".to_owned(), ProblemKind::Unreachable),
            ("plane.base_url".to_owned(), ProblemKind::Unreachable),
            ("telegram.api_base".to_owned(), ProblemKind::Unreachable),
        ],
        "{:#?}",
        report.problems
    );
    for problem in &report.problems {
        assert!(
            problem.message.contains("certificate") && problem.message.contains("tls.ca_file"),
            "a certificate error that names tls.ca_file: {problem}"
        );
    }
    assert_no_secret(&report, &[TELEGRAM_TOKEN]);
}

#[tokio::test]
async fn a_chat_the_bot_cannot_see_is_reported_against_telegram_chat_id() {
    let systems = Systems::start().await;
    let mut settings = systems.settings();
    settings.chat_id = "-100999".to_owned();
    let report = check(&settings.config(), fast()).await;
    assert_eq!(
        settings_of(&report),
        vec![("telegram.chat_id".to_owned(), ProblemKind::Config)],
        "{:#?}",
        report.problems
    );
    let message = &report.problems[0].message;
    assert!(
        message.contains("chat not found") && message.contains("add the bot @orch_sim_bot"),
        "{message}"
    );
    assert!(
        systems.telegram.messages().is_empty(),
        "the check sends nothing"
    );
}
