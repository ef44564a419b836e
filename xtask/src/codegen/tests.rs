//! Tests of the ADR index generation, and that the committed index is fresh.

use std::fs;

use crate::codegen::{adr_index, adr_status, adr_title, render_adr_index, AdrSummary, PREAMBLE};

#[test]
fn committed_adr_index_is_up_to_date() {
    let root = crate::project_root();
    let fresh = adr_index(&root).expect("the ADRs can be read");
    let committed = fs::read_to_string(root.join("docs/adr/README.md")).unwrap_or_default();
    assert!(
        committed == fresh,
        "docs/adr/README.md is stale: run `cargo xtask codegen` and commit"
    );
}

#[test]
fn status_is_read_from_plain_bold_list_and_heading_forms() {
    assert_eq!(
        adr_status("# T\n\nStatus: Accepted\n").as_deref(),
        Some("Accepted")
    );
    assert_eq!(
        adr_status("# T\n\n**Status:** Superseded by 0002\n").as_deref(),
        Some("Superseded by 0002")
    );
    assert_eq!(
        adr_status("# T\n\n- Status: Proposed\n").as_deref(),
        Some("Proposed")
    );
    assert_eq!(
        adr_status("# T\n\n## Status\n\nAccepted\n\n## Context\n").as_deref(),
        Some("Accepted")
    );
    assert_eq!(adr_status("# T\n\nThe status quo is fine.\n"), None);
}

#[test]
fn title_drops_the_adr_number_prefix() {
    assert_eq!(
        adr_title("0001", "# 0001. Ports are async traits\n").as_deref(),
        Some("Ports are async traits")
    );
    assert_eq!(
        adr_title("0002", "# ADR 0002: One event loop\n").as_deref(),
        Some("One event loop")
    );
    assert_eq!(
        adr_title("0003", "intro\n# Plain title\n").as_deref(),
        Some("Plain title")
    );
}

#[test]
fn index_starts_with_the_preamble_and_lists_each_record() {
    let index = render_adr_index(&[AdrSummary {
        number: "0001".to_owned(),
        file: "0001-async-ports.md".to_owned(),
        title: "Ports are async traits".to_owned(),
        status: "Accepted".to_owned(),
    }]);
    assert!(index.starts_with(PREAMBLE));
    assert!(
        index.ends_with("| [0001](0001-async-ports.md) | Ports are async traits | Accepted |\n")
    );
}
