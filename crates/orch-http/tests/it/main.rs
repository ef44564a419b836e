//! Integration tests of orch-http: a real server on 127.0.0.1:0 and a real HTTP client.

mod admin;
mod board;
mod concurrency;
mod ingress;
mod limits;
mod slow_clients;
mod status;
mod store_down;
mod support;
