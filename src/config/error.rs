//! The loader's errors: [`ConfigError`] and the validation [`Problem`]s it carries. Shared by
//! `load.rs` (reading and layering), `validate.rs` (checks) and `servers.rs`.

use std::{fmt, path::PathBuf};

/// Why the configuration could not be loaded. Each message says where and what is expected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: cannot read it: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    DotEnv { path: PathBuf, message: String },
    #[error("{0}")]
    Value(String),
    #[error("{path}: {message}")]
    Servers { path: PathBuf, message: String },
    #[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// One validation problem: the key, where its value came from, and what is wrong.
#[derive(Debug, Clone)]
pub struct Problem {
    pub key: String,
    pub origin: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.key, self.origin, self.message)
    }
}
