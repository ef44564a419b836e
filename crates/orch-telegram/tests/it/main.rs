//! Integration tests of orch-telegram.
