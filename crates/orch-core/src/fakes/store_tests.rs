//! The `Store` contract suite run against `MemStore`.

use crate::fakes::store::MemStore;

crate::store_contract_tests!(async { Box::new(MemStore::new()) });
