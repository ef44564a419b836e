//! The scripted agent's script (what to do per work item and role) and its cross-run counters.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The JSON file named by `SIM_AGENT_SCRIPT`:
///
/// ```json
/// { "default": { "developer": { "run_for_ms": 200 } },
///   "items": { "ET-001": { "developer": { "fail_times": 1, "ci_fail_times": 1 },
///                          "reviewer": { "request_changes_once": true } } } }
/// ```
///
/// An item listed in `items` uses its own entry for every role; `default` applies to items
/// that are not listed. Unknown keys are an error, so a typo never silently does nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    #[serde(default)]
    pub default: ItemScript,
    #[serde(default)]
    pub items: BTreeMap<String, ItemScript>,
}

/// What each role does for one work item.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemScript {
    #[serde(default)]
    pub analyst: Behaviour,
    #[serde(default)]
    pub developer: Behaviour,
    #[serde(default)]
    pub reviewer: Behaviour,
}

/// One role's behaviour. Counts are over that role's runs for that work item.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Behaviour {
    /// The first N runs exit 1 without doing anything.
    #[serde(default)]
    pub fail_times: u32,
    /// Every run prints one line, then sleeps forever (for timeout, stall and cancel tests).
    #[serde(default)]
    pub hang: bool,
    /// The first N runs hang (after the failing ones); later runs work.
    #[serde(default)]
    pub hang_times: u32,
    /// Each working run takes this long, printing a progress line every second.
    #[serde(default)]
    pub run_for_ms: u64,
    /// Reviewer: the first run's verdict is `request_changes`.
    #[serde(default)]
    pub request_changes_once: bool,
    /// Reviewer: the first N runs' verdict is `request_changes`.
    #[serde(default)]
    pub request_changes_times: u32,
    /// Developer: the first N working runs commit a `CI_FAIL` file (the simulated CI fails on
    /// it); every later run removes it.
    #[serde(default)]
    pub ci_fail_times: u32,
    /// Developer: change the files but commit nothing (orch must commit the leftovers).
    #[serde(default)]
    pub leave_uncommitted: bool,
    /// Developer: also overwrite this file of the repository with a line naming the work item,
    /// so two items doing it conflict at merge time.
    #[serde(default)]
    pub conflict_file: Option<String>,
    /// Developer: change nothing at all (no commits ahead of base).
    #[serde(default)]
    pub no_changes: bool,
    /// Analyst and reviewer: write their report empty (an artifact check failure).
    #[serde(default)]
    pub empty_output: bool,
}

impl Behaviour {
    /// How many runs request changes (`request_changes_once` counts as one).
    pub fn request_changes_runs(&self) -> u32 {
        self.request_changes_times
            .max(u32::from(self.request_changes_once))
    }
}

impl Script {
    /// Reads and parses the script file.
    pub fn load(path: &Path) -> Result<Script, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| format!("read script {}: {err}", path.display()))?;
        serde_json::from_str(&text).map_err(|err| format!("parse script {}: {err}", path.display()))
    }

    /// The script of `work_item`: its own entry, else the default.
    pub fn item(&self, work_item: &str) -> &ItemScript {
        self.items.get(work_item).unwrap_or(&self.default)
    }
}

impl ItemScript {
    /// The behaviour of one role (`analyst`, `developer` or `reviewer`).
    pub fn role(&self, role: Role) -> &Behaviour {
        match role {
            Role::Analyst => &self.analyst,
            Role::Developer => &self.developer,
            Role::Reviewer => &self.reviewer,
        }
    }
}

/// An agent role, from `ORCH_AGENT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Analyst,
    Developer,
    Reviewer,
}

impl Role {
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "analyst" => Some(Role::Analyst),
            "developer" => Some(Role::Developer),
            "reviewer" => Some(Role::Reviewer),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Analyst => "analyst",
            Role::Developer => "developer",
            Role::Reviewer => "reviewer",
        }
    }
}

/// Counters that survive between runs: one small file per (work item, role, counter) in the
/// state directory. Without a state directory every counter reads 0 and nothing is kept.
#[derive(Debug, Clone)]
pub struct Counters {
    dir: Option<PathBuf>,
}

impl Counters {
    pub fn new(dir: Option<PathBuf>) -> Counters {
        Counters { dir }
    }

    /// The counter's value before this call; stores value + 1.
    pub fn bump(&self, work_item: &str, role: Role, name: &str) -> Result<u32, String> {
        let value = self.get(work_item, role, name)?;
        if let Some(path) = self.path(work_item, role, name) {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|err| format!("create state dir {}: {err}", parent.display()))?;
            }
            // Write then rename, so a run killed mid-write never leaves a torn counter.
            let staging = path.with_extension("tmp");
            std::fs::write(&staging, format!("{}\n", value + 1))
                .and_then(|()| std::fs::rename(&staging, &path))
                .map_err(|err| format!("write counter {}: {err}", path.display()))?;
        }
        Ok(value)
    }

    pub fn get(&self, work_item: &str, role: Role, name: &str) -> Result<u32, String> {
        let Some(path) = self.path(work_item, role, name) else {
            return Ok(0);
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse()
                .map_err(|_| format!("counter {} holds {:?}", path.display(), text.trim())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(err) => Err(format!("read counter {}: {err}", path.display())),
        }
    }

    fn path(&self, work_item: &str, role: Role, name: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        Some(dir.join(format!("{work_item}.{}.{name}", role.as_str())))
    }
}
