//! The board in a real browser: orch on the simulators with tasks in every column, headless
//! Chromium driven through chromedriver (WebDriver), a login, live updates and Retry.
//!
//! Slow (it runs agents and a browser): only with `RUN_SLOW_TESTS`. `.ci/run` installs
//! `chromium` and `chromium-driver` from Debian. The screenshot goes to
//! `target/board.png`, and also to `$ORCH_BOARD_SCREENSHOT` when set
//! (`cargo xtask screenshot` writes `docs/board.png` that way).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use orch_core::domain::{Stage, Task, TaskStatus};
use orch_core::ports::Store;
use orch_daemon::sandbox::{Sandbox, REPO};
use serde_json::json;
use tokio::process::{Child, Command};

use crate::harness::{sandbox, wait_for};

const TOKEN: &str = "board-e2e-admin-token";

/// ET-001 goes all the way; ET-002's analyst fails three times (blocked, then Retry makes
/// the fourth run work); ET-003 waits at the analysis gate, and once approved its developer
/// works for 8 s, so the board shows it in development (a quicker run can pass through that
/// column between two of the board's looks at the store); ET-004's developer keeps running;
/// ET-005 waits at the review gate; ET-006 stays blocked; ET-007 waits at the analysis gate
/// until the board's Cancel button cancels it.
const SCRIPT: &str = r#"{"default": {},
  "items": {
    "ET-002": {"analyst": {"fail_times": 3}},
    "ET-003": {"developer": {"run_for_ms": 8000}},
    "ET-004": {"developer": {"hang": true}},
    "ET-005": {},
    "ET-006": {"analyst": {"fail_times": 100}}
  }}"#;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// Where each item should be once the scene is set; a gate counts as open once orch has
/// moved the item to In Review (a verdict given before that would not answer it).
fn scene_is_set(item: &str, task: &Task, in_review: bool) -> bool {
    let waits_in = |stage: Stage| {
        task.stage == stage && task.status == TaskStatus::AwaitingVerdict && in_review
    };
    match item {
        "ET-001" => task.stage == Stage::Done,
        "ET-002" | "ET-006" => task.status.is_blocked(),
        "ET-003" | "ET-007" => waits_in(Stage::Analysis),
        "ET-004" => task.stage == Stage::Development,
        "ET-005" => waits_in(Stage::Review),
        _ => false,
    }
}

/// Whether the person approves `item`'s open gate now.
fn approves(item: &str, task: &Task) -> bool {
    match item {
        "ET-001" => true,
        "ET-004" | "ET-005" => task.stage == Stage::Analysis,
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_in_chromium_shows_every_column_updates_live_and_retries() {
    if std::env::var_os("RUN_SLOW_TESTS").is_none() {
        return;
    }
    let (mut sandbox, dir) = sandbox(SCRIPT).await;
    let env = BTreeMap::from([("ORCH_ADMIN_TOKEN".to_owned(), TOKEN.to_owned())]);
    sandbox.config =
        orch_daemon::config::load(&sandbox.config_path, &env).expect("config with a token");
    let daemon = sandbox.start_daemon(None).await.expect("daemon starts");
    let store = daemon.store();
    let mut items = Vec::new();
    for title in [
        "Export the trails as GPX",
        "Fix the <script> login",
        "Dark mode for the map",
        "Offline tiles",
        "Rate limit the API",
        "Import routes from Strava",
        "Weekly digest e-mail",
    ] {
        let (item, work_item) = sandbox.create_item(title).await.expect("item created");
        sandbox
            .move_item(&item, "In Progress")
            .await
            .expect("moved");
        items.push((item, work_item));
    }
    set_the_scene(&sandbox, store.as_ref(), &items).await;

    let driver = ChromeDriver::start(dir.path().join("chrome-profile")).await;
    let browser = driver.session().await;
    let base = format!("http://{}", daemon.addr());
    let result = drive(&browser, &base, &sandbox, store.as_ref(), &items).await;
    let _ = browser.close().await;
    drop(driver);
    daemon.shutdown().await;
    result.expect("the browser checks pass");
}

/// Plays the person until every item is where `scene_is_set` wants it.
async fn set_the_scene(sandbox: &Sandbox, store: &dyn Store, items: &[(String, String)]) {
    wait_for("the board's scene", || async {
        let mut ready = true;
        for (item, work_item) in items {
            let Some(task) = sandbox.task(store, item).await.expect("task read") else {
                ready = false;
                continue;
            };
            let in_review = sandbox
                .plane
                .item(item)
                .is_some_and(|sim_item| sim_item.state_name == "In Review");
            if scene_is_set(work_item, &task, in_review) {
                continue;
            }
            ready = false;
            if task.status == TaskStatus::AwaitingVerdict && in_review && approves(work_item, &task)
            {
                sandbox.move_item(item, "Approved").await.expect("approved");
            }
        }
        ready.then_some(())
    })
    .await;
}

async fn task_of(sandbox: &Sandbox, store: &dyn Store, item: &str) -> Task {
    sandbox
        .task(store, item)
        .await
        .expect("task read")
        .expect("the item has a task")
}

type Checked = Result<(), String>;

async fn drive(
    browser: &Client,
    base: &str,
    sandbox: &Sandbox,
    store: &dyn Store,
    items: &[(String, String)],
) -> Checked {
    let fail = |what: &str| {
        let what = what.to_owned();
        move |err: fantoccini::error::CmdError| format!("{what}: {err}")
    };
    // Without a session the board sends the browser to the login form.
    browser
        .goto(&format!("{base}/"))
        .await
        .map_err(fail("open /"))?;
    let url = browser.current_url().await.map_err(fail("url"))?;
    check(
        url.path() == "/login",
        format!("not sent to /login but {url}"),
    )?;
    let source = browser.source().await.map_err(fail("source"))?;
    check(
        !source.contains("ET-00"),
        "the login page shows a work item".to_owned(),
    )?;
    browser
        .find(Locator::Id("token"))
        .await
        .map_err(fail("token field"))?
        .send_keys(TOKEN)
        .await
        .map_err(fail("type the token"))?;
    browser
        .find(Locator::Css("form[action='/login'] button"))
        .await
        .map_err(fail("login button"))?
        .click()
        .await
        .map_err(fail("log in"))?;
    wait_in_browser(browser, "#column-analysis").await?;

    // Each card in its column, with its links.
    let columns = [
        ("ET-001", "finished"),
        ("ET-002", "analysis"),
        ("ET-003", "analysis"),
        ("ET-004", "development"),
        ("ET-005", "review"),
        ("ET-006", "analysis"),
        ("ET-007", "analysis"),
    ];
    let plane = sandbox.config.plane.base_url.as_str();
    let slug = &sandbox.config.plane.workspace_slug;
    let gitea = sandbox.config.gitea.base_url.as_str();
    let pulls = sandbox.gitea.pulls(REPO);
    for ((item, work_item), (expected_item, column)) in items.iter().zip(columns) {
        check(
            work_item == expected_item,
            format!("{work_item} != {expected_item}"),
        )?;
        let card = format!("#column-{column} article[data-task='{work_item}']");
        wait_in_browser(browser, &card).await?;
        let task = task_of(sandbox, store, item).await;
        let plane_link = attribute(browser, &format!("{card} a.item"), "href").await?;
        let expected = format!("{plane}/{slug}/projects/{}/issues/{item}/", sandbox.project);
        check(
            plane_link == expected,
            format!("{work_item}: Plane link {plane_link}"),
        )?;
        check(
            sandbox.plane.item(item).is_some(),
            format!("{work_item}: Plane has no item {item}"),
        )?;
        if let Some(pr) = task.pr {
            let pr_link = attribute(browser, &format!("{card} a.pr"), "href").await?;
            let expected = format!("{gitea}/{REPO}/pulls/{}", pr.get());
            check(
                pr_link == expected,
                format!("{work_item}: PR link {pr_link}"),
            )?;
            check(
                pulls.iter().any(|pull| pull.number == pr.get()),
                format!("{work_item}: Gitea has no PR {pr}"),
            )?;
        }
    }
    let developer = text_when_there(browser, "article[data-task='ET-004'] .agent").await?;
    check(
        developer.starts_with("developer running for"),
        format!("ET-004 agent: {developer:?}"),
    )?;
    let blocked = text(browser, "article[data-task='ET-002'] .reason").await?;
    check(
        !blocked.is_empty(),
        "ET-002 shows no blocked reason".to_owned(),
    )?;
    let title = text(browser, "article[data-task='ET-002'] a.title").await?;
    check(
        title == "Fix the <script> login",
        format!("escaped title shows as {title:?}"),
    )?;

    // The task link works.
    browser
        .find(Locator::Css("article[data-task='ET-003'] a.title"))
        .await
        .map_err(fail("ET-003 title"))?
        .click()
        .await
        .map_err(fail("open ET-003"))?;
    wait_in_browser(browser, "#retry").await?;
    let heading = text(browser, "title").await.unwrap_or_default();
    let page = browser.source().await.map_err(fail("source"))?;
    check(
        page.contains("Dark mode for the map") && page.contains("Agent runs"),
        format!("ET-003's page ({heading}) lacks its facts"),
    )?;
    // The analyst's run, with the end of its log read from orch's logs directory.
    wait_in_browser(browser, ".run.outcome-succeeded details pre.log").await?;

    // An event moves a card without a reload: a marker set in the page survives the move.
    browser
        .goto(&format!("{base}/"))
        .await
        .map_err(fail("board"))?;
    wait_in_browser(browser, "#live-state.on").await?;
    browser
        .execute("window.orchNoReload = 'still here'; return null;", vec![])
        .await
        .map_err(fail("mark the page"))?;
    let (et3, _) = &items[2];
    sandbox
        .move_item(et3, "Approved")
        .await
        .map_err(|err| err.to_string())?;
    wait_in_browser(browser, "#column-development article[data-task='ET-003']").await?;
    let marker = browser
        .execute("return window.orchNoReload || null;", vec![])
        .await
        .map_err(fail("read the marker"))?;
    check(
        marker == json!("still here"),
        format!("the page reloaded: {marker}"),
    )?;

    // Retry on the blocked task, from its page.
    let (et2, _) = &items[1];
    let blocked_task = task_of(sandbox, store, et2).await;
    browser
        .goto(&format!("{base}/tasks/{}", blocked_task.id.0))
        .await
        .map_err(fail("ET-002 page"))?;
    browser
        .find(Locator::Id("retry"))
        .await
        .map_err(fail("retry button"))?
        .click()
        .await
        .map_err(fail("retry"))?;
    let note = text_when_there(browser, ".banner.note").await?;
    check(
        note.starts_with("retry of ET-002"),
        format!("retry said {note:?}"),
    )?;
    wait_for("ET-002 to be unblocked by Retry", || async {
        let task = task_of(sandbox, store, et2).await;
        (task.status == TaskStatus::AwaitingVerdict).then_some(())
    })
    .await;

    // Cancel, from the task's page, ends it in the last column.
    let (et7, _) = &items[6];
    let to_cancel = task_of(sandbox, store, et7).await;
    browser
        .goto(&format!("{base}/tasks/{}", to_cancel.id.0))
        .await
        .map_err(fail("ET-007 page"))?;
    browser
        .find(Locator::Id("cancel"))
        .await
        .map_err(fail("cancel button"))?
        .click()
        .await
        .map_err(fail("cancel"))?;
    let note = text_when_there(browser, ".banner.note").await?;
    check(
        note.starts_with("cancel of ET-007"),
        format!("cancel said {note:?}"),
    )?;

    // The board with every column filled, for people to look at.
    browser
        .goto(&format!("{base}/"))
        .await
        .map_err(fail("board"))?;
    for card in [
        "#column-analysis article[data-task='ET-002'][data-status='awaiting_verdict']",
        "#column-finished article[data-task='ET-007'][data-status='cancelled']",
    ] {
        wait_in_browser(browser, card).await?;
    }
    let png = browser.screenshot().await.map_err(fail("screenshot"))?;
    for path in screenshot_paths() {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|err| err.to_string())?;
        }
        std::fs::write(&path, &png).map_err(|err| format!("{}: {err}", path.display()))?;
    }
    Ok(())
}

fn check(condition: bool, message: String) -> Checked {
    if condition {
        Ok(())
    } else {
        Err(message)
    }
}

/// `target/board.png`, and `$ORCH_BOARD_SCREENSHOT` when set.
fn screenshot_paths() -> Vec<PathBuf> {
    let exe = std::env::current_exe().expect("the test binary has a path");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("the test binary lives in target/<profile>/deps")
        .to_path_buf();
    let mut paths = vec![target.join("board.png")];
    if let Some(extra) = std::env::var_os("ORCH_BOARD_SCREENSHOT") {
        paths.push(PathBuf::from(extra));
    }
    paths
}

/// How long the browser may take to show something.
const BROWSER_WAIT: Duration = Duration::from_secs(20);

async fn wait_in_browser(browser: &Client, css: &str) -> Checked {
    let deadline = tokio::time::Instant::now() + BROWSER_WAIT;
    loop {
        if browser.find(Locator::Css(css)).await.is_ok() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            let page = browser.source().await.unwrap_or_default();
            return Err(format!("no {css} after {BROWSER_WAIT:?}: {page}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn text(browser: &Client, css: &str) -> Result<String, String> {
    let element = browser
        .find(Locator::Css(css))
        .await
        .map_err(|err| format!("{css}: {err}"))?;
    element.text().await.map_err(|err| format!("{css}: {err}"))
}

async fn text_when_there(browser: &Client, css: &str) -> Result<String, String> {
    wait_in_browser(browser, css).await?;
    text(browser, css).await
}

async fn attribute(browser: &Client, css: &str, name: &str) -> Result<String, String> {
    let element = browser
        .find(Locator::Css(css))
        .await
        .map_err(|err| format!("{css}: {err}"))?;
    element
        .attr(name)
        .await
        .map_err(|err| format!("{css}: {err}"))?
        .ok_or_else(|| format!("{css} has no {name}"))
}

/// chromedriver on a free loopback port; killed when dropped.
struct ChromeDriver {
    child: Child,
    port: u16,
    profile: PathBuf,
}

impl ChromeDriver {
    async fn start(profile: PathBuf) -> ChromeDriver {
        assert!(
            std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists(),
            "the board test needs {CHROMIUM} and {CHROMEDRIVER}: apt-get install chromium chromium-driver (.ci/run does)"
        );
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        ChromeDriver {
            child,
            port,
            profile,
        }
    }

    /// A headless Chromium session, retried until chromedriver listens.
    async fn session(&self) -> Client {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1500,600",
                    format!("--user-data-dir={}", self.profile.display()),
                ],
            }),
        );
        let url = format!("http://127.0.0.1:{}", self.port);
        wait_for("a chromedriver session", || {
            let capabilities = capabilities.clone();
            let url = url.clone();
            async move {
                ClientBuilder::new(HttpConnector::new())
                    .capabilities(capabilities)
                    .connect(&url)
                    .await
                    .ok()
            }
        })
        .await
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
