//! Identifiers and timestamps: ticket and item ids (ULIDs), instance names, actors.

use std::fmt;
use std::str::FromStr;

use ulid::Ulid;

use crate::error::DomainError;

/// A ticket's globally unique id. The insourced copy of a ticket keeps the lead's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TicketId(pub Ulid);

/// A ticket item's (note, time entry, charge, attachment) globally unique id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ItemId(pub Ulid);

/// One outsourcing of a ticket (a ticket may be outsourced again after a link ends).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkId(pub Ulid);

macro_rules! ulid_id {
    ($t:ident, $what:literal) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
        impl FromStr for $t {
            type Err = DomainError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Ulid::from_string(s.trim())
                    .map($t)
                    .map_err(|_| DomainError::Invalid {
                        field: $what,
                        reason: format!("{s:?} is not a ULID (26 characters of Crockford base32)"),
                    })
            }
        }
    };
}
ulid_id!(TicketId, "ticket id");
ulid_id!(ItemId, "item id");
ulid_id!(LinkId, "link id");

/// Longest instance name accepted.
pub const MAX_INSTANCE_NAME: usize = 32;

/// The short name of one ticketsync deployment, such as `acme`: lowercase ASCII letters,
/// digits and `-`, starting with a letter. It appears in NATS subjects, so the alphabet is narrow.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstanceId(String);

impl InstanceId {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let ok_chars = s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        let starts = s.chars().next().is_some_and(|c| c.is_ascii_lowercase());
        if s.is_empty() || s.len() > MAX_INSTANCE_NAME || !ok_chars || !starts {
            return Err(DomainError::Invalid {
                field: "instance name",
                reason: format!(
                    "{s:?} must be 1-{MAX_INSTANCE_NAME} characters of a-z, 0-9 and '-', starting with a letter"
                ),
            });
        }
        Ok(InstanceId(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Longest user name accepted.
pub const MAX_USER_NAME: usize = 64;

/// Who issued a command: a user on an instance.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Actor {
    pub instance: InstanceId,
    pub user: String,
}

impl Actor {
    pub fn new(instance: InstanceId, user: &str) -> Result<Self, DomainError> {
        let user = user.trim();
        if user.is_empty() || user.len() > MAX_USER_NAME || user.chars().any(char::is_control) {
            return Err(DomainError::Invalid {
                field: "user",
                reason: format!("{user:?} must be 1-{MAX_USER_NAME} printable characters"),
            });
        }
        Ok(Actor {
            instance,
            user: user.to_string(),
        })
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.user, self.instance)
    }
}

/// Milliseconds since the Unix epoch, UTC. Supplied by the caller; the domain never reads a clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl fmt::Display for Timestamp {
    /// RFC 3339, UTC, milliseconds (pure formatting; no clock is read).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match chrono::DateTime::<chrono::Utc>::from_timestamp_millis(self.0) {
            Some(t) => f.write_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            None => write!(f, "@{}ms", self.0),
        }
    }
}
