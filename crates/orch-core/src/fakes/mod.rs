//! Behaving in-memory implementations of every port, and the port contract suites.
//!
//! Fakes, not mocks: each one keeps state and enforces the same rules as the real adapter
//! (the `contract` suites run against both), so a test written against a fake means something.

pub mod contract;
pub mod store;
