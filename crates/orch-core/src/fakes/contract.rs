//! The `Store` contract suite, run against `MemStore` and every real store.
