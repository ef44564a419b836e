//! A tiny deterministic executor: the fakes never wait on anything real, so a future of the
//! core completes in one poll; an agent that hangs is a future polled again later.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Runs `future` to its end in one poll. Everything the simulation awaits is built from the
/// in-memory fakes, which never return `Pending`; one that did would be a bug in a fake.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match poll_once(future.as_mut()) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a simulated port call waited on something: the fakes never wait"),
    }
}

/// Polls `future` once with a waker that does nothing (the scheduler polls again when it
/// decides the awaited thing has happened).
pub(crate) fn poll_once<F: Future + ?Sized>(future: Pin<&mut F>) -> Poll<F::Output> {
    let mut context = Context::from_waker(Waker::noop());
    future.poll(&mut context)
}
