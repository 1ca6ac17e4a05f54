//! The `replay --json` line: one log entry as a stable, documented JSON object.

use chrono::{DateTime, SecondsFormat, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::chain::LogEntry;
use crate::codec::{event_data_json, WireError};

/// One line of `ticketsync replay --json`. Field names and meanings are stable; new fields
/// may be added, none removed. `data` follows the JSON Schema of the event `type`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReplayLine {
    /// Position in this instance's log, from 1, contiguous.
    pub position: u64,
    /// The event's ULID, the same on every instance that holds it.
    pub event_id: String,
    /// The ticket (stream) the event belongs to.
    pub ticket_id: String,
    /// Version of the event within its ticket, from 1.
    pub version: u64,
    pub schema_version: u16,
    /// Event type, such as `note_added`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When the actor did it (RFC 3339, UTC, milliseconds).
    pub occurred_at: String,
    /// When this instance appended it.
    pub recorded_at: String,
    pub actor: ReplayActor,
    /// Outsourcing transitions of the ticket the author knew when deciding (0: none).
    pub link_seq: u32,
    /// SHA-256 of the previous entry, lowercase hex.
    pub prev_hash: String,
    /// SHA-256 of this entry, lowercase hex.
    pub hash: String,
    /// The event's fields.
    pub data: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReplayActor {
    pub instance: String,
    pub user: String,
}

/// Formats ms since the epoch as RFC 3339 UTC with milliseconds.
pub fn rfc3339_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| format!("@{ms}ms"))
}

impl ReplayLine {
    pub fn from_entry(e: &LogEntry) -> Result<Self, WireError> {
        let (_, data) = event_data_json(e.schema_version, &e.payload)?;
        Ok(ReplayLine {
            position: e.position,
            event_id: e.event_id.to_string(),
            ticket_id: e.stream_id.to_string(),
            version: e.version,
            schema_version: e.schema_version,
            event_type: e.event_type.clone(),
            occurred_at: rfc3339_ms(e.occurred_at),
            recorded_at: rfc3339_ms(e.recorded_at),
            actor: ReplayActor {
                instance: e.actor_instance.clone(),
                user: e.actor_user.clone(),
            },
            link_seq: e.link_seq,
            prev_hash: hex::encode(e.prev_hash),
            hash: hex::encode(e.hash),
            data,
        })
    }
}
