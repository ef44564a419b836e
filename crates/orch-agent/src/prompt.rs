//! Strict prompt templates: `{{name}}` placeholders from a closed set, nothing else.

use std::fmt::Write as _;

/// The placeholders a prompt template may use (SPEC §5.4).
pub const PLACEHOLDERS: [&str; 8] = [
    "task",
    "title",
    "description",
    "feedback",
    "analysis",
    "branch",
    "base_branch",
    "repo",
];

/// Why a template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromptError {
    #[error("unknown placeholder {{{{{name}}}}} (known: {known})", known = known_list())]
    UnknownPlaceholder { name: String },
    #[error("unclosed placeholder at byte {offset}: \"{{{{\" without \"}}}}\"")]
    Unclosed { offset: usize },
}

/// A parsed template; rendering cannot fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptTemplate {
    parts: Vec<Part>,
}

/// The values a template is rendered with; absent feedback or analysis render as "".
#[derive(Debug, Clone, Copy)]
pub struct PromptValues<'a> {
    /// The work item id, e.g. `ET-001`.
    pub task: &'a str,
    pub title: &'a str,
    pub description: &'a str,
    pub feedback: &'a str,
    pub analysis: &'a str,
    pub branch: &'a str,
    pub base_branch: &'a str,
    pub repo: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Placeholder(Placeholder),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placeholder {
    Task,
    Title,
    Description,
    Feedback,
    Analysis,
    Branch,
    BaseBranch,
    Repo,
}

impl PromptTemplate {
    /// Parses `text`. `{{ name }}` may have spaces inside the braces; any `{{` opens a
    /// placeholder, so an unknown name or a missing `}}` is an error.
    pub fn parse(text: &str) -> Result<PromptTemplate, PromptError> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut consumed = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let inner_start = open + 2;
            let Some(close) = rest[inner_start..].find("}}") else {
                return Err(PromptError::Unclosed {
                    offset: consumed + open,
                });
            };
            let name = rest[inner_start..inner_start + close].trim();
            let placeholder =
                Placeholder::from_name(name).ok_or_else(|| PromptError::UnknownPlaceholder {
                    name: name.to_owned(),
                })?;
            parts.push(Part::Placeholder(placeholder));
            let next = inner_start + close + 2;
            consumed += next;
            rest = &rest[next..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(PromptTemplate { parts })
    }

    pub fn render(&self, values: &PromptValues<'_>) -> String {
        let mut rendered = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => rendered.push_str(text),
                Part::Placeholder(placeholder) => rendered.push_str(placeholder.value(values)),
            }
        }
        rendered
    }
}

impl Placeholder {
    fn from_name(name: &str) -> Option<Placeholder> {
        Some(match name {
            "task" => Placeholder::Task,
            "title" => Placeholder::Title,
            "description" => Placeholder::Description,
            "feedback" => Placeholder::Feedback,
            "analysis" => Placeholder::Analysis,
            "branch" => Placeholder::Branch,
            "base_branch" => Placeholder::BaseBranch,
            "repo" => Placeholder::Repo,
            _ => return None,
        })
    }

    fn value<'a>(self, values: &PromptValues<'a>) -> &'a str {
        match self {
            Placeholder::Task => values.task,
            Placeholder::Title => values.title,
            Placeholder::Description => values.description,
            Placeholder::Feedback => values.feedback,
            Placeholder::Analysis => values.analysis,
            Placeholder::Branch => values.branch,
            Placeholder::BaseBranch => values.base_branch,
            Placeholder::Repo => values.repo,
        }
    }
}

fn known_list() -> String {
    let mut list = String::new();
    for name in PLACEHOLDERS {
        if !list.is_empty() {
            list.push(' ');
        }
        let _ = write!(list, "{{{{{name}}}}}");
    }
    list
}

#[cfg(test)]
mod tests;
