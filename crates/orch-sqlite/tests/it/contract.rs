//! The `Store` contract suite of orch-core, run against `SqliteStore`.

use crate::support::temp_store;

orch_core::store_contract_tests!(async { temp_store() });
