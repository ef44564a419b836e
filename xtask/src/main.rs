//! orch's automation: `cargo xtask ci`, `tidy`, `codegen`, `bench`.

fn main() {}
