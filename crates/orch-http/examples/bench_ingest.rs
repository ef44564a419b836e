//! Ingest benchmark (being written).

fn main() {}
