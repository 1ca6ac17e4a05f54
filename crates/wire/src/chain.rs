//! Log entries and the SHA-256 chain that commits each entry to everything before it.

use serde::Serialize;
use sha2::{Digest, Sha256};
use ulid::Ulid;

/// The `prev_hash` of the first entry.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// An event as the caller hands it to the log, before it has a position or a hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEntry {
    pub event_id: Ulid,
    /// The ticket (or other stream) the event belongs to.
    pub stream_id: Ulid,
    pub schema_version: u16,
    pub event_type: String,
    /// When the actor did it, ms since the epoch, on the instance that authored it.
    pub occurred_at: i64,
    pub actor_instance: String,
    pub actor_user: String,
    /// Outsourcing transitions of the ticket its author knew when deciding (0: none).
    /// Orders concurrent transitions and tells whether an item was authored on a live link.
    pub link_seq: u32,
    pub payload: Vec<u8>,
}

/// One entry of the append-only log, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// 1-based, contiguous position in this instance's log.
    pub position: u64,
    pub event_id: Ulid,
    pub stream_id: Ulid,
    /// 1-based version of the event within its stream.
    pub version: u64,
    pub schema_version: u16,
    pub event_type: String,
    pub occurred_at: i64,
    /// When this instance appended it, ms since the epoch.
    pub recorded_at: i64,
    pub actor_instance: String,
    pub actor_user: String,
    pub link_seq: u32,
    pub payload: Vec<u8>,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

/// The fields the hash commits to, in a fixed postcard layout.
#[derive(Serialize)]
struct ChainInput<'a> {
    prev_hash: &'a [u8; 32],
    position: u64,
    event_id: u128,
    stream_id: u128,
    version: u64,
    schema_version: u16,
    event_type: &'a str,
    occurred_at: i64,
    recorded_at: i64,
    actor_instance: &'a str,
    actor_user: &'a str,
    link_seq: u32,
    payload: &'a [u8],
}

impl LogEntry {
    /// Builds the entry that follows `prev_hash` at `position`, computing its hash.
    pub fn seal(
        new: NewEntry,
        position: u64,
        version: u64,
        recorded_at: i64,
        prev_hash: [u8; 32],
    ) -> Self {
        let mut e = LogEntry {
            position,
            event_id: new.event_id,
            stream_id: new.stream_id,
            version,
            schema_version: new.schema_version,
            event_type: new.event_type,
            occurred_at: new.occurred_at,
            recorded_at,
            actor_instance: new.actor_instance,
            actor_user: new.actor_user,
            link_seq: new.link_seq,
            payload: new.payload,
            prev_hash,
            hash: [0; 32],
        };
        e.hash = e.compute_hash();
        e
    }

    /// SHA-256 over `prev_hash` and every field of the entry. Because the position is part
    /// of it, swapping two entries breaks the chain even when their contents are intact.
    pub fn compute_hash(&self) -> [u8; 32] {
        let input = ChainInput {
            prev_hash: &self.prev_hash,
            position: self.position,
            event_id: self.event_id.0,
            stream_id: self.stream_id.0,
            version: self.version,
            schema_version: self.schema_version,
            event_type: &self.event_type,
            occurred_at: self.occurred_at,
            recorded_at: self.recorded_at,
            actor_instance: &self.actor_instance,
            actor_user: &self.actor_user,
            link_seq: self.link_seq,
            payload: &self.payload,
        };
        let mut h = Sha256::new();
        // Serializing into a hasher cannot fail for these field types.
        let bytes = postcard::to_stdvec(&input).unwrap_or_default();
        h.update(&bytes);
        h.finalize().into()
    }
}

#[derive(Serialize)]
struct ChannelInput<'a> {
    prev_hash: &'a [u8; 32],
    seq: u64,
    from: &'a str,
    to: &'a str,
    body: &'a [u8],
}

/// The hash of entry `seq` of the channel from `from` to `to`: SHA-256 over the previous
/// entry's hash, the seq, both instance names and the body. Naming the channel in the hash
/// means an entry cannot be replayed onto another channel.
pub fn channel_hash(prev_hash: &[u8; 32], seq: u64, from: &str, to: &str, body: &[u8]) -> [u8; 32] {
    let input = ChannelInput {
        prev_hash,
        seq,
        from,
        to,
        body,
    };
    let bytes = postcard::to_stdvec(&input).unwrap_or_default();
    Sha256::digest(&bytes).into()
}
