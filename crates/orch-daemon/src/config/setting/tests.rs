//! Each setting type decodes, checks and names its values.

use std::net::SocketAddr;
use std::path::PathBuf;

use orch_core::secret::Secret;
use orch_gitea::MergeStyle;
use toml::Value;

use crate::config::schema::KeyType;
use crate::config::setting::{
    Argv, List, PassEnvName, PathOrEmpty, Ranged, Refused, SecretFilePath, SecretList, Setting,
};
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
        Err(Refused::from(
            "expected an integer from 1 to 64, got \"two\""
        ))
    );
    assert_eq!(
        Concurrency::from_toml(&Value::Float(1.5)),
        Err(Refused::from("expected an integer from 1 to 64, got 1.5"))
    );
    assert_eq!(Concurrency::from_env(" 8 ").map(Ranged::get), Ok(8));
    assert_eq!(
        Concurrency::from_env("eight"),
        Err(Refused::from(
            "expected an integer from 1 to 64, got \"eight\""
        ))
    );
}

#[test]
fn booleans_from_the_environment_take_the_usual_words() {
    for (text, expected) in [("true", true), ("ON", true), ("1", true), ("no", false)] {
        assert_eq!(bool::from_env(text), Ok(expected), "{text}");
    }
    assert_eq!(
        bool::from_env("maybe"),
        Err(Refused::from("expected true or false, got \"maybe\""))
    );
    assert_eq!(
        bool::from_toml(&Value::Array(Vec::new())),
        Err(Refused::from("expected true or false, got a list"))
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
        Err(Refused::from("expected a string, got 1"))
    );
    assert_eq!(SandboxMode::from_env(" none "), Ok(SandboxMode::None));
    assert_eq!(
        SocketAddr::from_env("localhost"),
        Err(Refused::from(
            "expected an IP address and port such as 127.0.0.1:8787, got \"localhost\""
        ))
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

fn strings(items: &[&str]) -> Value {
    Value::Array(
        items
            .iter()
            .map(|item| Value::String((*item).to_owned()))
            .collect(),
    )
}

#[test]
fn a_list_names_the_element_each_refusal_is_about() {
    assert_eq!(List::<PassEnvName>::doc_type(), "list of strings");
    assert_eq!(
        List::<PassEnvName>::from_toml(&strings(&["OK", "1BAD", "ORCH_X"])).map(|_| ()),
        Err(Refused(vec![
            (
                "[1]".to_owned(),
                "expected a variable name of letters, digits and '_', got \"1BAD\"".to_owned()
            ),
            (
                "[2]".to_owned(),
                "ORCH_X: names starting with ORCH_ are orch's own (its secrets and the agent contract) and never reach an agent".to_owned()
            ),
        ]))
    );
    // An element that is not a string is the one refusal: the others are not checked.
    let mixed = Value::Array(vec![
        Value::String("1BAD".to_owned()),
        Value::Integer(7),
        Value::Boolean(true),
    ]);
    assert_eq!(
        List::<PassEnvName>::from_toml(&mixed).map(|_| ()),
        Err(Refused(vec![(
            "[1]".to_owned(),
            "expected a string, got 7".to_owned()
        )]))
    );
    assert_eq!(
        List::<String>::from_toml(&Value::Integer(1)),
        Err(Refused::from("expected a list of strings, got 1"))
    );
    assert_eq!(
        List::<String>::from_toml(&strings(&[])),
        Ok(List(Vec::new()))
    );
    assert_eq!(
        List::<String>::from_env("a,b"),
        Err(Refused::from("expected a list of strings, got \"a,b\""))
    );
}

#[test]
fn a_command_needs_its_program_and_no_empty_argument() {
    assert_eq!(
        Argv::from_toml(&strings(&["claude", "-p"])),
        Ok(Argv(vec!["claude".to_owned(), "-p".to_owned()]))
    );
    assert_eq!(
        Argv::from_toml(&strings(&[])),
        Err(Refused::from("expected at least the program to run"))
    );
    // The first refused argument is the one error.
    let mixed = Value::Array(vec![Value::String(String::new()), Value::Integer(5)]);
    assert_eq!(
        Argv::from_toml(&mixed),
        Err(Refused(vec![(
            "[0]".to_owned(),
            "must not be empty".to_owned()
        )]))
    );
    assert_eq!(
        Argv::from_toml(&Value::Array(vec![
            Value::String("claude".to_owned()),
            Value::Integer(5)
        ])),
        Err(Refused(vec![(
            "[1]".to_owned(),
            "expected a string, got 5".to_owned()
        )]))
    );
    assert_eq!(
        Argv::from_toml(&strings(&["claude", ""])),
        Err(Refused(vec![(
            "[1]".to_owned(),
            "must not be empty".to_owned()
        )]))
    );
}

#[test]
fn an_empty_path_is_not_given_and_a_secret_file_is_never_shown() {
    let text = |text: &str| Value::String(text.to_owned());
    assert_eq!(PathOrEmpty::from_toml(&text(" ")), Ok(PathOrEmpty(None)));
    assert_eq!(
        PathOrEmpty::from_toml(&text("ca.pem")),
        Ok(PathOrEmpty(Some(PathBuf::from("ca.pem"))))
    );
    assert_eq!(
        PathOrEmpty::from_toml(&Value::Integer(3)),
        Err(Refused::from("expected a string, got 3"))
    );
    assert_eq!(
        SecretFilePath::from_toml(&text("")),
        Ok(SecretFilePath(None))
    );
    assert_eq!(
        SecretFilePath::from_toml(&Value::Array(vec![text("s3cret")])),
        Err(Refused::from("expected the path of a file"))
    );
}

#[test]
fn secrets_decode_without_ever_showing_a_value() {
    let exposed = |list: SecretList| {
        list.0
            .iter()
            .map(|secret| secret.expose().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        SecretList::from_env(" a, ,b ").map(exposed),
        Ok(vec!["a".to_owned(), "b".to_owned()])
    );
    let given = Value::Array(vec![
        Value::String("s1".to_owned()),
        Value::String(String::new()),
    ]);
    assert_eq!(
        SecretList::from_toml(&given).map(exposed),
        Ok(vec!["s1".to_owned()])
    );
    let refused = |value: Value| SecretList::from_toml(&value).map(|_| ());
    assert_eq!(
        refused(Value::String("s3cret".to_owned())),
        Err(Refused::from("expected a list of strings"))
    );
    assert_eq!(
        refused(Value::Array(vec![
            Value::String("s3cret".to_owned()),
            Value::Integer(1)
        ])),
        Err(Refused::from("expected a list of strings"))
    );
    assert_eq!(
        Secret::from_toml(&Value::Integer(42)).map(|_| ()),
        Err(Refused::from("expected a string"))
    );
    assert_eq!(SecretList::doc_type(), "list of secret strings");
}
