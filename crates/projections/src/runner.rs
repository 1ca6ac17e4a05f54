//! The projection runner: applies the log to a projection in batches, writing each
//! batch's documents and the new checkpoint in one transaction, so a crash at any point
//! leaves rows and checkpoint consistent and the next run resumes exactly there.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use ticketsync_store::{DocChange, Store, StoreError};
use ticketsync_wire::{LogEntry, WireError};

/// Log entries applied per transaction.
pub const RUN_BATCH: u32 = 2_000;
/// Log entries applied per transaction while rebuilding into a shadow: larger, so a
/// ticket's document is read, parsed and written fewer times over a full pass.
pub const REBUILD_BATCH: u32 = 10_000;
/// Documents read per page while digesting a projection.
pub const DIGEST_PAGE: u32 = 2_000;
/// How many times a runner re-reads after another runner moved the checkpoint first.
pub const MAX_CHECKPOINT_RACES: u32 = 16;

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("log position {position}: {source}")]
    Decode { position: u64, source: WireError },
    #[error("projection document {key:?} is unreadable: {reason}")]
    BadDoc { key: String, reason: String },
}

/// A read model kept from the log. Documents are opaque bytes keyed by string.
pub trait Projection: Send + Sync {
    /// The name its documents and checkpoint are stored under.
    fn name(&self) -> &str;
    /// The keys of the documents these entries read or write.
    fn keys(&self, entries: &[LogEntry]) -> Vec<String>;
    /// Key prefixes of further documents these entries read (every document whose key
    /// starts with one of them is loaded too). None by default.
    fn prefixes(&self, _entries: &[LogEntry]) -> Vec<String> {
        Vec::new()
    }
    /// Applies the entries, in order, to the loaded documents (`docs` holds every key from
    /// `keys` that exists and every document under `prefixes`) and returns the changes to
    /// store.
    fn apply(
        &self,
        docs: HashMap<String, Vec<u8>>,
        entries: &[LogEntry],
    ) -> Result<Vec<DocChange>, ProjectionError>;
}

/// Applies everything after the projection's checkpoint, stored under `stored_as` (the
/// projection's own name, or a shadow name during a rebuild). Returns the new checkpoint.
pub async fn catch_up_as(
    store: &dyn Store,
    p: &dyn Projection,
    stored_as: &str,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<u64, ProjectionError> {
    catch_up_batched(store, p, stored_as, RUN_BATCH, progress).await
}

/// `catch_up_as` with `batch` log entries per transaction.
async fn catch_up_batched(
    store: &dyn Store,
    p: &dyn Projection,
    stored_as: &str,
    batch: u32,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<u64, ProjectionError> {
    let mut races = 0;
    let mut from = store.projection_checkpoint(stored_as).await?;
    let mut entries = store.read_log(from, batch).await?;
    loop {
        let Some(last) = entries.last() else {
            return Ok(from);
        };
        let to = last.position;
        let mut docs = store.load_docs(stored_as, &p.keys(&entries)).await?;
        for prefix in p.prefixes(&entries) {
            docs.extend(store.list_docs_prefix(stored_as, &prefix).await?);
        }
        let changes = p.apply(docs, &entries)?;
        // Read the next batch while this one commits: the log is read on the store's main
        // connections and projections commit on their own, so the two overlap.
        let (committed, next) = futures::join!(
            store.commit_projection(stored_as, from, to, changes),
            store.read_log(to, batch)
        );
        match committed {
            Ok(()) => {
                from = to;
                progress(to);
                entries = next?;
            }
            Err(StoreError::CheckpointMoved { actual, .. }) if races < MAX_CHECKPOINT_RACES => {
                // Another process applied these entries first; continue from where it got.
                races += 1;
                from = actual;
                entries = store.read_log(from, batch).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Brings a projection up to the end of the log.
pub async fn catch_up(store: &dyn Store, p: &dyn Projection) -> Result<u64, ProjectionError> {
    catch_up_as(store, p, p.name(), &mut |_| {}).await
}

/// SHA-256 over every document of a stored projection, in key order. Two projections with
/// the same digest hold the same bytes.
pub async fn digest(store: &dyn Store, stored_as: &str) -> Result<[u8; 32], ProjectionError> {
    let mut h = Sha256::new();
    let mut after: Option<String> = None;
    loop {
        // Page by page: a projection can be far larger than what should be held at once.
        let page = store
            .list_docs_page(stored_as, after.as_deref(), DIGEST_PAGE)
            .await?;
        for (k, doc) in &page {
            h.update((k.len() as u64).to_le_bytes());
            h.update(k.as_bytes());
            h.update((doc.len() as u64).to_le_bytes());
            h.update(doc);
        }
        match page.into_iter().last() {
            Some((k, _)) => after = Some(k),
            None => break,
        }
    }
    Ok(h.finalize().into())
}

/// The outcome of a rebuild.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rebuilt {
    /// Digest of the live projection, caught up to `position`, just before the swap.
    pub live_digest: [u8; 32],
    /// Digest of the projection recomputed from position 1 up to `position`.
    pub rebuilt_digest: [u8; 32],
    /// Log position both were computed up to.
    pub position: u64,
}

/// Recomputes a projection from the start of the log into a shadow copy, then swaps it in
/// atomically: readers keep seeing the old projection until the swap, and a crash midway
/// leaves the live projection untouched. While writers keep appending, the two digests
/// are only comparable when both copies reach the same position; rebuild retries a few
/// times for that and otherwise compares what it has.
pub async fn rebuild(
    store: &dyn Store,
    p: &dyn Projection,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<Rebuilt, ProjectionError> {
    let shadow = format!("{}.rebuild", p.name());
    store.reset_projection(&shadow).await?;
    let mut position = catch_up_batched(store, p, &shadow, REBUILD_BATCH, progress).await?;
    for _ in 0..MAX_CHECKPOINT_RACES {
        let live = catch_up(store, p).await?;
        position = catch_up_as(store, p, &shadow, progress).await?;
        if live == position {
            break;
        }
    }
    // Both digests at once: each walks a whole projection, on its own connection.
    let (live_digest, rebuilt_digest) =
        futures::join!(digest(store, p.name()), digest(store, &shadow));
    let (live_digest, rebuilt_digest) = (live_digest?, rebuilt_digest?);
    store.replace_projection(&shadow, p.name()).await?;
    Ok(Rebuilt {
        live_digest,
        rebuilt_digest,
        position,
    })
}
