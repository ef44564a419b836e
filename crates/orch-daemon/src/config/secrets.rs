//! Secrets read from files (`*_file` keys, systemd credentials) and the check of those files' modes.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

/// The environment variable systemd sets to the directory of the credentials it loaded for
/// the service (`LoadCredential=`).
pub const CREDENTIALS_ENV: &str = "CREDENTIALS_DIRECTORY";

/// The largest secret file read, in bytes.
const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// The permission bits of the group and of others: a file holding secrets has none of them.
const GROUP_OR_OTHERS: u32 = 0o077;

/// A file a secret of the configuration was read from: a `*_file`, a credential in
/// `$CREDENTIALS_DIRECTORY`, or the config file itself when it holds a secret inline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFile {
    /// The key whose secret the file holds, `plane.api_token`.
    pub key: String,
    pub path: PathBuf,
}

/// What a secret file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// One secret on one line.
    OneLine,
    /// One secret per line; blank lines are skipped (webhook secrets, several while rotating).
    Lines,
}

/// The secrets in `path`: one trailing newline is dropped, and a file that ends up empty is
/// refused. The reason of a refusal never quotes the file.
pub(crate) fn read(path: &Path, shape: Shape) -> Result<Vec<String>, String> {
    let file = std::fs::File::open(path)
        .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    let metadata = file
        .metadata()
        .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    if !metadata.is_file() {
        return Err(format!("{} is not a file", path.display()));
    }
    if metadata.len() > MAX_SECRET_FILE_BYTES {
        return Err(format!(
            "{} is larger than {MAX_SECRET_FILE_BYTES} bytes",
            path.display()
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_FILE_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    let text =
        String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))?;
    match shape {
        Shape::OneLine => {
            let line = text.strip_suffix('\n').unwrap_or(&text);
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.is_empty() {
                return Err(format!("{} is empty", path.display()));
            }
            if line.contains(['\n', '\r']) {
                return Err(format!("{} holds more than one line", path.display()));
            }
            Ok(vec![line.to_owned()])
        }
        Shape::Lines => {
            let lines: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .map(str::to_owned)
                .collect();
            if lines.is_empty() {
                return Err(format!("{} is empty", path.display()));
            }
            Ok(lines)
        }
    }
}

/// Like `read`, for a file that may be absent (a credential not loaded): `Ok(None)` then.
pub(crate) fn read_if_present(path: &Path, shape: Shape) -> Result<Option<Vec<String>>, String> {
    match std::fs::symlink_metadata(path) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        _ => read(path, shape).map(Some),
    }
}

/// One warning per file holding secrets to which its group or others have any access (a mode
/// bit of 0o077: read, write or, for a directory, search): the file, the keys it holds, its
/// mode and the fix.
/// A file that cannot be looked at any more is skipped.
pub fn permission_warnings(files: &[SecretFile]) -> Vec<String> {
    let mut keys_by_file: BTreeMap<&Path, Vec<&str>> = BTreeMap::new();
    for file in files {
        let keys = keys_by_file.entry(file.path.as_path()).or_default();
        if !keys.contains(&file.key.as_str()) {
            keys.push(&file.key);
        }
    }
    keys_by_file
        .into_iter()
        .filter_map(|(path, keys)| {
            let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
            (mode & GROUP_OR_OTHERS != 0).then(|| {
                format!(
                    "{} holds {} and its mode {mode:04o} gives its group or others access: \
                     run `chmod 600 {}` (owned by the user orch runs as), or hand it to orch \
                     with systemd's LoadCredential=",
                    path.display(),
                    keys.join(", "),
                    path.display()
                )
            })
        })
        .collect()
}
