//! The typed errors a command can end in: invalid input, not found, or refused by the workflow.

use std::fmt;

use crate::ids::{ItemId, TicketId};

/// Why a command produced no events.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// A value is malformed or out of range (negative hours, empty title, oversized file...).
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("ticket {0} not found")]
    TicketNotFound(TicketId),
    #[error("item {item} not found on ticket {ticket}")]
    ItemNotFound { ticket: TicketId, item: ItemId },
    /// The workflow or the permissions refuse the command in the current state.
    #[error("{0}")]
    Refused(Refusal),
}

/// A refused command: what was attempted, the state it met, and what is allowed instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The attempted action, e.g. "change status to Complete".
    pub action: String,
    /// The state that refuses it, e.g. "ticket status is Complete".
    pub state: String,
    /// What is allowed in that state (may be empty: nothing is).
    pub allowed: Vec<String>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot {}: {}; allowed: ", self.action, self.state)?;
        if self.allowed.is_empty() {
            f.write_str("nothing")
        } else {
            f.write_str(&self.allowed.join(", "))
        }
    }
}

pub(crate) fn refuse(
    action: impl Into<String>,
    state: impl Into<String>,
    allowed: Vec<String>,
) -> DomainError {
    DomainError::Refused(Refusal {
        action: action.into(),
        state: state.into(),
        allowed,
    })
}

pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> DomainError {
    DomainError::Invalid {
        field,
        reason: reason.into(),
    }
}
