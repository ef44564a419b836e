//! A reader for the TOML subset our `Cargo.toml` files use: tables, keys, values as text.
//!
//! It does not interpret values beyond what `tidy` needs (strings, booleans, the `package` key
//! of an inline table); values are kept as their source text, with line numbers for reports.

/// A parsed manifest: its tables in file order. Keys before the first header are in a table
/// with an empty path.
#[derive(Debug, Default)]
pub(crate) struct Manifest {
    pub(crate) tables: Vec<Table>,
}

/// One `[a.b]` or `[[a.b]]` table.
#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) path: Vec<String>,
    /// 1-based line of the header (0 for the table before the first header).
    pub(crate) line: usize,
    pub(crate) entries: Vec<Entry>,
}

/// One `key = value` line (or lines, for a value spanning several).
#[derive(Debug)]
pub(crate) struct Entry {
    /// The dotted key, split and unquoted: `orch-core.workspace` is `["orch-core", "workspace"]`.
    pub(crate) key: Vec<String>,
    /// The value's source text, comments removed, continuation lines joined with spaces.
    pub(crate) value: String,
    /// 1-based line of the key.
    pub(crate) line: usize,
}

/// Which dependency tables to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DepKind {
    Normal,
    Dev,
    Build,
}

/// A dependency: the package it names (after `package = "…"` renames) and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dependency {
    pub(crate) name: String,
    pub(crate) line: usize,
}

impl Manifest {
    pub(crate) fn parse(text: &str) -> Manifest {
        let mut manifest = Manifest {
            tables: vec![Table {
                path: Vec::new(),
                line: 0,
                entries: Vec::new(),
            }],
        };
        let mut lines = text.lines().enumerate();
        while let Some((line_idx, raw)) = lines.next() {
            let line = strip_comment(raw);
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(header) = line.strip_prefix('[') {
                let header = header.trim_start_matches('[');
                let header = header.trim_end().trim_end_matches(']');
                manifest.tables.push(Table {
                    path: split_dotted(header),
                    line: line_idx + 1,
                    entries: Vec::new(),
                });
                continue;
            }
            let Some(eq) = find_outside_quotes(line, '=') else {
                continue;
            };
            let key = split_dotted(&line[..eq]);
            let mut value = line[eq + 1..].trim().to_owned();
            while bracket_depth(&value) > 0 {
                let Some((_, next)) = lines.next() else { break };
                value.push(' ');
                value.push_str(strip_comment(next).trim());
            }
            let table = manifest.tables.last_mut().expect("there is always a table");
            table.entries.push(Entry {
                key,
                value,
                line: line_idx + 1,
            });
        }
        manifest
    }

    /// The entry `key` (dotted, e.g. `"workspace"`) of table `table` (dotted, e.g. `"lints"`).
    pub(crate) fn get(&self, table: &str, key: &str) -> Option<&Entry> {
        let table_path = split_dotted(table);
        let key_path = split_dotted(key);
        self.tables
            .iter()
            .filter(|candidate| candidate.path == table_path)
            .flat_map(|candidate| &candidate.entries)
            .find(|entry| entry.key == key_path)
    }

    /// Whether a table `[table]` exists.
    pub(crate) fn has_table(&self, table: &str) -> bool {
        let table_path = split_dotted(table);
        self.tables
            .iter()
            .any(|candidate| candidate.path == table_path)
    }

    /// A string value, unquoted.
    pub(crate) fn string(&self, table: &str, key: &str) -> Option<String> {
        self.get(table, key).and_then(|entry| unquote(&entry.value))
    }

    /// The dependencies of `kind`, including target-specific tables, in file order.
    pub(crate) fn dependencies(&self, kind: DepKind) -> Vec<Dependency> {
        let wanted = match kind {
            DepKind::Normal => "dependencies",
            DepKind::Dev => "dev-dependencies",
            DepKind::Build => "build-dependencies",
        };
        let mut deps = Vec::new();
        for table in &self.tables {
            // `[dependencies]`, `[target.X.dependencies]`, or the one-dependency forms
            // `[dependencies.name]` and `[target.X.dependencies.name]`.
            let rest = match table.path.as_slice() {
                [first, rest @ ..] if first == wanted => rest,
                [target, _, first, rest @ ..] if target == "target" && first == wanted => rest,
                _ => continue,
            };
            match rest {
                [] => {
                    for entry in &table.entries {
                        let name = inline_string(&entry.value, "package")
                            .unwrap_or_else(|| entry.key[0].clone());
                        deps.push(Dependency {
                            name,
                            line: entry.line,
                        });
                    }
                }
                [name] => {
                    let renamed = table
                        .entries
                        .iter()
                        .find(|entry| entry.key == ["package"])
                        .and_then(|entry| unquote(&entry.value));
                    deps.push(Dependency {
                        name: renamed.unwrap_or_else(|| name.clone()),
                        line: table.line,
                    });
                }
                _ => {}
            }
        }
        deps
    }
}

/// `"text"` or `'text'` without its quotes; `None` if `value` is not a plain string.
pub(crate) fn unquote(value: &str) -> Option<String> {
    let value = value.trim();
    for quote in ['"', '\''] {
        if value.len() >= 2 && value.starts_with(quote) && value.ends_with(quote) {
            return Some(value[1..value.len() - 1].to_owned());
        }
    }
    None
}

/// The string value of `key` inside an inline table `{ key = "value", … }`.
fn inline_string(value: &str, key: &str) -> Option<String> {
    let inner = value.trim().strip_prefix('{')?.strip_suffix('}')?;
    split_outside_quotes(inner, ',')
        .into_iter()
        .find_map(|pair| {
            let eq = find_outside_quotes(pair, '=')?;
            (split_dotted(&pair[..eq]) == [key])
                .then(|| unquote(&pair[eq + 1..]))
                .flatten()
        })
}

fn split_dotted(key: &str) -> Vec<String> {
    split_outside_quotes(key, '.')
        .into_iter()
        .map(|part| unquote(part).unwrap_or_else(|| part.trim().to_owned()))
        .collect()
}

fn split_outside_quotes(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    for (idx, ch) in outside_quotes(text) {
        if ch == separator {
            parts.push(&text[start..idx]);
            start = idx + ch.len_utf8();
        }
    }
    parts.push(&text[start..]);
    parts
}

fn find_outside_quotes(text: &str, wanted: char) -> Option<usize> {
    outside_quotes(text)
        .find(|(_, ch)| *ch == wanted)
        .map(|(idx, _)| idx)
}

fn strip_comment(line: &str) -> &str {
    match find_outside_quotes(line, '#') {
        Some(idx) => &line[..idx],
        None => line,
    }
}

/// How many `[` and `{` are still open at the end of `value`.
fn bracket_depth(value: &str) -> i32 {
    outside_quotes(value).fold(0, |depth, (_, ch)| match ch {
        '[' | '{' => depth + 1,
        ']' | '}' => depth - 1,
        _ => depth,
    })
}

/// The characters of `text` that are not inside a string literal, with their byte offsets.
fn outside_quotes(text: &str) -> impl Iterator<Item = (usize, char)> + '_ {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    text.char_indices().filter(move |(_, ch)| {
        let ch = *ch;
        match quote {
            Some(open) => {
                if escaped {
                    escaped = false;
                } else if ch == '\\' && open == '"' {
                    escaped = true;
                } else if ch == open {
                    quote = None;
                }
                false
            }
            None if ch == '"' || ch == '\'' => {
                quote = Some(ch);
                false
            }
            None => true,
        }
    })
}

#[cfg(test)]
mod tests;
