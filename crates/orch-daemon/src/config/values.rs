//! The value types of the configuration: secrets, base URLs, merge styles, prompt templates and CA files.

use std::fmt;
use std::path::{Path, PathBuf};

use url::Url;

/// A token, a webhook secret or an agent's environment value: never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// `tls.ca_file`: where the private CA's PEM file is, and the certificates it held when read.
#[derive(Clone, PartialEq, Eq)]
pub struct CaFile {
    /// Absolute, so git finds it whatever its working directory.
    pub path: PathBuf,
    /// Each certificate of the file, DER-encoded, in the file's order.
    pub certs: Vec<Vec<u8>>,
}

impl CaFile {
    /// Reads the PEM file at `path`; the reason is a lowercase phrase for the config error.
    pub fn read(path: &Path) -> Result<CaFile, String> {
        let path = std::path::absolute(path)
            .map_err(|err| format!("cannot resolve {}: {err}", path.display()))?;
        let pem =
            std::fs::read(&path).map_err(|err| format!("cannot read {}: {err}", path.display()))?;
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            match item {
                Ok(ureq::tls::PemItem::Certificate(cert)) => certs.push(cert.der().to_vec()),
                Ok(_) => {}
                Err(err) => {
                    return Err(format!("{} is not a valid PEM file: {err}", path.display()))
                }
            }
        }
        if certs.is_empty() {
            return Err(format!(
                "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            ));
        }
        Ok(CaFile { path, certs })
    }
}

impl fmt::Debug for CaFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaFile")
            .field("path", &self.path)
            .field("certs", &self.certs.len())
            .finish()
    }
}

/// An `http://` or `https://` base URL without credentials, query or fragment, stored without
/// a trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BaseUrl(String);

impl BaseUrl {
    /// Checks the form; the reason is a lowercase phrase for the config error.
    pub fn parse(value: &str) -> Result<BaseUrl, &'static str> {
        if !(value.starts_with("https://") || value.starts_with("http://")) {
            return Err("expected an http:// or https:// URL");
        }
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("a URL must not contain spaces or control characters");
        }
        if value.contains(['?', '#']) {
            return Err("a base URL must not have a query or fragment");
        }
        let url = Url::parse(value).map_err(|err| match err {
            url::ParseError::InvalidPort => "expected a port from 1 to 65535 in the URL",
            _ => "expected a host name in the URL",
        })?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err("a URL must not carry credentials; use the token keys");
        }
        if url.port() == Some(0) {
            return Err("expected a port from 1 to 65535 in the URL");
        }
        Ok(BaseUrl(value.trim_end_matches('/').to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How orch merges a pull request (Gitea's `Do` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MergeStyle {
    Merge,
    Squash,
    Rebase,
    RebaseMerge,
}

impl MergeStyle {
    pub const ALL: [MergeStyle; 4] = [
        MergeStyle::Merge,
        MergeStyle::Squash,
        MergeStyle::Rebase,
        MergeStyle::RebaseMerge,
    ];

    /// Gitea's name of the style.
    pub fn as_str(self) -> &'static str {
        match self {
            MergeStyle::Merge => "merge",
            MergeStyle::Squash => "squash",
            MergeStyle::Rebase => "rebase",
            MergeStyle::RebaseMerge => "rebase-merge",
        }
    }

    pub fn parse(value: &str) -> Option<MergeStyle> {
        MergeStyle::ALL
            .into_iter()
            .find(|style| style.as_str() == value)
    }
}

impl fmt::Display for MergeStyle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A prompt template: where it was read from and its text, checked for unknown placeholders.
#[derive(Clone, PartialEq, Eq)]
pub struct Prompt {
    /// The file, resolved against the config file's directory.
    pub path: PathBuf,
    pub text: String,
}

impl fmt::Debug for Prompt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prompt")
            .field("path", &self.path)
            .field("bytes", &self.text.len())
            .finish()
    }
}
