//! The event log and projection storage behind one trait, [`Store`], with the SQLite
//! implementation; callers never see which backend they talk to.
//!
//! Invariants every backend keeps: the log is append-only (enforced by the database),
//! positions are contiguous from 1, each entry's hash commits to the previous one, an
//! append with a stale expected version fails with [`StoreError::Conflict`] and writes
//! nothing, and a projection's checkpoint is written in the same transaction as its rows.

pub mod error;
pub mod sqlite;
pub mod verify;

use std::collections::HashMap;

use async_trait::async_trait;
use ticketsync_wire::{LogEntry, NewEntry};
use ulid::Ulid;

pub use error::StoreError;
pub use sqlite::SqliteStore;
pub use verify::{verify_log, VerifyProblem, VerifyReport};

/// The store schema this build writes and understands.
pub const STORE_SCHEMA: u32 = 1;
/// Most entries returned by one `read_log` call.
pub const MAX_READ_BATCH: u32 = 10_000;

/// One stream's share of an append: the events and the version the writer last saw.
#[derive(Clone, Debug)]
pub struct StreamAppend {
    pub stream_id: Ulid,
    /// The stream's version the writer decided against (0: the stream must not exist yet).
    pub expected_version: u64,
    pub entries: Vec<NewEntry>,
}

/// The last entry of the log (position 0 and the genesis hash when it is empty).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub position: u64,
    pub hash: [u8; 32],
}

/// A projection document change within one projection commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DocChange {
    Put { key: String, doc: Vec<u8> },
    Delete { key: String },
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Appends the streams' events atomically, in order: all are written or none is.
    /// Fails with `Conflict` when any stream's version is not the expected one.
    async fn append(
        &self,
        recorded_at: i64,
        batch: Vec<StreamAppend>,
    ) -> Result<Vec<LogEntry>, StoreError>;

    /// The current version of a stream (0 when it has no events).
    async fn stream_version(&self, stream_id: Ulid) -> Result<u64, StoreError>;

    /// All events of one stream in order, optionally only those at or before `to_position`.
    async fn read_stream(
        &self,
        stream_id: Ulid,
        to_position: Option<u64>,
    ) -> Result<Vec<LogEntry>, StoreError>;

    /// Up to `limit` (at most [`MAX_READ_BATCH`]) entries with position greater than `after`, in order.
    async fn read_log(&self, after: u64, limit: u32) -> Result<Vec<LogEntry>, StoreError>;

    /// The recorded head of the log.
    async fn head(&self) -> Result<Head, StoreError>;

    /// The number of stored entries (counted, not taken from the head).
    async fn count_entries(&self) -> Result<u64, StoreError>;

    /// The current version of every stream, as recorded next to the log.
    async fn stream_versions(&self) -> Result<HashMap<Ulid, u64>, StoreError>;

    /// Where a projection has applied the log up to (0: nothing yet).
    async fn projection_checkpoint(&self, projection: &str) -> Result<u64, StoreError>;

    /// The stored documents of a projection for the given keys (absent keys are left out).
    async fn load_docs(
        &self,
        projection: &str,
        keys: &[String],
    ) -> Result<HashMap<String, Vec<u8>>, StoreError>;

    /// Every document of a projection, ordered by key.
    async fn list_docs(&self, projection: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// Writes document changes and moves the checkpoint from `from` to `to` in one
    /// transaction. Fails with `CheckpointMoved` when the checkpoint is no longer `from`
    /// (another runner got there first) and then writes nothing.
    async fn commit_projection(
        &self,
        projection: &str,
        from: u64,
        to: u64,
        changes: Vec<DocChange>,
    ) -> Result<(), StoreError>;

    /// Drops every document of a projection and its checkpoint, in one transaction.
    async fn reset_projection(&self, projection: &str) -> Result<(), StoreError>;

    /// Replaces projection `live` with the documents and checkpoint of `shadow`, and drops
    /// `shadow`, in one transaction: readers see the old projection or the new one, never a mix.
    async fn replace_projection(&self, shadow: &str, live: &str) -> Result<(), StoreError>;

    /// Reads an instance setting.
    async fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError>;

    /// Writes an instance setting.
    async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError>;
}
