//! End-to-end tests of orch live in `e2e/`; this library is empty on purpose.

#![forbid(unsafe_code)]
