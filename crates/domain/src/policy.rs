//! Per-instance policy the domain decides under: the configured ticket statuses and limits.

use crate::error::{invalid, DomainError};

/// The status every new ticket starts in, unless configured otherwise.
pub const DEFAULT_STATUSES: [&str; 4] = ["New", "In Progress", "Waiting Customer", "Complete"];
/// The status that closes a ticket (and, once outsourcing exists, completes its link).
pub const COMPLETE: &str = "Complete";
/// Default attachment size limit: 25 MiB.
pub const DEFAULT_MAX_ATTACHMENT_BYTES: u64 = 25 * 1024 * 1024;

/// The configured ticket statuses, in display order. The first is the initial status;
/// `Complete` must be present because it has a meaning of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusSet(Vec<String>);

impl StatusSet {
    pub fn new<S: AsRef<str>>(names: &[S]) -> Result<Self, DomainError> {
        let mut out: Vec<String> = Vec::new();
        for n in names {
            let n = crate::values::title("status name", n.as_ref())?;
            if out.iter().any(|o| key(o) == key(&n)) {
                return Err(invalid("statuses", format!("{n:?} is listed twice")));
            }
            out.push(n);
        }
        if !out.iter().any(|o| key(o) == key(COMPLETE)) {
            return Err(invalid(
                "statuses",
                format!("the list must contain {COMPLETE:?}"),
            ));
        }
        if key(&out[0]) == key(COMPLETE) {
            return Err(invalid(
                "statuses",
                format!("the first (initial) status must not be {COMPLETE:?}"),
            ));
        }
        Ok(StatusSet(out))
    }

    /// The status new tickets start in.
    pub fn initial(&self) -> &str {
        &self.0[0]
    }

    pub fn names(&self) -> &[String] {
        &self.0
    }

    /// Finds a configured status by a loose spelling: case, spaces, '-' and '_' are ignored,
    /// so `in-progress`, `in_progress` and `In Progress` are the same status.
    pub fn find(&self, name: &str) -> Option<&str> {
        let k = key(name);
        self.0.iter().find(|s| key(s) == k).map(String::as_str)
    }
}

impl Default for StatusSet {
    fn default() -> Self {
        StatusSet(DEFAULT_STATUSES.iter().map(|s| s.to_string()).collect())
    }
}

/// True when `name` is the closing status.
pub fn is_complete(name: &str) -> bool {
    key(name) == key(COMPLETE)
}

fn key(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Everything instance-specific the domain needs to decide a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub statuses: StatusSet,
    pub max_attachment_bytes: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            statuses: StatusSet::default(),
            max_attachment_bytes: DEFAULT_MAX_ATTACHMENT_BYTES,
        }
    }
}
