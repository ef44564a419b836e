//! Behaving in-memory implementations of every port, the port contract suites, and the
//! deterministic simulation of the core built from them (`sim`).
//!
//! Fakes, not mocks: each one keeps state and enforces the same rules as the real adapter
//! (the `contract` suites run against both), so a test written against a fake means something.

pub mod agent;
pub mod clock;
pub mod contract;
pub mod forge;
pub mod notifier;
pub mod sim;
pub mod store;
pub mod tracker;
mod transcript;
pub mod workspace;
pub mod world;

pub use agent::{FakeAgentRunner, FakeStep};
pub use clock::FakeClock;
pub use forge::FakeForge;
pub use notifier::RecordingNotifier;
pub use tracker::FakeTracker;
pub use workspace::FakeWorkspace;
pub use world::World;

#[cfg(test)]
mod contract_tests;
