//! The SQLite backend copies its writers' WAL into the database files on a thread of its
//! own: what was committed reaches the database file without further commits, the WAL
//! stays bounded while a writer never stops, and dropping the store ends the threads.

use std::path::Path;
use std::time::Duration;

use ticketsync_domain::{Event, ItemId};
use ticketsync_store::{CheckpointStats, DocChange, SqliteStore, Store, BACKSTOP_PAGES};
use ticketsync_testkit::wait_until;
use ticketsync_wire::{encode_event, NewEntry, SCHEMA_VERSION};
use ulid::Ulid;

const T0: i64 = 1_741_948_200_000;

/// `n` notes of `text_bytes` each for a new ticket `stream`, as one append.
fn ticket(stream: u128, n: usize, text_bytes: usize) -> ticketsync_store::StreamAppend {
    let stream_id = Ulid((0x0195_9A3C_0000u128 << 80) | stream);
    let entries = (0..n)
        .map(|i| {
            let event = Event::NoteAdded {
                item: ItemId(Ulid(
                    (0x0195_9A3E_0000u128 << 80) | (stream << 20) | i as u128,
                )),
                text: "x".repeat(text_bytes),
                internal: false,
            };
            NewEntry {
                link_seq: 0,
                event_id: Ulid((0x0195_9A3D_0000u128 << 80) | (stream << 20) | i as u128),
                stream_id,
                schema_version: SCHEMA_VERSION,
                event_type: event.type_name().to_string(),
                occurred_at: T0,
                actor_instance: "acme".into(),
                actor_user: "jane".into(),
                payload: encode_event(&event).expect("event encodes"),
            }
        })
        .collect();
    ticketsync_store::StreamAppend {
        stream_id,
        expected_version: 0,
        entries,
    }
}

/// Waits until `done` holds for both files' stats, or fails after 20 s (the checkpoint
/// threads are plain threads: a blocking poll does not hold them up).
fn wait_for(
    store: &SqliteStore,
    what: &str,
    done: impl Fn(&CheckpointStats) -> bool,
) -> (CheckpointStats, CheckpointStats) {
    wait_until(Duration::from_secs(20), what, || {
        let (db, docs) = store.checkpoint_stats();
        done(&db) && done(&docs)
    });
    store.checkpoint_stats()
}

fn wal_bytes(db: &Path) -> u64 {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).map_or(0, |m| m.len())
}

#[tokio::test]
async fn what_was_committed_reaches_the_database_files_without_another_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ticketsync.db");
    let store = SqliteStore::create(&path).await.unwrap();
    for t in 0..20 {
        store.append(T0, vec![ticket(t, 50, 200)]).await.unwrap();
    }
    let docs: Vec<DocChange> = (0..500)
        .map(|i| DocChange::Put {
            key: format!("ticket/{i:04}"),
            doc: format!("{{\"n\":{i}}}").into_bytes(),
        })
        .collect();
    store
        .commit_projection("tickets", 0, 1_000, docs)
        .await
        .unwrap();
    let (db, docs) = wait_for(&store, "every commit copied", |s| {
        s.commits > 0 && s.copied == s.commits
    });
    assert_eq!(db.commits, 20, "{db:?}");
    assert_eq!(docs.commits, 1, "{docs:?}");
    assert_eq!(db.failures + docs.failures, 0);

    // The database files alone, without their WAL, hold everything.
    let copy = tempfile::tempdir().unwrap();
    let copy_path = copy.path().join("ticketsync.db");
    std::fs::copy(&path, &copy_path).unwrap();
    std::fs::copy(
        SqliteStore::projections_path(&path),
        SqliteStore::projections_path(&copy_path),
    )
    .unwrap();
    let copied = SqliteStore::open(&copy_path).await.unwrap();
    assert_eq!(copied.head().await.unwrap(), store.head().await.unwrap());
    assert_eq!(copied.head().await.unwrap().position, 1_000);
    assert_eq!(
        copied.projection_checkpoint("tickets").await.unwrap(),
        1_000
    );
    let loaded = copied
        .load_docs("tickets", &["ticket/0499".to_string()])
        .await
        .unwrap();
    assert_eq!(loaded["ticket/0499"], b"{\"n\":499}");
}

#[tokio::test]
async fn the_wal_stays_bounded_while_a_writer_never_stops() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ticketsync.db");
    let store = SqliteStore::create(&path).await.unwrap();
    // About 24 MiB of log in all, more than the backstop lets the WAL hold.
    let (batches, per_batch, text) = (60u128, 200, 2_000);
    let mut largest = 0;
    for t in 0..batches {
        store
            .append(T0, vec![ticket(t, per_batch, text)])
            .await
            .unwrap();
        largest = largest.max(wal_bytes(&path));
    }
    let total = (batches as u64) * (per_batch as u64) * (text as u64);
    // The backstop's pages, one batch more (a checkpoint only runs between commits) and
    // SQLite's page headers and index pages.
    let bound = BACKSTOP_PAGES as u64 * 4_096 + (per_batch as u64) * (text as u64) * 2;
    assert!(total > bound, "the test writes too little to show a bound");
    assert!(
        largest <= bound,
        "the WAL reached {largest} bytes, past {bound}"
    );
    wait_for(&store, "every commit copied", |s| s.copied == s.commits);
}

/// Threads of this process whose name starts with `prefix` (nextest runs each test in a
/// process of its own, so they are this test's).
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter(|t| {
            let comm = t.as_ref().unwrap().path().join("comm");
            std::fs::read_to_string(comm).is_ok_and(|n| n.starts_with(prefix))
        })
        .count()
}

/// Waits until `n` threads' names start with `prefix`, or fails after 10 s (a thread names
/// itself once it runs, and leaves the list just after it is joined).
fn wait_threads(prefix: &str, n: usize, what: &str) {
    wait_until(Duration::from_secs(10), what, || threads_named(prefix) == n);
}

#[tokio::test]
async fn dropping_the_store_ends_its_checkpoint_threads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ticketsync.db");
    let store = SqliteStore::create(&path).await.unwrap();
    // The log writer's and the projection connection's, named "ckpt log writer" and
    // "ckpt projection" (Linux keeps 15 bytes of a name).
    wait_threads("ckpt ", 2, "both checkpoint threads started");
    store.append(T0, vec![ticket(1, 10, 100)]).await.unwrap();
    let again = store.clone();
    drop(store);
    assert_eq!(threads_named("ckpt "), 2, "a clone keeps them");
    drop(again);
    wait_threads(
        "ckpt ",
        0,
        "no checkpoint thread after the last clone was dropped",
    );
}
