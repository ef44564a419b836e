//! The simulator's CI and deliveries, verified and parsed the way orch will.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use orch_core::domain::CiState;
use orch_core::event::{Event, Parsed};
use orch_core::ports::Forge;
use orch_gitea::webhook::parse;
use orch_sim::server::{empty, sync_handler, Reply, SimServer};
use orch_sim::webhook::hmac_sha256_hex;

use crate::{wait_for, Fixture, REPO};

const SECRET: &str = "s3cr3t-for-tests";

/// (event type, signature header, body) of every delivery received.
type Received = Arc<Mutex<Vec<(String, String, bytes::Bytes)>>>;

async fn receiver() -> (SimServer, Received) {
    let received: Received = Arc::default();
    let sink = received.clone();
    let server = SimServer::start(sync_handler(move |request| {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let entry = (
            header("x-gitea-event-type"),
            header("x-gitea-signature"),
            request.body().clone(),
        );
        sink.lock().expect("lock").push(entry);
        Reply::Respond(empty(200))
    }))
    .await
    .expect("receiver starts");
    (server, received)
}

/// The parsed events of every delivery whose signature verifies.
fn verified_events(received: &Received) -> Vec<Event> {
    received
        .lock()
        .expect("lock")
        .iter()
        .filter(|(_, signature, body)| *signature == hmac_sha256_hex(SECRET.as_bytes(), body))
        .filter_map(|(event_type, _, body)| match parse(event_type, body) {
            Parsed::Event(event) => Some(event),
            Parsed::Ignored(_) => None,
        })
        .collect()
}

#[tokio::test]
async fn the_ci_posts_statuses_and_a_status_webhook_whose_signature_verifies() {
    let fixture = Fixture::start().await;
    let (hook, received) = receiver().await;
    fixture
        .sim
        .set_webhook(&format!("{}/webhooks/gitea", hook.base_url()), SECRET);
    fixture.sim.set_ci_delay(Duration::from_millis(1));
    fixture.sim.set_ci_enabled(true);
    let sha = fixture
        .push_branch("feature/ET-030-ci", "CI_FAIL", "please fail\n")
        .await;

    let failure = Event::CiStatusReported {
        repo: fixture.repo.clone(),
        sha: sha.clone(),
        state: CiState::Failure,
    };
    wait_for(|| verified_events(&received).contains(&failure).then_some(())).await;
    let events = verified_events(&received);
    let pending = Event::CiStatusReported {
        repo: fixture.repo.clone(),
        sha: sha.clone(),
        state: CiState::Pending,
    };
    assert!(events.contains(&pending), "{events:?}");
    assert!(events
        .iter()
        .any(|event| matches!(event, Event::BranchPushed { head_sha, .. } if *head_sha == sha)));
    let combined = fixture
        .forge
        .combined_status(&fixture.repo, &sha)
        .await
        .expect("read");
    assert_eq!(combined.state, CiState::Failure);
    assert_eq!(combined.checks.len(), 1);

    // F-3 from the sha alone: the open PR whose head is the status's sha.
    let pull = fixture
        .forge
        .ensure_pull_request(&fixture.new_pull("feature/ET-030-ci"))
        .await
        .expect("opened");
    let found = fixture
        .forge
        .open_pull_request_for_sha(&fixture.repo, &sha)
        .await
        .expect("listed");
    assert_eq!(found.map(|found| found.number), Some(pull.number));
}

#[tokio::test]
async fn a_merge_by_a_person_is_delivered_as_a_merged_close() {
    let fixture = Fixture::start().await;
    let (hook, received) = receiver().await;
    fixture.sim.set_webhook(&hook.base_url(), SECRET);
    fixture
        .push_branch("feature/ET-031-person", "p.txt", "p\n")
        .await;
    let pull = fixture
        .forge
        .ensure_pull_request(&fixture.new_pull("feature/ET-031-person"))
        .await
        .expect("opened");
    fixture
        .sim
        .merge_as_person(REPO, pull.number.get())
        .await
        .expect("merged");
    let closed = Event::PullRequestClosed {
        repo: fixture.repo.clone(),
        number: pull.number,
        merged: true,
    };
    wait_for(|| verified_events(&received).contains(&closed).then_some(())).await;
}
