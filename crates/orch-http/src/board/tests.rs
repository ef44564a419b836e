//! Rendering tests of the board's templates and its small parsers.

use askama::Template;
use orch_core::domain::{
    Action, Agent, HistoryEntry, Job, JobKind, JobStatus, Service, Stage, Task, TaskStatus,
};
use orch_core::ids::{
    BranchName, CommitSha, IssueId, JobId, PrNumber, ProjectId, RepoSlug, TaskId, WorkItemId,
};
use orch_core::links::WebLinks;
use orch_core::ports::{QueueSnapshot, RunningJobInfo, ServiceWait};
use orch_core::time::Timestamp;

use crate::board::events::event;
use crate::board::session::{self, Origin};
use crate::board::view::{
    self, agent_run, build_live, duration_text, tail_text, timeline_entry, Ci, TaskPage,
};
use crate::board::{form_value, percent_decode, percent_encode};
use crate::state::{BoardSettings, Secret};

const AT: Timestamp = Timestamp::from_millis(1_767_225_600_000);

const HOSTILE: &str = "<script>alert(\"x\")</script> & 'quotes'";

fn settings() -> BoardSettings {
    BoardSettings {
        links: Some(WebLinks {
            plane_base: "http://plane.test".to_owned(),
            plane_workspace: "acme".to_owned(),
            gitea_base: "http://gitea.test".to_owned(),
        }),
        logs_dir: None,
    }
}

fn task(id: i64, stage: Stage, status: TaskStatus, title: &str) -> Task {
    Task {
        id: TaskId(id),
        version: 1,
        issue: IssueId::new(format!("issue-{id}")).expect("valid issue id"),
        project: ProjectId::new("proj-1").expect("valid project id"),
        work_item: WorkItemId::new("ET", id as u32).expect("valid work item id"),
        title: title.to_owned(),
        description: String::new(),
        repo: RepoSlug::new("acme/widgets").expect("valid repo"),
        base_branch: BranchName::new("main").expect("valid branch"),
        branch: BranchName::new(format!("orch/et-{id}")).expect("valid branch"),
        stage,
        status,
        head_sha: None,
        pr: None,
        fix_rounds: 0,
        review_rounds: 0,
        last_fix_sha: None,
        sent_back_sha: None,
        gate_opened_at: None,
        tracker_state: None,
        tracker_seen_at: None,
        verdicts_after: None,
        feedback_after: None,
        created_at: AT,
        updated_at: AT,
    }
}

fn with_pr(mut task: Task, number: u64, sha: &str) -> Task {
    task.pr = Some(PrNumber::new(number).expect("valid pr"));
    task.head_sha = Some(CommitSha::new(sha).expect("valid sha"));
    task
}

fn sha(digit: char) -> String {
    std::iter::repeat_n(digit, 40).collect()
}

/// Every stage, and every status inside the stages that have statuses.
fn every_kind_of_task() -> Vec<Task> {
    let blocked = TaskStatus::Blocked {
        reason: "CI failed 3 times".to_owned(),
    };
    let mut failing = with_pr(
        task(4, Stage::Development, blocked.clone(), "fix the login"),
        12,
        &sha('a'),
    );
    failing.last_fix_sha = failing.head_sha.clone();
    failing.fix_rounds = 3;
    vec![
        task(
            1,
            Stage::Analysis,
            TaskStatus::Working,
            "analyse the export",
        ),
        task(2, Stage::Analysis, TaskStatus::AwaitingVerdict, "judge me"),
        with_pr(
            task(3, Stage::Development, TaskStatus::Working, "build it"),
            11,
            &sha('b'),
        ),
        failing,
        with_pr(
            task(5, Stage::Review, TaskStatus::AwaitingVerdict, "review it"),
            13,
            &sha('c'),
        ),
        with_pr(
            task(6, Stage::Done, TaskStatus::Working, "shipped"),
            14,
            &sha('d'),
        ),
        task(7, Stage::Cancelled, TaskStatus::Working, "dropped"),
        task(8, Stage::Analysis, blocked, HOSTILE),
    ]
}

fn snapshot() -> QueueSnapshot {
    QueueSnapshot {
        running: vec![RunningJobInfo {
            id: JobId(40),
            task: TaskId(1),
            work_item: WorkItemId::new("ET", 1).expect("valid work item id"),
            kind: JobKind::Agent(Agent::Analyst),
            started_at: Timestamp::from_millis(AT.as_millis() - 192_000),
        }],
        ..QueueSnapshot::default()
    }
}

/// The card of `work_item` in the rendered `html`, from its `<article` to its `</article>`.
fn card_html<'h>(html: &'h str, work_item: &str) -> &'h str {
    let marker = format!("data-task=\"{work_item}\"");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no card {work_item} in {html}"));
    let start = html[..at].rfind("<article").expect("a card opens");
    let end = at + html[at..].find("</article>").expect("a card closes");
    &html[start..end]
}

/// The column (`key`) the card of `work_item` is in.
fn column_of(html: &str, work_item: &str) -> String {
    let marker = format!("data-task=\"{work_item}\"");
    let at = html.find(&marker).expect("the card is there");
    let column = html[..at]
        .rfind("data-column=\"")
        .expect("a card is inside a column");
    let rest = &html[column + "data-column=\"".len()..];
    rest[..rest.find('"').expect("the attribute closes")].to_owned()
}

#[test]
fn board_puts_each_task_in_its_stage_column() {
    let live = build_live(&every_kind_of_task(), &snapshot(), &settings(), AT);
    let html = live.render().expect("renders");
    let expected = [
        ("ET-001", "analysis"),
        ("ET-002", "analysis"),
        ("ET-003", "development"),
        ("ET-004", "development"),
        ("ET-005", "review"),
        ("ET-006", "finished"),
        ("ET-007", "finished"),
        ("ET-008", "analysis"),
    ];
    let found: Vec<(&str, String)> = expected
        .iter()
        .map(|(work_item, _)| (*work_item, column_of(&html, work_item)))
        .collect();
    let expected: Vec<(&str, String)> = expected
        .iter()
        .map(|(work_item, column)| (*work_item, (*column).to_owned()))
        .collect();
    assert_eq!(found, expected);
}

#[test]
fn cards_show_status_links_ci_rounds_and_the_running_agent() {
    let live = build_live(&every_kind_of_task(), &snapshot(), &settings(), AT);
    let html = live.render().expect("renders");
    let check = |work_item: &str, wanted: &[&str]| {
        let card = card_html(&html, work_item);
        for piece in wanted {
            assert!(card.contains(piece), "{work_item}: no {piece:?} in {card}");
        }
    };
    check(
        "ET-001",
        &[
            "data-status=\"working\"",
            "href=\"http://plane.test/acme/projects/proj-1/issues/issue-1/\"",
            "href=\"/tasks/1\"",
            "no PR",
            "analyst running for 3m 12s",
        ],
    );
    check(
        "ET-002",
        &["data-status=\"awaiting_verdict\"", "awaiting verdict"],
    );
    check(
        "ET-003",
        &[
            "href=\"http://gitea.test/acme/widgets/pulls/11\"",
            "PR #11",
            "CI pending",
        ],
    );
    check(
        "ET-004",
        &[
            "data-status=\"blocked\"",
            "blocked</span>: <span class=\"reason\">CI failed 3 times</span>",
            "CI failed",
            "fix 3 · review 0",
        ],
    );
    check("ET-005", &["CI passed", "PR #13"]);
    check("ET-006", &["data-status=\"done\"", "merged"]);
    check("ET-007", &["data-status=\"cancelled\"", "cancelled"]);
}

#[test]
fn hostile_titles_are_escaped_everywhere() {
    let tasks = every_kind_of_task();
    let live = build_live(&tasks, &snapshot(), &settings(), AT);
    let html = live.render().expect("renders");
    assert!(!html.contains("<script>"), "{html}");
    assert!(
        html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"),
        "{html}"
    );
    let mut hostile = tasks[7].clone();
    hostile.description = HOSTILE.to_owned();
    let page = TaskPage {
        card: view::card(&hostile, None, &settings(), AT),
        description: hostile.description.clone(),
        repo: hostile.repo.to_string(),
        branch: hostile.branch.as_str().to_owned(),
        head_sha: None,
        said: Some(HOSTILE.to_owned()),
        timeline: vec![timeline_entry(&HistoryEntry {
            task: hostile.id,
            at: AT,
            stage: Stage::Analysis,
            status: "blocked".to_owned(),
            message: HOSTILE.to_owned(),
        })],
        runs: vec![agent_run(
            &job(JobStatus::Failed, Some(HOSTILE)),
            AT,
            Some(format!("log line\n{HOSTILE}\n")),
        )],
    };
    let html = page.render().expect("renders");
    assert!(!html.contains("<script>"), "{html}");
    // Seven places show it (head title, card, note, description, error, log, history),
    // each with an opening and a closing tag.
    assert_eq!(html.matches("script&#62;").count(), 14, "{html}");
}

fn job(status: JobStatus, error: Option<&str>) -> Job {
    Job {
        id: JobId(9),
        task: TaskId(8),
        repo: RepoSlug::new("acme/widgets").expect("valid repo"),
        action: Action::RunAgent {
            agent: Agent::Developer,
            feedback: None,
        },
        key: None,
        stage: Stage::Development,
        status,
        attempts: 1,
        waits: 0,
        waiting: None,
        not_before: AT,
        lease: None,
        process: None,
        last_error: error.map(str::to_owned),
        output: None,
        handled: true,
        created_at: AT,
        updated_at: Timestamp::from_millis(AT.as_millis() + 75_000),
    }
}

#[test]
fn task_page_shows_runs_with_duration_outcome_and_log_tail() {
    let task = with_pr(
        task(3, Stage::Development, TaskStatus::Working, "build it"),
        11,
        &sha('b'),
    );
    let page = TaskPage {
        card: view::card(&task, None, &settings(), AT),
        description: "the description".to_owned(),
        repo: task.repo.to_string(),
        branch: task.branch.as_str().to_owned(),
        head_sha: task.head_sha.as_ref().map(|sha| sha.as_str().to_owned()),
        said: None,
        timeline: vec![timeline_entry(&HistoryEntry {
            task: task.id,
            at: AT,
            stage: Stage::Development,
            status: "working".to_owned(),
            message: "branch pushed, pull request open".to_owned(),
        })],
        runs: vec![agent_run(
            &job(JobStatus::Succeeded, None),
            AT,
            Some("compiling\ndone\n".to_owned()),
        )],
    };
    let html = page.render().expect("renders");
    for piece in [
        "#9 developer: succeeded",
        "took 1m 15s",
        "<pre class=\"log\">compiling\ndone\n</pre>",
        "2026-01-01 00:00:00 UTC",
        "branch pushed, pull request open",
        "action=\"/tasks/3/retry\"",
        "action=\"/tasks/3/cancel\"",
        "href=\"http://gitea.test/acme/widgets/pulls/11\"",
    ] {
        assert!(html.contains(piece), "no {piece:?} in {html}");
    }
}

#[test]
fn a_running_job_has_run_until_now() {
    let now = Timestamp::from_millis(AT.as_millis() + 3_600_000 + 120_000);
    let run = agent_run(&job(JobStatus::Running, None), now, None);
    assert_eq!((run.outcome, run.duration.as_str()), ("running", "1h 2m"));
}

#[test]
fn links_are_left_out_without_the_services_addresses() {
    let task = with_pr(
        task(3, Stage::Development, TaskStatus::Working, "build it"),
        11,
        &sha('b'),
    );
    let card = view::card(&task, None, &BoardSettings::default(), AT);
    assert_eq!(
        (card.plane_url, card.pr_url, card.pr),
        (None, None, Some(11))
    );
}

#[test]
fn degraded_services_get_a_banner_only_after_the_grace() {
    let wait = |since_ms: i64| QueueSnapshot {
        waiting: vec![ServiceWait {
            service: Service::Gitea,
            since: Timestamp::from_millis(AT.as_millis() - since_ms),
            jobs: 2,
            oldest_task: TaskId(1),
            last_error: Some("gitea answered 502".to_owned()),
        }],
        ..QueueSnapshot::default()
    };
    let fresh = build_live(&[], &wait(60_000), &settings(), AT);
    assert!(fresh.degraded.is_empty());
    let out = build_live(&[], &wait(600_000), &settings(), AT);
    assert_eq!(
        out.degraded,
        vec!["gitea is failing: 2 job(s) waiting for 10m 0s (last error: gitea answered 502)"]
    );
    let html = out.render().expect("renders");
    assert!(html.contains("class=\"banner degraded\""), "{html}");
}

#[test]
fn ci_follows_the_stage_and_the_fix_rounds() {
    let analysis = task(1, Stage::Analysis, TaskStatus::Working, "t");
    let waiting = with_pr(
        task(2, Stage::Development, TaskStatus::Working, "t"),
        1,
        &sha('a'),
    );
    let mut failed = waiting.clone();
    failed.last_fix_sha = failed.head_sha.clone();
    let mut fixed = failed.clone();
    fixed.head_sha = Some(CommitSha::new(sha('b')).expect("valid sha"));
    let review = with_pr(
        task(3, Stage::Review, TaskStatus::Working, "t"),
        1,
        &sha('a'),
    );
    let found: Vec<Ci> = [&analysis, &waiting, &failed, &fixed, &review]
        .into_iter()
        .map(Ci::of)
        .collect();
    assert_eq!(
        found,
        vec![Ci::None, Ci::Waiting, Ci::Failed, Ci::Waiting, Ci::Passed]
    );
}

#[test]
fn durations_read_like_people_write_them() {
    let found: Vec<String> = [0, 59, 60, 192, 3600, 3720, 90_000]
        .into_iter()
        .map(|secs| duration_text(std::time::Duration::from_secs(secs)))
        .collect();
    assert_eq!(
        found,
        ["0s", "59s", "1m 0s", "3m 12s", "1h 0m", "1h 2m", "1d 1h"]
    );
}

#[test]
fn log_tails_drop_a_cut_first_line_and_survive_bad_utf8() {
    assert_eq!(tail_text(b"rtial\nwhole line\n", true), "whole line\n");
    assert_eq!(tail_text(b"first\nsecond\n", false), "first\nsecond\n");
    assert_eq!(tail_text(b"\xff ok\n", false), "\u{fffd} ok\n");
}

#[test]
fn session_cookies_are_signed_with_the_token_and_expire() {
    let token = Secret::new("s3cret");
    let value = session::issue(&token, AT);
    assert!(session::is_valid(&token, &value, AT));
    let later =
        Timestamp::from_millis(AT.as_millis() + session::SESSION_LIFETIME.as_millis() as i64);
    assert!(!session::is_valid(&token, &value, later), "expired");
    assert!(
        !session::is_valid(&Secret::new("rotated"), &value, AT),
        "other token"
    );
    let forged = value.replace("v1.", "v1.9").to_owned();
    for bad in [
        forged.as_str(),
        "",
        "v1",
        "v1.1.zz",
        "v2.1.00",
        "v1.x.00",
        &format!("{value}.x"),
    ] {
        assert!(!session::is_valid(&token, bad, AT), "{bad:?} accepted");
    }
}

#[test]
fn the_session_cookie_is_found_among_others_and_set_strictly() {
    let mut headers = hyper::HeaderMap::new();
    headers.insert(
        hyper::header::COOKIE,
        "a=1; orch_session=v1.5.ab ; b=2".parse().expect("valid"),
    );
    assert_eq!(session::from_headers(&headers), Some("v1.5.ab"));
    let set = session::set_cookie("v1.5.ab", session::Scheme::Http);
    let set = set.to_str().expect("ascii");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(!set.contains("Secure"), "{set}");
    let mut https = hyper::HeaderMap::new();
    https.insert(
        hyper::header::ORIGIN,
        "https://orch.example".parse().expect("valid"),
    );
    let secure = session::set_cookie("v1.5.ab", session::scheme(&https));
    assert!(
        secure.to_str().expect("ascii").ends_with("; Secure"),
        "{secure:?}"
    );
    assert_eq!(session::from_headers(&hyper::HeaderMap::new()), None);
}

#[test]
fn origin_must_name_the_host_the_request_was_sent_to() {
    let check = |origin: Option<&str>, host: Option<&str>| {
        let mut headers = hyper::HeaderMap::new();
        if let Some(origin) = origin {
            headers.insert(hyper::header::ORIGIN, origin.parse().expect("valid"));
        }
        if let Some(host) = host {
            headers.insert(hyper::header::HOST, host.parse().expect("valid"));
        }
        session::origin(&headers)
    };
    assert_eq!(check(None, Some("orch:8787")), Origin::Absent);
    assert_eq!(
        check(Some("http://orch:8787"), Some("orch:8787")),
        Origin::Same
    );
    assert_eq!(
        check(Some("https://ORCH:8787"), Some("orch:8787")),
        Origin::Same
    );
    assert_eq!(
        check(Some("http://evil.test"), Some("orch:8787")),
        Origin::Foreign
    );
    assert_eq!(check(Some("null"), Some("orch:8787")), Origin::Foreign);
    assert_eq!(check(Some("http://orch:8787"), None), Origin::Foreign);
    assert_eq!(
        check(Some("http://orch:8787.evil"), Some("orch:8787")),
        Origin::Foreign
    );
}

#[test]
fn form_values_are_percent_decoded() {
    assert_eq!(
        form_value("a=1&token=ab%2Bc+d%zz%4", "token"),
        Some("ab+c d%zz%4".to_owned())
    );
    assert_eq!(form_value("a=1", "token"), None);
    assert_eq!(percent_decode("%e2%9c%93%+1"), "✓% 1");
    assert_eq!(
        percent_encode("retry of ET-1: a/b?"),
        "retry%20of%20ET-1%3A%20a%2Fb%3F"
    );
    assert_eq!(percent_decode(&percent_encode("<&> ✓")), "<&> ✓");
}

#[test]
fn events_carry_every_line_as_data_and_never_a_bare_carriage_return() {
    assert_eq!(
        event("board", "<p>one</p>\n<p>two\rthree</p>"),
        "event: board\ndata: <p>one</p>\ndata: <p>two\ndata: three</p>\n\n"
    );
}
