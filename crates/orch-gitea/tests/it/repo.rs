//! `GiteaForge::repository_exists`, the repository check of `orch check --online`.

use orch_core::ids::RepoSlug;
use orch_core::ports::ForgeError;
use orch_gitea::GiteaForge;

use crate::{fast_config, Fixture};

#[tokio::test]
async fn an_existing_repository_is_found_and_a_missing_one_is_not() {
    let fixture = Fixture::start().await;
    assert!(fixture
        .forge
        .repository_exists(&fixture.repo)
        .await
        .expect("gitea answers"));
    let missing = RepoSlug::new("acme/no-such-repo").expect("slug");
    assert!(!fixture
        .forge
        .repository_exists(&missing)
        .await
        .expect("gitea answers"));
}

#[tokio::test]
async fn a_refused_token_is_unauthorized_and_names_the_setting() {
    let fixture = Fixture::start().await;
    let forge = GiteaForge::new(fast_config(&fixture.sim.base_url(), "wrong-token"))
        .expect("forge is built");
    let err = forge
        .repository_exists(&fixture.repo)
        .await
        .expect_err("the token is refused");
    assert!(
        matches!(&err, ForgeError::Unauthorized(message) if message.contains("gitea.token")),
        "{err:?}"
    );
    assert!(!err.to_string().contains("wrong-token"), "{err}");
}

#[tokio::test]
async fn a_failing_server_is_unavailable_after_the_retries() {
    let fixture = Fixture::start().await;
    fixture.sim.fail_next_requests_with(503, 3);
    let err = fixture
        .forge
        .repository_exists(&fixture.repo)
        .await
        .expect_err("gitea keeps failing");
    assert!(matches!(err, ForgeError::Unavailable { .. }), "{err:?}");
    assert_eq!(fixture.forge.stats().calls, 3);
}
