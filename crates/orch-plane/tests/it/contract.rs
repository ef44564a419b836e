//! The `Tracker` contract suite of orch-core, run against `PlaneTracker` on `PlaneSim`.

use async_trait::async_trait;
use orch_core::fakes::contract::{self, TrackerFixture};
use orch_core::ids::{IssueId, ProjectId};
use orch_core::ports::Tracker;

use crate::{setup, Setup};

#[tokio::test]
async fn plane_tracker_keeps_the_tracker_contract() {
    contract::tracker(|_case| setup()).await;
}

#[async_trait]
impl TrackerFixture for Setup {
    fn tracker(&self) -> &dyn Tracker {
        &self.tracker
    }

    fn project(&self) -> ProjectId {
        self.project.clone()
    }

    fn unknown_issue(&self) -> IssueId {
        IssueId::new("0c4f1b9e-5d2a-4e7b-9f3c-000000000404").expect("valid id")
    }

    async fn create_item(&self, title: &str, state_name: &str) -> IssueId {
        let created = self
            .sim
            .create_item(self.project.as_str(), title, state_name)
            .await
            .expect("the person creates the item");
        IssueId::new(created.id).expect("sim ids are valid")
    }

    async fn person_comments(&self, issue: &IssueId, text: &str) {
        self.sim
            .add_comment(issue.as_str(), text)
            .await
            .expect("the person comments");
    }
}
