//! `MemStore`: the `Store` port in memory, with the same rules as the SQLite store.
