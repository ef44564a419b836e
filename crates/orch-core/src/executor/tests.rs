//! The executor's at-least-once notifications: a message sent again after a crash says so.

use std::time::Duration;

use super::MAY_REPEAT;
use crate::domain::{ClaimedJob, JobKind, StateRole};
use crate::fakes::World;
use crate::ids::BootId;
use crate::ports::{ClaimKinds, ClaimRequest, Store};

async fn claim(world: &World, boot: &str) -> Option<ClaimedJob> {
    let request = ClaimRequest {
        owner: BootId::new(boot).expect("boot id"),
        kinds: ClaimKinds::Actions,
        now: world.clock_now(),
        lease: Duration::from_secs(60),
    };
    world.store.claim_next(&request).await.expect("claim")
}

/// Runs queued actions to their end until a notification is claimed, which is returned.
async fn claim_a_notification(world: &World, boot: &str) -> ClaimedJob {
    loop {
        let claimed = claim(world, boot).await.expect("a notification is queued");
        if claimed.job.kind() == JobKind::Notify {
            return claimed;
        }
        let task = world.store.task(claimed.job.task).await.expect("task");
        let result = world
            .executor
            .run_action(&claimed, task.as_ref().expect("the job's task"))
            .await;
        world
            .store
            .finish_job(claimed.job.id, &claimed.attempt, result, world.clock_now())
            .await
            .expect("finished");
    }
}

#[tokio::test]
async fn a_notification_sent_again_after_a_crash_says_it_may_repeat_and_the_first_does_not() {
    let world = World::new();
    let item = world.add_item(1, "Told twice");
    world
        .move_item(&item, StateRole::InProgress)
        .await
        .expect("handled");
    world
        .run_jobs_of(&[ClaimKinds::Agents { per_repo_limit: 1 }])
        .await;
    let first = claim_a_notification(&world, "boot-1").await;
    assert_eq!(first.job.attempts, 1);
    let task = world.task(&item).await;
    let sent = world.executor.run_action(&first, &task).await;
    assert!(sent.is_end(), "{sent:?}");
    let messages = world.messages();
    assert_eq!(messages.len(), 1);
    assert!(!messages[0].contains(MAY_REPEAT), "{messages:?}");

    // orch dies before recording the delivery: the next boot reclaims the lease and runs
    // the job again, with the earlier claim counted.
    let reclaimed = world
        .store
        .reclaim_leases(&BootId::new("boot-2").expect("boot id"), world.clock_now())
        .await
        .expect("reclaimed");
    assert_eq!(reclaimed.len(), 1);
    let again = claim_a_notification(&world, "boot-2").await;
    assert_eq!(again.job.id, first.job.id);
    assert_eq!(again.job.attempts, 2);
    let sent = world.executor.run_action(&again, &task).await;
    assert!(sent.is_end(), "{sent:?}");
    let messages = world.messages();
    assert_eq!(
        messages,
        vec![messages[0].clone(), format!("{} {MAY_REPEAT}", messages[0])]
    );
}

#[tokio::test]
async fn a_notification_delayed_by_an_outage_is_not_called_a_repeat() {
    let world = World::new();
    let item = world.add_item(1, "Told late");
    world
        .move_item(&item, StateRole::InProgress)
        .await
        .expect("handled");
    world
        .run_jobs_of(&[ClaimKinds::Agents { per_repo_limit: 1 }])
        .await;
    world.notifier.set_down(true);
    let down = claim_a_notification(&world, "boot-1").await;
    let task = world.task(&item).await;
    let waited = world.executor.run_action(&down, &task).await;
    world
        .store
        .finish_job(down.job.id, &down.attempt, waited, world.clock_now())
        .await
        .expect("finished");
    assert!(world.messages().is_empty());

    // The outage's attempt did not count: Telegram refused it, nothing went out.
    world.notifier.set_down(false);
    world.clock.advance(Duration::from_secs(301));
    let up = claim_a_notification(&world, "boot-1").await;
    assert_eq!(up.job.id, down.job.id);
    assert_eq!(up.job.attempts, 1);
    let sent = world.executor.run_action(&up, &task).await;
    assert!(sent.is_end(), "{sent:?}");
    let messages = world.messages();
    assert_eq!(messages.len(), 1);
    assert!(!messages[0].contains(MAY_REPEAT), "{messages:?}");
}
