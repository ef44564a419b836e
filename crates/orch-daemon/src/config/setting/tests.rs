//! Each setting type decodes, checks and names its values.

use std::net::SocketAddr;

use orch_gitea::MergeStyle;
use toml::Value;

use crate::config::schema::KeyType;
use crate::config::setting::{Ranged, Setting};
use crate::config::{SandboxMode, WorkerConfig};

#[test]
fn ranged_integers_carry_their_range_in_the_type() {
    type Concurrency = Ranged<1, 64>;
    assert_eq!(Concurrency::doc_type(), "integer (1 to 64)");
    assert_eq!(Concurrency::try_from(64).map(Ranged::get), Ok(64));
    for refused in [0, 65, -1] {
        assert_eq!(
            Concurrency::try_from(refused),
            Err(format!("expected an integer from 1 to 64, got {refused}"))
        );
    }
    assert_eq!(
        Concurrency::from_toml(&Value::String("two".to_owned())),
        Err("expected an integer from 1 to 64, got \"two\"".to_owned())
    );
    assert_eq!(
        Concurrency::from_toml(&Value::Float(1.5)),
        Err("expected an integer from 1 to 64, got 1.5".to_owned())
    );
    assert_eq!(Concurrency::from_env(" 8 ").map(Ranged::get), Ok(8));
    assert_eq!(
        Concurrency::from_env("eight"),
        Err("expected an integer from 1 to 64, got \"eight\"".to_owned())
    );
}

#[test]
fn booleans_from_the_environment_take_the_usual_words() {
    for (text, expected) in [("true", true), ("ON", true), ("1", true), ("no", false)] {
        assert_eq!(bool::from_env(text), Ok(expected), "{text}");
    }
    assert_eq!(
        bool::from_env("maybe"),
        Err("expected true or false, got \"maybe\"".to_owned())
    );
    assert_eq!(
        bool::from_toml(&Value::Array(Vec::new())),
        Err("expected true or false, got a list".to_owned())
    );
}

#[test]
fn words_are_checked_after_they_decode_as_strings() {
    assert_eq!(
        MergeStyle::from_toml(&Value::String("rebase-merge".to_owned())),
        Ok(MergeStyle::RebaseMerge)
    );
    assert_eq!(
        MergeStyle::from_toml(&Value::Integer(1)),
        Err("expected a string, got 1".to_owned())
    );
    assert_eq!(SandboxMode::from_env(" none "), Ok(SandboxMode::None));
    assert_eq!(
        SocketAddr::from_env("localhost"),
        Err("expected an IP address and port such as 127.0.0.1:8787, got \"localhost\"".to_owned())
    );
}

#[test]
fn a_declared_key_names_its_setting_type() {
    let key = WorkerConfig::SECTION
        .key("concurrency")
        .expect("worker.concurrency is declared");
    assert!(key.ty.is::<Ranged<1, 64>>());
    assert!(!key.ty.is::<Ranged<1, 100>>());
    assert_eq!(key.ty.text(), "integer (1 to 64)");
    assert!(matches!(
        WorkerConfig::SECTION.key("max_attempts").map(|key| key.ty),
        Some(KeyType::Setting { .. })
    ));
}
