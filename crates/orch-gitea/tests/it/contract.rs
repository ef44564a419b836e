//! The `Forge` contract suite of orch-core, run against `GiteaForge` on `GiteaSim`.

use async_trait::async_trait;
use orch_core::domain::CiState;
use orch_core::fakes::contract::{self, ForgeFixture};
use orch_core::ids::{CommitSha, PrNumber, RepoSlug};
use orch_core::ports::Forge;
use orch_sim::gitea::Mutation;

use crate::{Fixture, REPO};

#[tokio::test]
async fn gitea_forge_keeps_the_forge_contract() {
    contract::forge(|_case| Fixture::start()).await;
}

#[async_trait]
impl ForgeFixture for Fixture {
    fn forge(&self) -> &dyn Forge {
        &self.forge
    }

    fn repo(&self) -> RepoSlug {
        self.repo.clone()
    }

    async fn push(&self, branch: &str, file: &str, content: &str) -> CommitSha {
        self.clone
            .git(&["fetch", "--quiet", "origin"])
            .await
            .expect("fetch");
        let remote = format!("origin/{branch}");
        let start = match self
            .clone
            .git(&["rev-parse", "--verify", "--quiet", &remote])
            .await
        {
            Ok(_) => remote,
            Err(_) => "origin/main".to_owned(),
        };
        self.push_from(&start, branch, file, content).await
    }

    async fn report_ci(&self, sha: &CommitSha, state: CiState) {
        let word = match state {
            CiState::Pending => "pending",
            CiState::Success => "success",
            CiState::Failure => "failure",
        };
        self.sim
            .post_status(REPO, sha.as_str(), word, "ci/build")
            .await
            .expect("CI posts its status");
    }

    async fn posted(&self, number: PrNumber) -> (usize, usize) {
        let mutations = self.sim.mutations();
        let count = |wanted: fn(&Mutation) -> Option<u64>| {
            mutations
                .iter()
                .filter(|mutation| wanted(mutation) == Some(number.get()))
                .count()
        };
        (
            count(|mutation| match mutation {
                Mutation::ReviewPosted { number, .. } => Some(*number),
                _ => None,
            }),
            count(|mutation| match mutation {
                Mutation::CommentPosted { number, .. } => Some(*number),
                _ => None,
            }),
        )
    }
}
