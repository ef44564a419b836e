//! Identifier formatting and validation (SPEC §1.3).

use crate::ids::{slug, BranchName, CommitSha, PrNumber, RepoSlug, WorkItemId};

fn branch(prefix: &str, sequence: u32, title: &str) -> String {
    BranchName::for_work_item(
        &WorkItemId::new(prefix, sequence).expect("valid prefix"),
        title,
    )
    .to_string()
}

#[test]
fn work_item_ids_are_padded_to_three_digits_and_not_cut() {
    let check = |sequence, expected: &str| {
        assert_eq!(
            WorkItemId::new("ET", sequence).expect("valid").to_string(),
            expected
        );
    };
    check(1, "ET-001");
    check(42, "ET-042");
    check(999, "ET-999");
    check(1234, "ET-1234");
    assert_eq!(
        WorkItemId::parse("ET-1234").expect("parses").sequence(),
        1234
    );
    assert!(WorkItemId::new("-X", 1).is_err());
    assert!(WorkItemId::new("", 1).is_err());
}

#[test]
fn branch_names_follow_the_slug_rule_of_spec_1_3() {
    let cases = [
        (
            "Fix login redirect loop",
            "feature/ET-001-fix-login-redirect-loop",
        ),
        ("  --Hello,   World!!  ", "feature/ET-001-hello-world"),
        ("Ünïcode títle ✓", "feature/ET-001-n-code-t-tle"),
        ("!!!", "feature/ET-001-task"),
        ("", "feature/ET-001-task"),
        ("../../etc/passwd", "feature/ET-001-etc-passwd"),
        (
            "A very long title that goes on and on beyond forty characters",
            "feature/ET-001-a-very-long-title-that-goes-on-and-on-be",
        ),
        (
            "ends at the cut with a dash-here-xxxxxxxxxx",
            "feature/ET-001-ends-at-the-cut-with-a-dash-here-xxxxxxx",
        ),
    ];
    for (title, expected) in cases {
        assert_eq!(branch("ET", 1, title), expected, "title {title:?}");
        assert!(BranchName::new(expected).is_ok());
    }
    assert_eq!(
        branch("ET", 1, "Same"),
        branch("ET", 1, "Same"),
        "deterministic"
    );
}

#[test]
fn slug_never_starts_or_ends_with_a_dash_even_after_the_cut() {
    let title = format!("{}-tail", "a".repeat(39));
    let slug = slug(&title);
    assert_eq!(slug, "a".repeat(39));
    assert!(!slug.starts_with('-') && !slug.ends_with('-'));
}

#[test]
fn branch_names_git_could_misread_are_refused() {
    for bad in [
        "-rf",
        "--upload-pack=x",
        "a..b",
        "a b",
        "a//b",
        "a/",
        "a.lock",
        "a~1",
        "a:b",
        "/abs",
        "x/.hidden",
        "a@{1}",
    ] {
        assert!(BranchName::new(bad).is_err(), "{bad:?} must be refused");
    }
    assert!(BranchName::new("feature/ET-001-ok").is_ok());
}

#[test]
fn outside_identifiers_are_validated() {
    assert!(RepoSlug::new("acme/widgets").is_ok());
    let err = RepoSlug::new("widgets").expect_err("no owner");
    assert_eq!(
        err.to_string(),
        "invalid repository: expected \"owner/name\" (got \"widgets\")"
    );
    assert!(RepoSlug::new("acme/../x").is_err());
    assert!(PrNumber::new(0).is_err());
    assert!(CommitSha::new("abc").is_err());
    assert_eq!(
        CommitSha::new("A".repeat(40)).expect("valid").as_str(),
        "a".repeat(40)
    );
}
