//! The `Store` contract suite of orch-core, run against `SqliteStore`.

use crate::support::temp_store;

#[tokio::test]
async fn sqlite_store_keeps_the_store_contract() {
    orch_core::fakes::contract::store(|_case| async { temp_store() }).await;
}
