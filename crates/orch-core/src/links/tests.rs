//! Tests of `WebLinks`.

use crate::ids::{IssueId, PrNumber, ProjectId, RepoSlug};
use crate::links::WebLinks;

#[test]
fn links_join_the_base_urls_with_or_without_a_trailing_slash() {
    let links = WebLinks {
        plane_base: "https://plane.example.com/".to_owned(),
        plane_workspace: "acme".to_owned(),
        gitea_base: "https://gitea.example.com/git".to_owned(),
    };
    let project = ProjectId::new("4f9a2c71").expect("project id");
    let issue = IssueId::new("a1e2f3a4").expect("issue id");
    assert_eq!(
        links.work_item(&project, &issue),
        "https://plane.example.com/acme/projects/4f9a2c71/issues/a1e2f3a4/"
    );
    let repo = RepoSlug::new("acme/shop").expect("repo");
    let number = PrNumber::new(7).expect("pr number");
    assert_eq!(
        links.pull_request(&repo, number),
        "https://gitea.example.com/git/acme/shop/pulls/7"
    );
}
