//! End-to-end tests of orch live in `e2e/`; this library holds what a test shares with a
//! benchmark: the crash driver of R1 (`crash`), which `cargo xtask bench crash` runs too.

#![forbid(unsafe_code)]

pub mod crash;
