//! Tests of the suite runner: every case runs, and every failure is reported by name.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::fakes::contract::{run_suite, Case, CatchUnwind};

static RUNS: AtomicUsize = AtomicUsize::new(0);

const DEMO: &[Case<u32>] = &[
    case!(first_fails_with_its_message, |number| {
        RUNS.fetch_add(1, Ordering::SeqCst);
        assert_eq!(*number, 2, "the first case wants two");
    }),
    case!(second_passes, |number| {
        RUNS.fetch_add(1, Ordering::SeqCst);
        assert_eq!(*number, 1);
    }),
    case!(third_fails_after_an_await, |number| {
        RUNS.fetch_add(1, Ordering::SeqCst);
        std::future::ready(()).await;
        panic!("the third case fails on {number}");
    }),
];

fn same(number: &u32) -> &u32 {
    number
}

#[tokio::test]
async fn runner_runs_every_case_and_names_each_failure() {
    let cases: Vec<&Case<u32>> = DEMO.iter().collect();
    let mut made = Vec::new();
    let suite: Pin<Box<dyn Future<Output = ()> + '_>> = Box::pin(run_suite(
        "Demo",
        &cases,
        |name| {
            made.push(name);
            async { 1 }
        },
        same,
    ));
    let payload = CatchUnwind(suite).await.expect_err("two cases fail");
    let message = payload
        .downcast_ref::<String>()
        .expect("the report is a formatted message");
    assert_eq!(RUNS.load(Ordering::SeqCst), 3, "a failure stops no case");
    assert!(
        message.starts_with("2 of 3 Demo contract cases failed:"),
        "{message}"
    );
    assert!(
        message.contains(
            "first_fails_with_its_message: assertion `left == right` failed: \
             the first case wants two"
        ),
        "{message}"
    );
    assert!(
        message.contains("third_fails_after_an_await: the third case fails on 1"),
        "{message}"
    );
    assert!(!message.contains("second_passes"), "{message}");
    assert_eq!(
        made,
        [
            "first_fails_with_its_message",
            "second_passes",
            "third_fails_after_an_await"
        ],
        "each case gets a fresh subject made for it"
    );
}

fn names<S: ?Sized + 'static>(
    cases: impl IntoIterator<Item = &'static Case<S>>,
) -> Vec<&'static str> {
    cases.into_iter().map(|case| case.name).collect()
}

#[test]
fn case_names_are_unique_within_each_suite() {
    use super::{agent, forge, notifier, store, tracker, workspace};
    for (suite, mut names) in [
        ("Store", names(store::cases())),
        ("Tracker", names(tracker::CASES)),
        ("Forge", names(forge::CASES)),
        ("Workspace", names(workspace::CASES)),
        ("AgentRunner", names(agent::CASES)),
        ("Notifier", names(notifier::CASES)),
    ] {
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(
            names.len(),
            count,
            "two cases of the {suite} suite share a name"
        );
    }
}
