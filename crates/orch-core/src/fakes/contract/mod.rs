//! The port contract suites: one suite per port, run against the fake and every real adapter.
//!
//! A suite is a table of `Case`s, each a behaviour sentence and the check of it, declared once
//! with `case!` in the file of its part of the contract. One test per implementation runs the
//! whole table on a fresh subject per case (`store(make)`, `tracker(make)`, `notifier(make)`, …) and reports
//! every failing case by name, the way ripgrep runs one suite over every implementation.
//! Cases take the port (`Store`) or a fixture (`TrackerFixture`, …) that gives the port plus
//! what a person or the outside world does to it, which only the implementation knows how to do.

use std::any::Any;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

pub mod agent;
pub mod forge;
pub mod notifier;
pub mod store;
pub mod tracker;
pub mod workspace;

pub use agent::{agent_runner, AgentBehaviour, AgentFixture};
pub use forge::{forge, ForgeFixture};
pub use notifier::{notifier, Delivered, NotifierFixture};
pub use store::store;
pub use tracker::{tracker, TrackerFixture};
pub use workspace::{workspace, WorkspaceFixture};

/// What running one case is: a future borrowing the subject.
pub type CaseFuture<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

/// One case of a suite over subjects of type `S`: it panics when the behaviour is broken.
pub struct Case<S: ?Sized + 'static> {
    /// The behaviour, as a sentence in snake case.
    pub name: &'static str,
    pub run: for<'a> fn(&'a S) -> CaseFuture<'a>,
}

/// Declares a case: `case!(behaviour_sentence, |subject| { checks })`, an element of a
/// `&[Case<S>]` table whose type gives the subject's type.
macro_rules! case {
    ($name:ident, |$subject:ident| $body:block) => {
        $crate::fakes::contract::Case {
            name: stringify!($name),
            run: |$subject| Box::pin(async move $body),
        }
    };
}

pub(crate) use case;

/// Runs every case on a fresh subject from `make` (given the case's name) and panics with the
/// name and message of every case that failed, after running them all.
pub async fn run_suite<S, F, Fut>(
    suite: &str,
    cases: &[&Case<S>],
    mut make: impl FnMut(&'static str) -> Fut,
    view: impl Fn(&F) -> &S,
) where
    S: ?Sized + 'static,
    Fut: Future<Output = F>,
{
    let mut failures = Vec::new();
    for case in cases {
        let subject = make(case.name).await;
        let result = CatchUnwind(Box::pin((case.run)(view(&subject)))).await;
        if let Err(payload) = result {
            failures.push(format!("{}: {}", case.name, panic_message(&*payload)));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} {suite} contract cases failed:\n  {}",
        failures.len(),
        cases.len(),
        failures.join("\n  ")
    );
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "panicked with a non-text payload".to_owned()
    }
}

/// Resolves to `Err(payload)` when polling the inner future panics.
struct CatchUnwind<'a>(CaseFuture<'a>);

impl Future for CatchUnwind<'_> {
    type Output = Result<(), Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(())) => Poll::Ready(Ok(())),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

/// Polls every future until all are done, so port calls overlap (no runtime needed).
pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pending: Vec<Option<Pin<Box<F>>>> = futures
        .into_iter()
        .map(|future| Some(Box::pin(future)))
        .collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all_done = true;
        for (slot, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    Poll::Pending => all_done = false,
                }
            }
        }
        if all_done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|output| output.expect("every future finished"))
        .collect()
}

#[cfg(test)]
mod tests;
