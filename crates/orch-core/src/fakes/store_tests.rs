//! The `Store` contract suite run against `MemStore`.

use crate::fakes::contract;
use crate::fakes::store::MemStore;

#[tokio::test]
async fn mem_store_keeps_the_store_contract() {
    contract::store(|_case| async { Box::new(MemStore::new()) }).await;
}
