//! Tests of the simulation command's cargo invocation.

use crate::sim::{cargo_args, Profile};

#[test]
fn the_runner_gets_the_arguments_after_a_double_dash() {
    assert_eq!(
        cargo_args(Profile::Release, &["--seed", "7"]).join(" "),
        "run -p orch-core --features fakes --example sim --release -- --seed 7"
    );
    assert_eq!(
        cargo_args(Profile::Dev, &["--seeds", "2000"]).join(" "),
        "run -p orch-core --features fakes --example sim -- --seeds 2000"
    );
}
