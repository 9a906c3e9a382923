//! The problem list every config section's compiler writes to. A leaf: it knows nothing of
//! the sections, so each of them can report into it without importing the others.

use std::fmt;
use std::time::Duration;

use super::units::{parse_duration, parse_size};

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// TOML path of the offending key, e.g. `route[2].scopes[1]`.
    pub path: String,
    /// 1-based line of the key in the file (or of the table a missing key belongs in);
    /// `None` when the problem is not tied to one place.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} (line {line}): {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// Every problem found while loading a config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Syntax { path: String, message: String },
    #[error("{} problem(s) in the config:\n{}", .0.len(), .0.iter().map(|i| format!("  - {i}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ConfigIssue>),
}

/// Collects issues while compiling, so that all of them are reported together.
#[derive(Debug, Default)]
pub struct Issues(Vec<ConfigIssue>);

impl Issues {
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigIssue {
            path: path.into(),
            line: None,
            message: message.into(),
        });
    }

    /// Records a problem whose place in the file is known.
    pub fn push_at(&mut self, path: impl Into<String>, line: usize, message: impl Into<String>) {
        self.0.push(ConfigIssue {
            path: path.into(),
            line: Some(line),
            message: message.into(),
        });
    }

    /// Parses a duration key, recording a problem and returning the fallback on error.
    pub fn duration(&mut self, path: &str, text: &str, fallback: Duration) -> Duration {
        parse_duration(text).unwrap_or_else(|message| {
            self.push(path, message);
            fallback
        })
    }

    /// [`Issues::duration`] for a key that must be greater than zero.
    pub fn positive_duration(&mut self, path: &str, text: &str, fallback: Duration) -> Duration {
        match self.duration(path, text, fallback) {
            zero if zero.is_zero() => {
                self.push(path, "must be greater than zero");
                fallback
            }
            duration => duration,
        }
    }

    pub fn size(&mut self, path: &str, text: &str, fallback: u64) -> u64 {
        parse_size(text).unwrap_or_else(|message| {
            self.push(path, message);
            fallback
        })
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn count(&self) -> usize {
        self.0.len()
    }

    /// Fills in lines for problems that were recorded by path alone, using `line_of`.
    pub fn locate(&mut self, line_of: impl Fn(&str) -> Option<usize>) {
        for issue in self.0.iter_mut().filter(|i| i.line.is_none()) {
            issue.line = line_of(&issue.path);
        }
    }

    pub fn into_vec(self) -> Vec<ConfigIssue> {
        self.0
    }

    /// The problems in file order; those not tied to a line (a missing section, a
    /// requirement across sections) first.
    pub fn into_sorted_vec(mut self) -> Vec<ConfigIssue> {
        self.0.sort_by_key(|issue| issue.line.unwrap_or(0));
        self.0
    }
}
