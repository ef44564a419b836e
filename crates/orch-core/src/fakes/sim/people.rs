//! The simulated people: one per work item, acting at random times on what Plane, Gitea and
//! Telegram show them.
//!
//! In the chaos phase a person starts the item, gives verdicts at the gates (a rejection
//! always comes with a comment, written before the move), and now and then does something
//! else: cancels, moves the item back, pushes to the task branch, merges or closes the PR in
//! Gitea (after merging it themselves they are done with the item), edits the title, merges
//! other work into the base so the task branch conflicts, or gives a verdict when no gate
//! is open. In the quiet phase a
//! person only approves what orch says is ready. Plane stamps their changes with its own
//! clock (orch's plus the seed's skew); Plane's and Gitea's webhooks for them go out lost,
//! late or twice as the seed says.

use crate::config::ProjectConfig;
use crate::domain::StateRole;
use crate::event::{Event, Parsed};
use crate::fakes::sim::faults::{PlaneWrite, Writer};
use crate::fakes::sim::scheduler::{state_name, Phase, Sim};
use crate::fakes::FakeTracker;
use crate::ids::{CommitSha, IssueId, WorkItemId};
use crate::ports::{PrState, PullRequest, Source, WorkItem};
use crate::time::Timestamp;

/// One work item's person.
#[derive(Debug, Clone)]
pub(crate) struct Person {
    pub(crate) issue: IssueId,
    pub(crate) work_item: WorkItemId,
    pub(crate) started: bool,
    /// Cancelled the item: they are done with it.
    pub(crate) gone: bool,
    /// Notifications read so far (an index into the ledger's notifications).
    pub(crate) read: usize,
    /// orch said the item is ready for a verdict since the person's last verdict.
    pub(crate) ready: bool,
    /// orch said the item is blocked since the person's last verdict.
    pub(crate) blocked: bool,
    pub(crate) comments: u32,
}

/// A person's move whose every webhook was lost: the reconciler must find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LostMove {
    pub(crate) person: usize,
    pub(crate) at: Timestamp,
    pub(crate) role: StateRole,
}

/// What a person does now and then, besides their gate decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Whim {
    Cancel,
    Backlog,
    InProgress,
    Push,
    Merge,
    ClosePr,
    EditTitle,
    /// Someone merges other work into the base: the task branch now conflicts with it.
    BaseMoves,
    Approve,
    Reject,
}

impl Person {
    pub(crate) fn new(item: &WorkItem, project: &ProjectConfig) -> Person {
        Person {
            issue: item.id.clone(),
            work_item: WorkItemId::new(&project.work_item_prefix, item.sequence_id)
                .expect("valid prefix"),
            started: false,
            gone: false,
            read: 0,
            ready: false,
            blocked: false,
            comments: 0,
        }
    }

    /// Whether a notification is about this person's item.
    fn concerns(&self, text: &str) -> bool {
        let id = self.work_item.to_string();
        text.strip_prefix(&id)
            .is_some_and(|rest| rest.starts_with([' ', ':']))
            || text.contains(&format!(" {id} "))
    }
}

impl Sim {
    /// A person looks at Plane, Gitea and Telegram, and maybe acts.
    pub(crate) fn person_looks(&mut self, index: usize) {
        self.read_notifications(index);
        let person = self.people[index].clone();
        if person.gone {
            return;
        }
        let Some(item) = self.tracker.item(&person.issue) else {
            return;
        };
        let role = self.role_of(&item);
        match self.phase {
            Phase::Quiet => {
                let wants = role == Some(StateRole::Awaiting) || person.ready;
                if wants && role != Some(StateRole::Approved) {
                    self.verdict(index, StateRole::Approved);
                }
            }
            Phase::Chaos => {
                if !person.started {
                    if self.rng.chance(0.85) {
                        self.people[index].started = true;
                        self.person_moves(index, StateRole::InProgress);
                    }
                    return;
                }
                if role == Some(StateRole::Awaiting) || person.ready {
                    match self.rng.pick(&[(0, 65), (1, 25), (2, 10)]) {
                        0 => self.verdict(index, StateRole::Approved),
                        1 => self.verdict(index, StateRole::Rejected),
                        _ => {}
                    }
                    return;
                }
                if person.blocked {
                    match self.rng.pick(&[(0, 50), (1, 15), (2, 35)]) {
                        0 => self.verdict(index, StateRole::Rejected),
                        1 => self.whim(index, Whim::Cancel),
                        _ => self.people[index].blocked = false,
                    }
                    return;
                }
                if self.rng.chance(0.12) {
                    let whim = self.rng.pick(&[
                        (Whim::Cancel, 3),
                        (Whim::Backlog, 3),
                        (Whim::InProgress, 2),
                        (Whim::Push, 4),
                        (Whim::Merge, 2),
                        (Whim::ClosePr, 2),
                        (Whim::EditTitle, 3),
                        (Whim::BaseMoves, 2),
                        (Whim::Approve, 1),
                        (Whim::Reject, 1),
                    ]);
                    self.whim(index, whim);
                }
            }
        }
    }

    fn read_notifications(&mut self, index: usize) {
        let texts: Vec<String> = {
            let ledger = self.shared.lock();
            ledger.notifications[self.people[index].read..]
                .iter()
                .map(|(_, text)| text.clone())
                .collect()
        };
        let person = &mut self.people[index];
        person.read += texts.len();
        for text in texts {
            if !person.concerns(&text) {
                continue;
            }
            if text.contains("is ready") {
                person.ready = true;
            }
            if text.contains("blocked") {
                person.blocked = true;
            }
        }
    }

    fn role_of(&self, item: &WorkItem) -> Option<StateRole> {
        [
            StateRole::InProgress,
            StateRole::Approved,
            StateRole::Rejected,
            StateRole::Awaiting,
            StateRole::Done,
            StateRole::Cancelled,
        ]
        .into_iter()
        .find(|role| {
            FakeTracker::state_id_for(&self.project.plane_project_id, state_name(*role))
                == item.state
        })
    }

    /// A verdict: a rejection's comment first, then the move.
    fn verdict(&mut self, index: usize, role: StateRole) {
        if role == StateRole::Rejected {
            self.people[index].comments += 1;
            let text = format!("Please change thing {}", self.people[index].comments);
            let issue = self.people[index].issue.clone();
            let at = self.tracker.plane_now();
            self.tracker
                .add_human_comment(&issue, &self.person_user, &text, at);
            self.note(format!("person {}: comments {text:?}", index + 1));
            self.emit(
                Source::Plane,
                Parsed::Event(Event::CommentAdded {
                    project: self.project.plane_project_id.clone(),
                    issue,
                    author: Some(self.person_user.clone()),
                }),
            );
        }
        let person = &mut self.people[index];
        person.ready = false;
        person.blocked = false;
        self.person_moves(index, role);
    }

    /// The person moves the item in Plane; Plane sends its webhook.
    fn person_moves(&mut self, index: usize, role: StateRole) {
        self.person_moves_to(index, state_name(role), Some(role));
    }

    fn person_moves_to(&mut self, index: usize, name: &str, role: Option<StateRole>) {
        let issue = self.people[index].issue.clone();
        let state = FakeTracker::state_id_for(&self.project.plane_project_id, name);
        let at = self.tracker.plane_now();
        let Some(item) = self.tracker.move_item(&issue, state.clone(), at) else {
            return;
        };
        let now = self.now();
        self.shared.lock().plane_writes.push(PlaneWrite {
            at: now,
            plane_at: item.updated_at,
            issue,
            state,
            by: Writer::Person,
        });
        self.note(format!("person {}: moves the item to {name}", index + 1));
        let delivered = self.emit(
            Source::Plane,
            Parsed::Event(Event::WorkItemMoved {
                item,
                actor: Some(self.person_user.clone()),
            }),
        );
        if let (false, Some(role)) = (delivered, role) {
            self.lost_moves.push(LostMove {
                person: index,
                at: now,
                role,
            });
        }
    }

    /// The open pull request of the person's item, as Gitea lists it.
    fn open_pull(&self, index: usize) -> Option<PullRequest> {
        let prefix = format!("feature/{}-", self.people[index].work_item);
        self.forge
            .pulls()
            .into_iter()
            .find(|pull| pull.state == PrState::Open && pull.head_branch.starts_with(&prefix))
    }

    fn whim(&mut self, index: usize, whim: Whim) {
        let who = index + 1;
        match whim {
            Whim::Cancel => {
                self.people[index].gone = true;
                self.person_moves(index, StateRole::Cancelled);
            }
            Whim::Backlog => self.person_moves_to(index, "Backlog", None),
            Whim::InProgress => self.person_moves(index, StateRole::InProgress),
            Whim::Approve => self.verdict(index, StateRole::Approved),
            Whim::Reject => self.verdict(index, StateRole::Rejected),
            Whim::EditTitle => {
                let issue = self.people[index].issue.clone();
                if let Some(mut item) = self.tracker.item(&issue) {
                    item.title = format!("{} (edited)", item.title);
                    item.updated_at = self
                        .tracker
                        .plane_now()
                        .max(Timestamp::from_millis(item.updated_at.as_millis() + 1));
                    self.tracker.put_item(item);
                    self.note(format!("person {who}: edits the item"));
                    self.emit(
                        Source::Plane,
                        Parsed::Ignored("an edit that is not a state change".to_owned()),
                    );
                }
            }
            Whim::Push => {
                let Some(pull) = self.open_pull(index) else {
                    return;
                };
                self.person_shas += 1;
                let sha =
                    CommitSha::new(format!("{:040x}", 0x0fac_e000_0000_u64 + self.person_shas))
                        .expect("40 hex digits");
                self.forge
                    .set_branch_head(&self.project.repo, &pull.head_branch, &sha);
                self.note(format!(
                    "person {who}: pushes {} to {}",
                    sha.short(),
                    pull.head_branch
                ));
                let branch = crate::ids::BranchName::new(pull.head_branch.clone())
                    .expect("a task branch is valid");
                self.emit(
                    Source::Gitea,
                    Parsed::Event(Event::BranchPushed {
                        repo: self.project.repo.clone(),
                        branch,
                        head_sha: sha.clone(),
                    }),
                );
                let repo = self.project.repo.clone();
                self.ci_starts(repo, sha);
            }
            Whim::BaseMoves => {
                let Some(pull) = self.open_pull(index) else {
                    return;
                };
                let work_item = self.people[index].work_item.clone();
                self.workspace.set_conflicts_with_base(&work_item, true);
                self.forge
                    .checker_finds_conflict(&self.project.repo, pull.number);
                self.shared
                    .lock()
                    .conflicting
                    .insert(pull.head_branch.clone());
                self.note(format!(
                    "the base moves: {} now conflicts with it",
                    pull.head_branch
                ));
            }
            Whim::Merge | Whim::ClosePr => {
                let Some(pull) = self.open_pull(index) else {
                    return;
                };
                let merged = whim == Whim::Merge;
                self.forge
                    .close_by_person(&self.project.repo, pull.number, merged);
                if merged {
                    let now = self.now();
                    self.person_merges
                        .push((now, pull.head_branch.clone(), pull.number));
                    // The person merged the work: for them the item is done.
                    self.people[index].gone = true;
                }
                self.note(format!(
                    "person {who}: {} pull {} in Gitea",
                    if merged { "merges" } else { "closes" },
                    pull.number
                ));
                self.emit(
                    Source::Gitea,
                    Parsed::Event(Event::PullRequestClosed {
                        repo: self.project.repo.clone(),
                        number: pull.number,
                        merged,
                    }),
                );
            }
        }
    }
}
