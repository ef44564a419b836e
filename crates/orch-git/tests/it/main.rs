//! Integration tests of orch-git against other parts of the system.

mod gitea_sim;
