//! Unit tests of signature verification.
