//! Integration tests of orch-git against other parts of the system.

mod contract;
mod gitea_sim;
