//! Unit tests of the status API's documents.
