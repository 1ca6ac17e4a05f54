//! The event log and projection storage behind one trait, [`Store`], with the SQLite and
//! PostgreSQL implementations; callers never see which backend they talk to.
//!
//! Invariants every backend keeps: the log is append-only (enforced by the database),
//! positions are contiguous from 1, each entry's hash commits to the previous one, an
//! append with a stale expected version fails with [`StoreError::Conflict`] and writes
//! nothing, and a projection's checkpoint is written in the same transaction as its rows.

pub mod channel;
mod checkpointer;
pub mod error;
mod kept_conn;
mod log_reader;
mod log_writer;
pub mod postgres;
mod projection_conn;
mod rows;
pub mod sqlite;
pub mod verify;

use std::collections::HashMap;
use std::ops::ControlFlow;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use ticketsync_wire::{EntryHasher, LogEntry, NewEntry};
use ulid::{Ulid, ULID_LEN};

pub use channel::{
    ChannelEntry, ChannelHead, Inbound, Outgoing, Partner, PartnerState, QuarantineRecord,
};
pub use checkpointer::{CheckpointStats, BACKSTOP_PAGES, CHECKPOINT_BYTES, CHECKPOINT_DELAY};
pub use error::StoreError;
pub use postgres::{is_postgres_url, PgStore};
pub use sqlite::SqliteStore;
pub use verify::{
    verify_channels, verify_log, verify_log_cut_at, ChannelReport, VerifyProblem, VerifyReport,
};

/// The store schema this build writes and understands.
pub const STORE_SCHEMA: u32 = 9;
/// Most entries returned by one `read_log` call.
pub const MAX_READ_BATCH: u32 = 10_000;

/// What `verify_log` checks of one log entry: where it is, what it links to, the hash
/// stored with it, the hash its stored contents compute to ([`LogEntry::compute_hash`]),
/// and whether its ids are stored as the text reads look them up by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashedEntry {
    pub position: u64,
    pub stream_id: Ulid,
    pub version: u64,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
    /// The hash the entry's stored contents compute to.
    pub computed: [u8; 32],
    /// The first of its ids (`event_id`, then `stream_id`) whose stored text is not the
    /// canonical text of its value, if any. The hash covers the value, not the text, so
    /// this is the only sign of such a change.
    pub non_canonical: Option<NonCanonicalId>,
}

impl HashedEntry {
    /// `e`'s links and hashes, its hash computed with `hasher`; `non_canonical` is what
    /// the backend found of the text its ids were stored as (a `LogEntry` no longer
    /// holds it).
    pub fn of(
        e: &LogEntry,
        non_canonical: Option<NonCanonicalId>,
        hasher: &mut EntryHasher,
    ) -> Self {
        HashedEntry {
            position: e.position,
            stream_id: e.stream_id,
            version: e.version,
            prev_hash: e.prev_hash,
            hash: e.hash,
            computed: hasher.hash(&e.fields()),
            non_canonical,
        }
    }
}

/// A log column that holds a ULID as text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdColumn {
    EventId,
    StreamId,
}

impl IdColumn {
    /// The column's name in both backends' `events` table.
    pub fn name(self) -> &'static str {
        match self {
            IdColumn::EventId => "event_id",
            IdColumn::StreamId => "stream_id",
        }
    }
}

/// A ULID column whose stored text decodes to `value` but is not `value`'s canonical
/// text (what `Ulid::to_string` gives: upper case, first digit 0 to 7). Decoding accepts
/// lower case, and drops the bits of a first digit above 7, so such text hashes like
/// the original; but reads look entries up by the canonical text (`read_stream` by
/// `stream_id`, dedupe by `event_id`) and miss it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NonCanonicalId {
    pub column: IdColumn,
    /// The stored text (26 ASCII digits: anything else does not decode).
    pub found: [u8; ULID_LEN],
    /// The value it decodes to.
    pub value: Ulid,
}

impl NonCanonicalId {
    /// `Some` when `found`, stored in `column` and decoding to `value`, is not the
    /// canonical text of `value`: one encoding into a buffer on the stack and a 26-byte
    /// comparison, cheap enough for every row `verify` reads.
    pub fn check(column: IdColumn, found: &[u8; ULID_LEN], value: u128) -> Option<Self> {
        let mut canonical = [0; ULID_LEN];
        Ulid(value).array_to_str(&mut canonical);
        (*found != canonical).then_some(NonCanonicalId {
            column,
            found: *found,
            value: Ulid(value),
        })
    }
}

/// What `Store::scan_log_hashed` hands each batch to: the entries, in order.
pub type HashedVisit<'v> = dyn for<'e> FnMut(&'e [HashedEntry]) -> ControlFlow<()> + Send + 'v;

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

impl DocChange {
    /// The key it changes.
    pub fn key(&self) -> &str {
        match self {
            DocChange::Put { key, .. } | DocChange::Delete { key } => key,
        }
    }
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Appends the streams' events atomically, in order: all are written or none is.
    /// Fails with `Conflict` when any stream's version is not the expected one.
    async fn append(
        &self,
        recorded_at: i64,
        batch: Vec<StreamAppend>,
    ) -> Result<Vec<LogEntry>, StoreError> {
        self.append_routed(recorded_at, batch, vec![]).await
    }

    /// Like `append`, and in the same transaction adds `outgoing` to the partners'
    /// outbound channels (the transactional outbox).
    async fn append_routed(
        &self,
        recorded_at: i64,
        batch: Vec<StreamAppend>,
        outgoing: Vec<Outgoing>,
    ) -> Result<Vec<LogEntry>, StoreError>;

    /// The current version of a stream (0 when it has no events).
    async fn stream_version(&self, stream_id: Ulid) -> Result<u64, StoreError>;

    /// All events of one stream in order, optionally only those at or before `to_position`.
    async fn read_stream(
        &self,
        stream_id: Ulid,
        to_position: Option<u64>,
    ) -> Result<Vec<LogEntry>, StoreError>;

    /// The events of one stream with a version greater than `after_version`, in order: the
    /// tail a cached fold of the stream needs to catch up. Backends may override this
    /// default (which reads the whole stream) with a query that reads only the tail.
    async fn read_stream_after(
        &self,
        stream_id: Ulid,
        after_version: u64,
    ) -> Result<Vec<LogEntry>, StoreError> {
        let mut all = self.read_stream(stream_id, None).await?;
        all.retain(|e| e.version > after_version);
        Ok(all)
    }

    /// The tails of several streams at once: for each `(stream, after_version)` asked, in
    /// that order, its events with a version greater than `after_version`, in version
    /// order. What a run of snapshot misses folds, in one round trip instead of one per
    /// stream. Backends may override this default, which reads them one at a time.
    async fn read_streams_after(
        &self,
        streams: &[(Ulid, u64)],
    ) -> Result<Vec<Vec<LogEntry>>, StoreError> {
        let mut out = Vec::with_capacity(streams.len());
        for (id, after) in streams {
            out.push(self.read_stream_after(*id, *after).await?);
        }
        Ok(out)
    }

    /// Up to `limit` (at most [`MAX_READ_BATCH`]) entries with position greater than `after`, in order.
    async fn read_log(&self, after: u64, limit: u32) -> Result<Vec<LogEntry>, StoreError>;

    /// Hands every entry with a position greater than `after` to `visit`, in order, in
    /// non-empty batches of at most [`MAX_READ_BATCH`] (their size is the backend's choice),
    /// until a read finds no more entries or `visit` returns `ControlFlow::Break`. Like the
    /// loop over `read_log` this default is, each batch is read on its own, so the walk also
    /// sees entries appended while it runs. For a walk over the whole log (`verify_log`):
    /// backends may override it to read ahead while the caller works on the previous batch,
    /// and to reuse the batches' memory.
    async fn scan_log(
        &self,
        after: u64,
        visit: &mut (dyn for<'e> FnMut(&'e [LogEntry]) -> ControlFlow<()> + Send),
    ) -> Result<(), StoreError> {
        let mut from = after;
        loop {
            let batch = self.read_log(from, MAX_READ_BATCH).await?;
            let Some(last) = batch.last() else {
                return Ok(());
            };
            from = last.position;
            if visit(&batch).is_break() {
                return Ok(());
            }
        }
    }

    /// Like `scan_log` over the entries with a position in `(after, upto]` (`None`: to the
    /// end), each entry handed over as what `verify_log` checks of it, with the hash its
    /// stored contents compute to. The hashes are computed where the entries are read: a
    /// backend that reads on a thread of its own hashes there, so `verify_log`, which scans
    /// several ranges at once, reads and hashes on several cores; and a backend may hash
    /// straight from its rows without building a `LogEntry`. There is no default (a loop
    /// over `read_log`): each backend must also check the form its ids are stored in
    /// ([`HashedEntry::non_canonical`]), which a `LogEntry` no longer shows.
    async fn scan_log_hashed(
        &self,
        after: u64,
        upto: Option<u64>,
        visit: &mut HashedVisit<'_>,
    ) -> Result<(), StoreError>;

    /// The distinct streams with an event of one of `types` at a position in
    /// `(after, to]`, in no particular order. Lets a caller watch for rare events (the
    /// daemon, outsourcing moves with deadlines) without reading every entry. Backends
    /// may override this default, which walks the log.
    async fn streams_with_types(
        &self,
        after: u64,
        to: u64,
        types: &[&str],
    ) -> Result<Vec<Ulid>, StoreError> {
        let mut found = std::collections::BTreeSet::new();
        let mut from = after;
        while from < to {
            let batch = self.read_log(from, MAX_READ_BATCH).await?;
            let Some(last) = batch.last() else { break };
            from = last.position;
            for e in batch.iter().filter(|e| e.position <= to) {
                if types.contains(&e.event_type.as_str()) {
                    found.insert(e.stream_id);
                }
            }
        }
        Ok(found.into_iter().collect())
    }

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

    /// Up to `limit` documents of a projection with keys after `after` (from the first
    /// with `None`), ordered by key (by bytes on both backends): a page of a walk over a
    /// projection too large to hold at once.
    async fn list_docs_page(
        &self,
        projection: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// SHA-256 over every document of a projection in key order (by bytes): for each, the
    /// key's length in bytes (u64, little-endian), the key, the document's length (the
    /// same) and the document. Two projections with the same digest hold the same bytes.
    /// This default reads page by page with `list_docs_page`; backends may override it to
    /// read one snapshot and hash where they read.
    async fn digest_docs(&self, projection: &str) -> Result<[u8; 32], StoreError> {
        let mut h = DocsDigest::default();
        let mut after: Option<String> = None;
        loop {
            // Page by page: a projection can be far larger than what should be held at once.
            let page = self
                .list_docs_page(projection, after.as_deref(), DIGEST_PAGE)
                .await?;
            for (k, doc) in &page {
                h.add(k.as_bytes(), doc);
            }
            match page.into_iter().last() {
                Some((k, _)) => after = Some(k),
                None => return Ok(h.finish()),
            }
        }
    }

    /// The documents of a projection whose keys start with `prefix`, ordered by key (by
    /// bytes on both backends).
    async fn list_docs_prefix(
        &self,
        projection: &str,
        prefix: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

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
    /// Backends may leave the rows to `reclaim_projections`.
    async fn reset_projection(&self, projection: &str) -> Result<(), StoreError>;

    /// Replaces projection `live` with the documents and checkpoint of `shadow`, and drops
    /// `shadow`, in one transaction: readers see the old projection or the new one, never a
    /// mix. It costs the same whatever the projections' sizes: the names point at
    /// generations of documents, and the replaced generation's rows are left to
    /// `reclaim_projections`.
    async fn replace_projection(&self, shadow: &str, live: &str) -> Result<(), StoreError>;

    /// Deletes up to `limit` documents of the projection generations that
    /// `replace_projection` and `reset_projection` dropped, in one transaction, and
    /// forgets a generation once its documents are gone. Returns how many it deleted: 0
    /// when nothing is left. Until then those rows stay in the database (unreadable, but
    /// taking space); callers loop, so that other writers get in between.
    async fn reclaim_projections(&self, limit: u32) -> Result<u64, StoreError>;

    /// Reads an instance setting.
    async fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError>;

    /// Writes an instance setting.
    async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError>;

    /// Adds or replaces a partner.
    async fn put_partner(&self, p: &Partner) -> Result<(), StoreError>;

    async fn get_partner(&self, name: &str) -> Result<Option<Partner>, StoreError>;

    /// Every partner, by name.
    async fn list_partners(&self) -> Result<Vec<Partner>, StoreError>;

    /// The last entry of the outbound channel to `partner`.
    async fn outbox_head(&self, partner: &str) -> Result<ChannelHead, StoreError>;

    /// Up to `limit` outbound entries to `partner` after seq `after`, in order.
    async fn read_outbox(
        &self,
        partner: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<ChannelEntry>, StoreError>;

    /// The highest outbound seq the broker acknowledged for `partner`.
    async fn outbox_acked(&self, partner: &str) -> Result<u64, StoreError>;

    /// Records that the broker acknowledged everything up to `seq` (never moves back).
    async fn set_outbox_acked(&self, partner: &str, seq: u64) -> Result<(), StoreError>;

    /// The last inbound entry applied from `partner`.
    async fn inbound_head(&self, partner: &str) -> Result<ChannelHead, StoreError>;

    /// Applies inbound entry `entry` of the channel `from` → `to` in one transaction: checks
    /// that it is the next entry and continues the chain, appends `batch` (leaving out
    /// events the log already holds), records `quarantine` (kind, detail, event id) if
    /// given, and moves the channel checkpoint. Nothing is written unless it is `Applied`.
    async fn apply_inbound(
        &self,
        from: &str,
        to: &str,
        entry: &ChannelEntry,
        recorded_at: i64,
        batch: Vec<StreamAppend>,
        quarantine: Option<(String, String, Option<String>)>,
    ) -> Result<Inbound, StoreError>;

    /// Applies several consecutive inbound entries of the channel `from` → `to`, each with
    /// the events it carries, like `apply_inbound` does one: in order, stopping at the
    /// first entry that is not `Applied` (its outcome is the last one returned). Backends
    /// override this default (one `apply_inbound` after the other) to commit them in one
    /// transaction. On an error nothing of that transaction is written.
    async fn apply_inbound_many(
        &self,
        from: &str,
        to: &str,
        recorded_at: i64,
        items: Vec<(ChannelEntry, Vec<StreamAppend>)>,
    ) -> Result<Vec<Inbound>, StoreError> {
        let mut out = Vec::with_capacity(items.len());
        for (entry, batch) in items {
            let r = self
                .apply_inbound(from, to, &entry, recorded_at, batch, None)
                .await?;
            let applied = matches!(r, Inbound::Applied { .. });
            out.push(r);
            if !applied {
                break;
            }
        }
        Ok(out)
    }

    /// Records a refused message that has no place in a channel (undecodable, forged).
    async fn quarantine_message(
        &self,
        partner: &str,
        kind: &str,
        detail: &str,
        body: &[u8],
        received_at: i64,
    ) -> Result<(), StoreError>;

    /// Every quarantine record, oldest first.
    async fn list_quarantine(&self) -> Result<Vec<QuarantineRecord>, StoreError>;
}

/// Documents read per page by the default `Store::digest_docs`.
pub const DIGEST_PAGE: u32 = 2_000;

/// The hash `Store::digest_docs` computes, document by document in key order.
#[derive(Default)]
pub struct DocsDigest(Sha256);

impl DocsDigest {
    pub fn add(&mut self, key: &[u8], doc: &[u8]) {
        self.0.update((key.len() as u64).to_le_bytes());
        self.0.update(key);
        self.0.update((doc.len() as u64).to_le_bytes());
        self.0.update(doc);
    }

    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// The smallest string greater than every string that starts with `prefix` (`None` when
/// there is none: every string from `prefix` on starts with it), so that a prefix scan is
/// the key range `[prefix, upper)`.
pub fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(c) = chars.pop() {
        // The next scalar value after `c` (skipping the surrogate gap).
        let next = (c as u32 + 1..=char::MAX as u32).find_map(char::from_u32);
        if let Some(n) = next {
            chars.push(n);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::prefix_upper_bound;

    #[test]
    fn the_upper_bound_of_a_prefix_is_its_last_character_moved_up() {
        assert_eq!(prefix_upper_bound("ab/").as_deref(), Some("ab0"));
        assert_eq!(
            prefix_upper_bound("a\u{D7FF}").as_deref(),
            Some("a\u{E000}")
        );
        assert_eq!(prefix_upper_bound("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_upper_bound("\u{10FFFF}"), None);
        assert_eq!(prefix_upper_bound(""), None);
    }
}
