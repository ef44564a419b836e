//! Integration tests of `SqliteStore` on temp-file databases: the Store contract suite,
//! races, leases across restarts, migrations, the writer lock and crash safety.

mod backup;
mod contract;
mod crash;
mod inbox;
mod leases;
mod lock;
mod migrations;
mod races;
mod retention;
mod support;
mod upgrades;
