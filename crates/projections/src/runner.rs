//! The projection runner: applies the log to a projection in batches, writing each
//! batch's documents and the new checkpoint in one transaction, so a crash at any point
//! leaves rows and checkpoint consistent and the next run resumes exactly there.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::pin::Pin;

use ticketsync_store::{DocChange, Store, StoreError};
use ticketsync_wire::{LogEntry, WireError};

/// Log entries applied per transaction. 1,000: with projections in a file of their own
/// the sync daemon's projection task keeps up with the inbound applier and works in full
/// batches; over 1M replicated events 2,000 raised the daemon's peak RSS by several MiB
/// (65.5-69.4 against 59.7-66.7 MiB) for no speed that the runs could tell apart.
pub const RUN_BATCH: u32 = 1_000;
/// Log entries applied per transaction while rebuilding into a shadow: larger, so a
/// ticket's document is read, parsed and written fewer times over a full pass.
pub const REBUILD_BATCH: u32 = 10_000;
/// Most keys a rebuild remembers having written (as 8-byte hashes, some 20 MiB at most);
/// past that it looks every key up, as a catch-up does.
pub const MAX_WRITTEN_KEYS: usize = 2_000_000;
/// Documents of dropped projection generations deleted per transaction: bounded, so that
/// appends and projection commits get the write lock in between.
pub const RECLAIM_CHUNK: u32 = 50_000;
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
    /// The keys of the documents these entries read (or overwrite, having read them).
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
    catch_up_batched(store, p, stored_as, RUN_BATCH, false, progress).await
}

/// The keys a rebuild has written into its shadow so far, as hashes: a key that is not
/// among them cannot be in the shadow, which started empty, so the rebuild need not look
/// it up (most of its keys are new: each item is written once). A hash that is among them
/// only costs the lookup the runner would have made anyway.
struct Written {
    hashes: HashSet<u64>,
}

impl Written {
    fn hash(key: &str) -> u64 {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        h.finish()
    }

    /// The keys that may exist.
    fn filter(&self, keys: Vec<String>) -> Vec<String> {
        keys.into_iter()
            .filter(|k| self.hashes.contains(&Self::hash(k)))
            .collect()
    }

    /// Notes the keys a commit wrote; `false` once the limit is reached, when the set has
    /// to be given up.
    fn note(&mut self, changes: &[DocChange]) -> bool {
        for c in changes {
            match c {
                DocChange::Put { key, .. } => {
                    self.hashes.insert(Self::hash(key));
                }
                DocChange::Delete { .. } => {}
            }
        }
        self.hashes.len() <= MAX_WRITTEN_KEYS
    }
}

/// What a commit that is still running leaves under a key.
enum Pending {
    Doc(Vec<u8>),
    Deleted,
}

/// The documents a commit that is still running writes, by key: the next batch is
/// computed while that commit runs, so what it loads is read through these.
#[derive(Default)]
struct Overlay {
    docs: BTreeMap<String, Pending>,
}

impl Overlay {
    fn of(changes: &[DocChange]) -> Self {
        let mut docs = BTreeMap::new();
        // In order: the last change to a key is the one the commit leaves.
        for c in changes {
            let p = match c {
                DocChange::Put { doc, .. } => Pending::Doc(doc.clone()),
                DocChange::Delete { .. } => Pending::Deleted,
            };
            docs.insert(c.key().to_string(), p);
        }
        Overlay { docs }
    }
}

/// Loads what `entries` read, as the projection will be once the commit whose changes
/// `overlay` holds is done, whether it is done yet or not: keys the overlay has are taken
/// from it, the rest from the store, where that commit did not touch them.
async fn load(
    store: &dyn Store,
    p: &dyn Projection,
    stored_as: &str,
    entries: &[LogEntry],
    overlay: &Overlay,
    written: Option<&Written>,
) -> Result<HashMap<String, Vec<u8>>, ProjectionError> {
    let mut docs = HashMap::new();
    let mut wanted = Vec::new();
    for key in p.keys(entries) {
        match overlay.docs.get(&key) {
            Some(Pending::Doc(doc)) => {
                docs.insert(key, doc.clone());
            }
            Some(Pending::Deleted) => {}
            None => wanted.push(key),
        }
    }
    if let Some(w) = written {
        wanted = w.filter(wanted);
    }
    if !wanted.is_empty() {
        docs.extend(store.load_docs(stored_as, &wanted).await?);
    }
    for prefix in p.prefixes(entries) {
        docs.extend(store.list_docs_prefix(stored_as, &prefix).await?);
        for (key, doc) in overlay
            .docs
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
        {
            match doc {
                Pending::Doc(d) => docs.insert(key.clone(), d.clone()),
                Pending::Deleted => docs.remove(key),
            };
        }
    }
    Ok(docs)
}

/// `catch_up_as` with `batch` log entries per transaction. `fresh`: the projection was
/// just reset and only this call writes it, so it can track what exists (see `Written`);
/// if another runner's commit shows up, it goes back to looking every key up.
///
/// Each batch is computed while the previous one commits (and the next is read from the
/// log): the projection's commits run on the store's side, the projection's `apply` here,
/// so the two use both cores. If that commit finds that another runner moved the
/// checkpoint, the batch computed on top of it is thrown away.
async fn catch_up_batched(
    store: &dyn Store,
    p: &dyn Projection,
    stored_as: &str,
    batch: u32,
    fresh: bool,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<u64, ProjectionError> {
    let mut races = 0;
    // Where the store's checkpoint is, as far as this runner knows.
    let mut from = store.projection_checkpoint(stored_as).await?;
    let mut written = (fresh && from == 0).then(|| Written {
        hashes: HashSet::new(),
    });
    let mut entries = store.read_log(from, batch).await?;
    // The commit in flight: where it moves the checkpoint, and what it writes.
    let mut pending: Option<(u64, Overlay)> = None;
    let mut commit: Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + '_>> =
        Box::pin(async { Ok(()) });
    loop {
        let Some(last) = entries.last() else {
            // Only the commit in flight is left.
            let Some((to, _)) = pending.take() else {
                return Ok(from);
            };
            match std::mem::replace(&mut commit, Box::pin(async { Ok(()) })).await {
                Ok(()) => {
                    progress(to);
                    return Ok(to);
                }
                Err(StoreError::CheckpointMoved { actual, .. }) if races < MAX_CHECKPOINT_RACES => {
                    races += 1;
                    from = actual;
                    written = None;
                    entries = store.read_log(from, batch).await?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let base = pending.as_ref().map_or(from, |(to, _)| *to);
        let to = last.position;
        let overlay = pending.as_ref().map(|(_, o)| o);
        let empty = Overlay::default();
        let work = async {
            let started = std::time::Instant::now();
            let docs = load(
                store,
                p,
                stored_as,
                &entries,
                overlay.unwrap_or(&empty),
                written.as_ref(),
            )
            .await?;
            let loaded = started.elapsed();
            let changes = p.apply(docs, &entries);
            // `load_us` includes waiting for the commit in flight, which holds the
            // projection connection (SQLite).
            tracing::debug!(
                projection = stored_as,
                entries = entries.len(),
                load_us = loaded.as_micros() as u64,
                apply_us = (started.elapsed() - loaded).as_micros() as u64,
                "projection batch computed"
            );
            changes
        };
        let (committed, changes, next) = futures::join!(commit, work, store.read_log(to, batch));
        match committed {
            Ok(()) => {
                if pending.is_some() {
                    from = base;
                    progress(base);
                }
            }
            Err(StoreError::CheckpointMoved { actual, .. }) if races < MAX_CHECKPOINT_RACES => {
                // Another process applied these entries first; continue from where it got,
                // looking up every key from now on: it wrote keys this runner has not seen.
                // The batch computed on top of the lost commit goes too.
                races += 1;
                from = actual;
                written = None;
                pending = None;
                commit = Box::pin(async { Ok(()) });
                entries = store.read_log(from, batch).await?;
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        let changes = changes?;
        if let Some(w) = &mut written {
            if !w.note(&changes) {
                written = None;
            }
        }
        let next = next?;
        pending = Some((to, Overlay::of(&changes)));
        commit = Box::pin(store.commit_projection(stored_as, from, to, changes));
        entries = next;
    }
}

/// Brings a projection up to the end of the log.
pub async fn catch_up(store: &dyn Store, p: &dyn Projection) -> Result<u64, ProjectionError> {
    catch_up_as(store, p, p.name(), &mut |_| {}).await
}

/// SHA-256 over every document of a stored projection, in key order (see
/// `Store::digest_docs`). Two projections with the same digest hold the same bytes.
pub async fn digest(store: &dyn Store, stored_as: &str) -> Result<[u8; 32], ProjectionError> {
    Ok(store.digest_docs(stored_as).await?)
}

/// Deletes the rows of every dropped projection generation, [`RECLAIM_CHUNK`] per
/// transaction; returns how many.
pub async fn reclaim(store: &dyn Store) -> Result<u64, ProjectionError> {
    let mut total = 0;
    loop {
        match store.reclaim_projections(RECLAIM_CHUNK).await? {
            0 => return Ok(total),
            n => total += n,
        }
    }
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
/// leaves the live projection untouched. The replaced projection's rows stay in the store
/// until [`reclaim`] (which callers run next, and every rebuild runs first). While writers keep appending, the two digests
/// are only comparable when both copies reach the same position; rebuild retries a few
/// times for that and otherwise compares what it has.
pub async fn rebuild(
    store: &dyn Store,
    p: &dyn Projection,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<Rebuilt, ProjectionError> {
    let shadow = format!("{}.rebuild", p.name());
    store.reset_projection(&shadow).await?;
    // What an interrupted rebuild (or a caller that did not reclaim) left goes first.
    reclaim(store).await?;
    // The live projection is digested while the shadow is computed: the two overlap on
    // the two connections. The digest holds if the live projection has not moved on
    // meanwhile and the shadow reached the same position.
    let live_at = catch_up(store, p).await?;
    let (rebuilt_at, live_digest) = futures::join!(
        catch_up_batched(store, p, &shadow, REBUILD_BATCH, true, progress),
        digest(store, p.name())
    );
    let mut position = rebuilt_at?;
    let mut live_digest = live_digest?;
    if position != live_at || store.projection_checkpoint(p.name()).await? != live_at {
        for _ in 0..MAX_CHECKPOINT_RACES {
            let live = catch_up(store, p).await?;
            position = catch_up_as(store, p, &shadow, progress).await?;
            if live == position {
                break;
            }
        }
        live_digest = digest(store, p.name()).await?;
    }
    let rebuilt_digest = digest(store, &shadow).await?;
    store.replace_projection(&shadow, p.name()).await?;
    Ok(Rebuilt {
        live_digest,
        rebuilt_digest,
        position,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ticketsync_store::{SqliteStore, StreamAppend};
    use ticketsync_wire::NewEntry;
    use ulid::Ulid;

    /// Keeps the positions of every entry it applied in a JSON array under "x", read and
    /// written back by each batch.
    struct Collector;

    impl Projection for Collector {
        fn name(&self) -> &str {
            "collector"
        }
        fn keys(&self, _: &[LogEntry]) -> Vec<String> {
            vec!["x".into()]
        }
        fn apply(
            &self,
            docs: HashMap<String, Vec<u8>>,
            entries: &[LogEntry],
        ) -> Result<Vec<DocChange>, ProjectionError> {
            let mut seen: Vec<u64> = match docs.get("x") {
                Some(d) => serde_json::from_slice(d).map_err(|e| ProjectionError::BadDoc {
                    key: "x".into(),
                    reason: e.to_string(),
                })?,
                None => Vec::new(),
            };
            seen.extend(entries.iter().map(|e| e.position));
            Ok(vec![DocChange::Put {
                key: "x".into(),
                doc: serde_json::to_vec(&seen).expect("numbers serialize"),
            }])
        }
    }

    async fn store_with(entries: u64) -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::create(&dir.path().join("t.db")).await.unwrap();
        let stream = Ulid::from_parts(1, 1);
        let entries = (0..entries)
            .map(|i| NewEntry {
                event_id: Ulid::from_parts(2, u128::from(i)),
                stream_id: stream,
                schema_version: 1,
                event_type: "Anything".into(),
                occurred_at: 0,
                actor_instance: "acme".into(),
                actor_user: "ana".into(),
                link_seq: 0,
                payload: vec![],
            })
            .collect();
        store
            .append(
                0,
                vec![StreamAppend {
                    stream_id: stream,
                    expected_version: 0,
                    entries,
                }],
            )
            .await
            .unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn each_batch_reads_what_the_previous_one_wrote_while_that_commit_runs() {
        let (_dir, store) = store_with(5).await;
        // Batches of two: each next batch is computed while the commit before it is in
        // flight, so it reads "x" through that commit's overlay.
        let to = catch_up_batched(&store, &Collector, "collector", 2, false, &mut |_| {})
            .await
            .unwrap();
        assert_eq!(to, 5);
        let docs = store.load_docs("collector", &["x".into()]).await.unwrap();
        assert_eq!(docs["x"], b"[1,2,3,4,5]".to_vec());
    }
}
