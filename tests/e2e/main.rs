//! End-to-end tests: the pipeline driven from outside.
