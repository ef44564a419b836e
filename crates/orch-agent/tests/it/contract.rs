//! The `AgentRunner` contract suite of orch-core, run against `ProcessAgentRunner` with real
//! processes (`/bin/sh`).

use std::sync::Mutex;

use async_trait::async_trait;
use orch_agent::ProcessAgentRunner;
use orch_core::domain::{Agent, ProcessRecord};
use orch_core::fakes::contract::{self, AgentBehaviour, AgentFixture};
use orch_core::ids::{BranchName, WorkItemId};
use orch_core::ports::{AgentRequest, AgentRunner};

use crate::{is_running, Fixture};

/// The analyst: what it does is chosen by the branch `request` gives it.
const ANALYST: &str = r#"case "$ORCH_BRANCH" in
  contract/writes) printf 'Analysis of %s' "$ORCH_TITLE" > "$ORCH_OUTPUT_DIR/analysis.md" ;;
  contract/fails) exit 1 ;;
  contract/hangs) sleep 600 & sleep 600 & wait ;;
  *) exit 3 ;;
esac"#;

#[tokio::test]
async fn process_agent_runner_keeps_the_agent_runner_contract() {
    contract::agent_runner(|_case| async { ProcessFixture::new() }).await;
}

struct ProcessFixture {
    fixture: Fixture,
    runner: ProcessAgentRunner,
    requests: Mutex<u32>,
}

impl ProcessFixture {
    fn new() -> ProcessFixture {
        let fixture = Fixture::new();
        let runner = fixture.runner(fixture.config(Agent::Analyst, &["sh", "-c", ANALYST]));
        ProcessFixture {
            fixture,
            runner,
            requests: Mutex::new(0),
        }
    }
}

#[async_trait]
impl AgentFixture for ProcessFixture {
    fn runner(&self) -> &dyn AgentRunner {
        &self.runner
    }

    fn request(&self, behaviour: AgentBehaviour, title: &str) -> AgentRequest {
        let number = {
            let mut requests = self.requests.lock().expect("requests mutex");
            *requests += 1;
            *requests
        };
        let output_dir = self.fixture.output_dir().join(number.to_string());
        std::fs::create_dir_all(&output_dir).expect("the output dir is made");
        let work_item = WorkItemId::new("ET", number).expect("valid work item");
        let mut request =
            contract::agent::analyst_request(work_item, title, self.fixture.worktree(), output_dir);
        let branch = match behaviour {
            AgentBehaviour::WritesItsAnalysis => "contract/writes",
            AgentBehaviour::ExitsWithOne => "contract/fails",
            AgentBehaviour::Hangs => "contract/hangs",
        };
        request.branch = BranchName::new(branch).expect("valid branch");
        request
    }

    async fn output(&self, request: &AgentRequest, name: &str) -> Option<String> {
        std::fs::read_to_string(request.output_dir.join(name)).ok()
    }

    fn group_runs(&self, process: &ProcessRecord) -> bool {
        let entries = std::fs::read_dir("/proc").expect("/proc lists");
        entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .any(|pid| process_group(pid) == Some(process.pgid) && is_running(pid))
    }
}

/// The process group of `pid` (field 5 of `/proc/{pid}/stat`), if it still exists.
fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.rfind(')')?;
    stat[close + 1..].split_whitespace().nth(2)?.parse().ok()
}
