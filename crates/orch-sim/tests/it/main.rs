//! Integration tests of the simulators and the scripted agent, one module each.

mod agent;
