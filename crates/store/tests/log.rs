//! The store contract for the log, run against every backend (a fresh SQLite file and a
//! fresh PostgreSQL database per test): appends and reads, optimistic concurrency, the
//! database-enforced append-only rule, tamper detection by `verify_log`, schema guards on
//! open, and projection commits. Each generic test runs as `sqlite::NAME` and
//! `postgres::NAME`; the few that need one backend's own tooling (SQLite's file bytes and
//! `INSERT OR REPLACE`; PostgreSQL's `TRUNCATE`, `session_replication_role`, server
//! errors) are named `sqlite_*` and `postgres_*`.

#[macro_use]
mod support;

use std::collections::{BTreeMap, HashSet};
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};
use support::{Db, Kind};
use ticketsync_domain::{Event, ItemId};
use ticketsync_store::{
    verify_log, verify_log_cut_at, DocChange, Head, PgStore, SqliteStore, Store, StoreError,
    StreamAppend, VerifyReport, MAX_READ_BATCH, STORE_SCHEMA,
};
use ticketsync_wire::{
    decode_event, encode_event, LogEntry, NewEntry, GENESIS_HASH, SCHEMA_VERSION,
};
use ulid::Ulid;

/// 2025-03-14T10:30:00Z, the `recorded_at` of the first append in these tests.
const T0: i64 = 1_741_948_200_000;

fn stream(n: u8) -> Ulid {
    Ulid((0x0195_9A3C_0000u128 << 80) | u128::from(n))
}

/// A fresh event id; unique within the test process.
fn next_event_id() -> Ulid {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    Ulid((0x0195_9A3D_0000u128 << 80) | u128::from(NEXT.fetch_add(1, Ordering::Relaxed)))
}

fn new_entry(event: &Event, user: &str) -> NewEntry {
    NewEntry {
        link_seq: 0,
        event_id: next_event_id(),
        stream_id: Ulid::nil(), // the store takes the stream from the StreamAppend
        schema_version: SCHEMA_VERSION,
        event_type: event.type_name().to_string(),
        occurred_at: T0 - 1_000,
        actor_instance: "acme".into(),
        actor_user: user.into(),
        payload: encode_event(event).expect("event encodes"),
    }
}

fn created(title: &str) -> Event {
    Event::TicketCreated {
        title: title.into(),
        description: "Printer jams — tray 2".into(),
        customer: Some("Müller GmbH".into()),
        status: "New".into(),
    }
}

fn note(text: &str) -> Event {
    Event::NoteAdded {
        item: ItemId(next_event_id()),
        text: text.into(),
        internal: false,
    }
}

/// A batch part for `stream` whose entries carry the stream id (as a caller would set it).
fn part(stream_id: Ulid, expected_version: u64, events: &[Event]) -> StreamAppend {
    StreamAppend {
        stream_id,
        expected_version,
        entries: events
            .iter()
            .map(|e| NewEntry {
                link_seq: 0,
                stream_id,
                ..new_entry(e, "jane")
            })
            .collect(),
    }
}

fn notes(n: usize, tag: &str) -> Vec<Event> {
    (0..n).map(|i| note(&format!("{tag} #{i}"))).collect()
}

/// Logs up to this long are also verified cut into ranges at every position.
const CUT_EVERYWHERE_UP_TO: u64 = 64;

/// What `verify_log` reports, after checking that cutting the log into ranges, wherever
/// the cuts fall (at the first or last entry of a range, around a tampered entry, a range
/// per entry, past the end), reports exactly what one walk over the whole log does.
async fn verify(store: &dyn Store) -> VerifyReport {
    let report = verify_log(store, &mut |_| {}).await.expect("verify runs");
    let cut = |cuts: Vec<u64>| async move {
        verify_log_cut_at(store, &cuts, &mut |_| {})
            .await
            .expect("verify runs")
    };
    let whole = cut(vec![]).await;
    assert_eq!(report, whole, "verify_log reports what one walk does");
    let end = store
        .read_log(0, MAX_READ_BATCH)
        .await
        .expect("read_log")
        .last()
        .map_or(0, |e| e.position)
        .max(store.head().await.expect("head").position);
    if end <= CUT_EVERYWHERE_UP_TO {
        for c in 1..=end + 1 {
            assert_eq!(cut(vec![c]).await, whole, "cut after position {c}");
        }
        for c in 1..end {
            assert_eq!(
                cut(vec![c, c + 1]).await,
                whole,
                "a one-entry range at {}",
                c + 1
            );
        }
        assert_eq!(cut((1..=end).collect()).await, whole, "one range per entry");
    } else {
        assert_eq!(cut(vec![end / 3, end / 2]).await, whole, "cut in three");
    }
    report
}

async fn assert_verifies(store: &dyn Store, entries: u64) {
    let report = verify(store).await;
    assert_eq!(report.problem, None, "the log should verify");
    assert_eq!(report.checked, entries);
    assert_eq!(report.last_good, store.head().await.expect("head"));
}

/// Asserts `verify_log` names `kind` at `position`.
async fn assert_problem(store: &dyn Store, position: u64, kind: &str) -> VerifyReport {
    let report = verify(store).await;
    let problem = report
        .problem
        .clone()
        .unwrap_or_else(|| panic!("tampering went unnoticed; expected {kind} at {position}"));
    assert_eq!(
        (problem.position, problem.kind),
        (position, kind),
        "reported: {}",
        problem.detail
    );
    report
}

fn is_conflict(r: &Result<Vec<LogEntry>, StoreError>) -> bool {
    matches!(r, Err(StoreError::Conflict { .. }))
}

async fn all_entries(store: &dyn Store) -> Vec<LogEntry> {
    store.read_log(0, MAX_READ_BATCH).await.expect("read_log")
}

/// Builds the six-entry log the tamper tests work on:
/// 1 A v1 created, 2 A v2 note, 3 B v1 created, 4 A v3 note, 5 B v2 note, 6 A v4 note.
async fn six_entry_log(kind: Kind) -> Db {
    let db = Db::fresh(kind).await;
    let s = &*db.store;
    let (a, b) = (stream(0xA), stream(0xB));
    s.append(T0, vec![part(a, 0, &[created("A"), note("a1")])])
        .await
        .expect("append 1-2");
    s.append(T0 + 1, vec![part(b, 0, &[created("B")])])
        .await
        .expect("append 3");
    s.append(T0 + 2, vec![part(a, 2, &[note("a2")])])
        .await
        .expect("append 4");
    s.append(T0 + 3, vec![part(b, 1, &[note("b1")])])
        .await
        .expect("append 5");
    s.append(T0 + 4, vec![part(a, 3, &[note("a3")])])
        .await
        .expect("append 6");
    assert_verifies(s, 6).await;
    db
}

// ---------------------------------------------------------------------------------------
// Raw SQL for tampering, as an attacker with write access to the database would do it.

const COLUMNS: &str = "position, event_id, stream_id, version, schema_version, event_type, \
     occurred_at, recorded_at, actor_instance, actor_user, link_seq, payload, prev_hash, hash";

fn text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// An INSERT of `e` exactly as given, in the backend's SQL.
fn insert_sql(kind: Kind, e: &LogEntry) -> String {
    format!(
        "INSERT INTO events ({COLUMNS}) VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
        e.position,
        text(&e.event_id.to_string()),
        text(&e.stream_id.to_string()),
        e.version,
        e.schema_version,
        text(&e.event_type),
        e.occurred_at,
        e.recorded_at,
        text(&e.actor_instance),
        text(&e.actor_user),
        e.link_seq,
        kind.blob_hex(&e.payload),
        kind.blob_hex(&e.prev_hash),
        kind.blob_hex(&e.hash),
    )
}

/// Moves every entry at or after `from` one position up, freeing `from` (in two steps, so
/// no position is held twice at any moment, and none is ever below 1).
fn shift_up_from(from: u64) -> String {
    format!(
        "UPDATE events SET position = position + 1000 WHERE position >= {from}; \
         UPDATE events SET position = position - 999 WHERE position >= 1000"
    )
}

// ---------------------------------------------------------------------------------------
// Appending and reading.

async fn an_empty_log_has_the_genesis_head_and_verifies(kind: Kind) {
    let db = Db::fresh(kind).await;
    let s = &*db.store;
    assert_eq!(
        s.head().await.unwrap(),
        Head {
            position: 0,
            hash: GENESIS_HASH
        }
    );
    assert_eq!(s.count_entries().await.unwrap(), 0);
    assert_eq!(s.stream_version(stream(1)).await.unwrap(), 0);
    assert!(s.read_log(0, 100).await.unwrap().is_empty());
    assert!(s.read_stream(stream(1), None).await.unwrap().is_empty());
    assert!(s.stream_versions().await.unwrap().is_empty());
    assert_eq!(
        s.get_meta("store_schema").await.unwrap().as_deref(),
        Some(STORE_SCHEMA.to_string().as_str())
    );
    assert_verifies(s, 0).await;
}

async fn appended_entries_read_back_in_order_with_a_contiguous_chain(kind: Kind) {
    let db = Db::fresh(kind).await;
    let s = &*db.store;
    let (a, b) = (stream(1), stream(2));
    let first_events = [created("Printer"), note("first note"), note("second")];
    let first = s
        .append(T0, vec![part(a, 0, &first_events)])
        .await
        .expect("append A");
    let second = s
        .append(
            T0 + 10,
            vec![
                part(b, 0, &[created("Other")]),
                part(a, 3, &[note("A again")]),
            ],
        )
        .await
        .expect("append B and A");
    let written: Vec<LogEntry> = first.iter().chain(&second).cloned().collect();

    // Positions 1.., versions per stream, stream ids and timestamps as given.
    let shape: Vec<(u64, Ulid, u64, i64)> = written
        .iter()
        .map(|e| (e.position, e.stream_id, e.version, e.recorded_at))
        .collect();
    assert_eq!(
        shape,
        vec![
            (1, a, 1, T0),
            (2, a, 2, T0),
            (3, a, 3, T0),
            (4, b, 1, T0 + 10),
            (5, a, 4, T0 + 10),
        ]
    );
    let mut prev = GENESIS_HASH;
    for e in &written {
        assert_eq!(e.prev_hash, prev, "position {}", e.position);
        assert_eq!(e.compute_hash(), e.hash, "position {}", e.position);
        prev = e.hash;
    }

    // What was returned is what is stored.
    assert_eq!(all_entries(s).await, written);
    let page = s.read_log(2, 2).await.unwrap();
    assert_eq!(
        page.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![3, 4]
    );
    assert!(s.read_log(5, 10).await.unwrap().is_empty());
    assert!(s.read_log(0, 0).await.unwrap().is_empty());

    let stream_a = s.read_stream(a, None).await.unwrap();
    assert_eq!(
        stream_a.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert!(stream_a.iter().all(|e| e.stream_id == a));
    let a_upto_4 = s.read_stream(a, Some(4)).await.unwrap();
    assert_eq!(
        a_upto_4.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(
        s.read_stream(b, None).await.unwrap(),
        vec![written[3].clone()]
    );

    // The payloads decode to the events that were appended.
    let decoded: Vec<Event> = stream_a[..3]
        .iter()
        .map(|e| decode_event(e.schema_version, &e.payload).expect("decodes"))
        .collect();
    assert_eq!(decoded, first_events.to_vec());
    assert_eq!(stream_a[0].event_type, "ticket_created");
    assert_eq!(stream_a[0].actor_instance, "acme");
    assert_eq!(stream_a[0].actor_user, "jane");
    assert_eq!(stream_a[0].occurred_at, T0 - 1_000);

    assert_eq!(
        s.head().await.unwrap(),
        Head {
            position: 5,
            hash: written[4].hash
        }
    );
    assert_eq!(s.count_entries().await.unwrap(), 5);
    assert_eq!(s.stream_version(a).await.unwrap(), 4);
    assert_eq!(s.stream_version(b).await.unwrap(), 1);
    assert_eq!(s.stream_version(stream(3)).await.unwrap(), 0);
    let versions = s.stream_versions().await.unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!((versions[&a], versions[&b]), (4, 1));
    assert_verifies(s, 5).await;

    // The log survives closing and reopening the file.
    db.close().await;
    let reopened = db.open_again().await.expect("reopen");
    assert_eq!(all_entries(&*reopened).await, written);
    assert_eq!(reopened.head().await.unwrap().position, 5);
    assert_verifies(&*reopened, 5).await;
}

async fn an_empty_batch_appends_nothing(kind: Kind) {
    let db = Db::fresh(kind).await;
    let s = &*db.store;
    s.append(T0, vec![part(stream(1), 0, &[created("x")])])
        .await
        .unwrap();
    let head = s.head().await.unwrap();
    assert!(s.append(T0 + 1, vec![]).await.unwrap().is_empty());
    assert!(s
        .append(T0 + 1, vec![part(stream(1), 1, &[])])
        .await
        .unwrap()
        .is_empty());
    assert_eq!(s.head().await.unwrap(), head);
    assert_eq!(s.count_entries().await.unwrap(), 1);
    // Even with no entries, a stale expected version is a conflict.
    assert!(is_conflict(
        &s.append(T0 + 1, vec![part(stream(1), 0, &[])]).await
    ));
}

async fn a_stale_expected_version_is_a_conflict_and_writes_nothing(kind: Kind) {
    let db = Db::fresh(kind).await;
    let s = &*db.store;
    let a = stream(1);
    s.append(T0, vec![part(a, 0, &[created("x"), note("y")])])
        .await
        .unwrap();
    let head = s.head().await.unwrap();

    for (expected, stream_id, actual) in [(1, a, 2), (0, a, 2), (3, a, 2), (5, stream(9), 0)] {
        match s
            .append(T0 + 1, vec![part(stream_id, expected, &[note("late")])])
            .await
        {
            Err(StoreError::Conflict {
                stream_id: sid,
                expected: e,
                actual: got,
            }) => {
                assert_eq!((sid, e, got), (stream_id, expected, actual));
            }
            other => panic!("expected a conflict at expected version {expected}, got {other:?}"),
        }
    }
    assert_eq!(s.count_entries().await.unwrap(), 2);
    assert_eq!(s.head().await.unwrap(), head);
    assert_eq!(s.stream_version(a).await.unwrap(), 2);
    assert_eq!(s.stream_version(stream(9)).await.unwrap(), 0);
    assert_verifies(s, 2).await;
}

/// Single-event appends from two handles on one database (as from two processes), each
/// sealing against the head it saw last: every append lands at the next position on the
/// chain, a stale expected version is still a conflict that writes nothing, and the log
/// verifies.
async fn single_appends_from_two_handles_interleave_on_one_chain(kind: Kind) {
    let db = Db::fresh(kind).await;
    let first = db.store.clone();
    let second = db.open_again().await.expect("second handle");
    let a = stream(1);
    first
        .append(T0, vec![part(a, 0, &[created("x")])])
        .await
        .unwrap();
    let mut version = 1;
    for round in 0..6u64 {
        // Alternate which handle writes, so each one's last-seen head is stale in turn.
        let (writer, other) = if round % 2 == 0 {
            (&second, &first)
        } else {
            (&first, &second)
        };
        let written = writer
            .append(T0 + 1, vec![part(a, version, &[note("n")])])
            .await
            .unwrap();
        version += 1;
        assert_eq!(written.len(), 1);
        assert_eq!(
            (written[0].position, written[0].version),
            (version, version)
        );
        assert_eq!(other.head().await.unwrap().hash, written[0].hash);
        // The other handle, one version behind, is refused and writes nothing.
        match other
            .append(T0 + 2, vec![part(a, version - 1, &[note("late")])])
            .await
        {
            Err(StoreError::Conflict {
                expected, actual, ..
            }) => assert_eq!((expected, actual), (version - 1, version)),
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    assert_eq!(first.count_entries().await.unwrap(), version);
    assert_eq!(second.stream_version(a).await.unwrap(), version);
    assert_verifies(&*first, version).await;
}

async fn a_batch_whose_second_stream_is_stale_writes_nothing_at_all(kind: Kind) {
    let db = Db::fresh(kind).await;
    let s = &*db.store;
    let (a, b) = (stream(1), stream(2));
    s.append(T0, vec![part(a, 0, &[created("A")])])
        .await
        .unwrap();
    s.append(T0, vec![part(b, 0, &[created("B"), note("b")])])
        .await
        .unwrap();
    let head = s.head().await.unwrap();
    let before = all_entries(s).await;

    let result = s
        .append(
            T0 + 1,
            vec![
                part(a, 1, &[note("a1"), note("a2")]), // current: would be written first
                part(b, 1, &[note("b stale")]),        // stale: b is at version 2
            ],
        )
        .await;
    match result {
        Err(StoreError::Conflict {
            stream_id,
            expected: 1,
            actual: 2,
        }) => assert_eq!(stream_id, b),
        other => panic!("expected a conflict on the second stream, got {other:?}"),
    }
    assert_eq!(s.count_entries().await.unwrap(), 3);
    assert_eq!(s.head().await.unwrap(), head);
    assert_eq!(s.stream_version(a).await.unwrap(), 1);
    assert_eq!(s.read_stream(a, None).await.unwrap().len(), 1);
    assert_eq!(all_entries(s).await, before);

    // The rolled-back attempt left no hole and no lock: the corrected batch follows on.
    let ok = s
        .append(
            T0 + 2,
            vec![
                part(a, 1, &[note("a1"), note("a2")]),
                part(b, 2, &[note("b")]),
            ],
        )
        .await
        .expect("the corrected batch appends");
    assert_eq!(
        ok.iter()
            .map(|e| (e.position, e.stream_id, e.version))
            .collect::<Vec<_>>(),
        vec![(4, a, 2), (5, a, 3), (6, b, 3)]
    );
    assert_eq!(ok[0].prev_hash, head.hash);
    assert_verifies(s, 6).await;
}

async fn one_stream_twice_in_a_batch_counts_its_own_earlier_part(kind: Kind) {
    let db = Db::fresh(kind).await;
    let s = &*db.store;
    let a = stream(1);
    let ok = s
        .append(
            T0,
            vec![part(a, 0, &[created("A")]), part(a, 1, &[note("n")])],
        )
        .await
        .expect("second part expects the version after the first");
    assert_eq!(ok.iter().map(|e| e.version).collect::<Vec<_>>(), vec![1, 2]);
    let stale = s
        .append(T0, vec![part(a, 2, &[note("x")]), part(a, 2, &[note("y")])])
        .await;
    assert!(is_conflict(&stale), "{stale:?}");
    assert_eq!(s.count_entries().await.unwrap(), 2);
    assert_verifies(s, 2).await;
}

async fn a_duplicate_event_id_fails_the_whole_batch(kind: Kind) {
    let db = Db::fresh(kind).await;
    let s = &*db.store;
    let first = s
        .append(T0, vec![part(stream(1), 0, &[created("A")])])
        .await
        .unwrap();
    let mut dup = part(stream(2), 0, &[created("B"), note("n")]);
    dup.entries[1].event_id = first[0].event_id;
    assert!(s.append(T0 + 1, vec![dup]).await.is_err());
    assert_eq!(s.count_entries().await.unwrap(), 1);
    assert_eq!(s.stream_version(stream(2)).await.unwrap(), 0);
    assert_eq!(s.head().await.unwrap().hash, first[0].hash);
    assert_verifies(s, 1).await;
}

async fn read_log_caps_a_page_and_verify_walks_every_page(kind: Kind) {
    let db = Db::fresh(kind).await;
    let s = &*db.store;
    let total = u64::from(MAX_READ_BATCH) + 1;
    let events = notes(total as usize, "bulk");
    s.append(T0, vec![part(stream(1), 0, &events)])
        .await
        .expect("bulk append");

    let page = s.read_log(0, u32::MAX).await.unwrap();
    assert_eq!(page.len(), MAX_READ_BATCH as usize);
    assert_eq!(page.last().unwrap().position, u64::from(MAX_READ_BATCH));
    let rest = s.read_log(u64::from(MAX_READ_BATCH), 10).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].position, total);

    let mut progress = Vec::new();
    let report = verify_log(s, &mut |n| progress.push(n)).await.unwrap();
    assert_eq!(report.problem, None);
    assert_eq!(report.checked, total);
    assert_eq!(progress, vec![u64::from(MAX_READ_BATCH), total]);
}

/// Collects what `scan_log(after)` hands over: the batches' sizes and every entry.
async fn scan(store: &dyn Store, after: u64) -> (Vec<usize>, Vec<LogEntry>) {
    let (mut sizes, mut seen) = (Vec::new(), Vec::new());
    store
        .scan_log(after, &mut |batch| {
            sizes.push(batch.len());
            seen.extend_from_slice(batch);
            ControlFlow::Continue(())
        })
        .await
        .expect("scan_log");
    (sizes, seen)
}

fn assert_batches(sizes: &[usize]) {
    assert!(
        sizes.iter().all(|&n| n > 0 && n <= MAX_READ_BATCH as usize),
        "batches are non-empty and at most a page: {sizes:?}"
    );
}

async fn scan_log_hands_over_every_entry_after_a_position_in_order(kind: Kind) {
    let db = Db::fresh(kind).await;
    let s = &*db.store;
    assert_eq!(scan(s, 0).await, (vec![], vec![]), "an empty log");
    let page = u64::from(MAX_READ_BATCH);
    let total = 2 * page + 7;
    // Two streams interleaved, so entries differ in every field a reader fills in.
    let (a, b) = (stream(1), stream(2));
    let mut versions = (0, 0);
    while versions.0 + versions.1 < total {
        let n = 1_000.min(total - versions.0 - versions.1) as usize;
        let (sa, sb) = (n / 2, n - n / 2);
        let mut pb = part(
            b,
            versions.1,
            &notes(sb, "b: a longer note than stream a's"),
        );
        for e in &mut pb.entries {
            e.actor_user = "bob".into();
            e.link_seq = 3;
        }
        s.append(
            T0 + versions.0 as i64,
            vec![part(a, versions.0, &notes(sa, "a")), pb],
        )
        .await
        .expect("append");
        versions = (versions.0 + sa as u64, versions.1 + sb as u64);
    }
    let mut pages = Vec::new();
    let mut after = 0;
    loop {
        let p = s.read_log(after, MAX_READ_BATCH).await.unwrap();
        let Some(last) = p.last() else { break };
        after = last.position;
        pages.extend(p);
    }
    assert_eq!(pages.len() as u64, total);

    let (sizes, seen) = scan(s, 0).await;
    assert_batches(&sizes);
    assert!(seen == pages, "scan_log hands over what read_log returns");

    let (sizes, seen) = scan(s, page + 3).await;
    assert_batches(&sizes);
    assert!(seen[..] == pages[page as usize + 3..]);

    assert_eq!(
        scan(s, total).await,
        (vec![], vec![]),
        "nothing after the last"
    );
    assert_eq!(scan(s, total + 10).await, (vec![], vec![]));
}

async fn scan_log_stops_when_the_visitor_breaks(kind: Kind) {
    let db = Db::fresh(kind).await;
    let s = &*db.store;
    let total = u64::from(MAX_READ_BATCH) + 1;
    s.append(T0, vec![part(stream(1), 0, &notes(total as usize, "bulk"))])
        .await
        .expect("bulk append");
    let mut calls = Vec::new();
    s.scan_log(0, &mut |batch| {
        calls.push(batch[0].position);
        ControlFlow::Break(())
    })
    .await
    .expect("scan_log");
    assert_eq!(calls, vec![1], "one batch, from the start, then no more");
    // The store stays usable, and a scan may start again.
    assert_eq!(scan(s, 0).await.1.len() as u64, total);
    assert_verifies(s, total).await;
}

async fn concurrent_writers_to_one_stream_get_versions_1_to_200_without_gaps(kind: Kind) {
    const TASKS: u64 = 8;
    const PER_TASK: u64 = 25;
    const MAX_ATTEMPTS: u32 = 10_000;
    let db = Db::fresh(kind).await;
    let a = stream(1);
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let store = db.store.clone();
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..PER_TASK {
                let entry = NewEntry {
                    link_seq: 0,
                    stream_id: a,
                    ..new_entry(&note(&format!("task {t} event {i}")), &format!("user{t}"))
                };
                let mut attempts = 0;
                let written = loop {
                    attempts += 1;
                    assert!(attempts <= MAX_ATTEMPTS, "task {t} starved");
                    let expected = store.stream_version(a).await.expect("version");
                    let batch = vec![StreamAppend {
                        stream_id: a,
                        expected_version: expected,
                        entries: vec![entry.clone()],
                    }];
                    match store.append(T0 + (t * 100 + i) as i64, batch).await {
                        Ok(w) => break w,
                        Err(StoreError::Conflict { .. }) => continue,
                        Err(e) => panic!("task {t}: {e}"),
                    }
                };
                assert_eq!(written.len(), 1);
                mine.push((entry.event_id, written[0].version));
            }
            mine
        }));
    }
    let mut by_event = BTreeMap::new();
    for h in handles {
        let mine = h.await.expect("task finished");
        // Each task's own events got increasing versions.
        assert!(mine.windows(2).all(|w| w[0].1 < w[1].1), "{mine:?}");
        by_event.extend(mine);
    }
    let total = TASKS * PER_TASK;
    assert_eq!(by_event.len() as u64, total);

    let s = &*db.store;
    let stored = s.read_stream(a, None).await.unwrap();
    assert_eq!(
        stored.iter().map(|e| e.version).collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    assert_eq!(
        stored.iter().map(|e| e.position).collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    for e in &stored {
        assert_eq!(by_event.get(&e.event_id), Some(&e.version));
    }
    assert_eq!(
        stored
            .iter()
            .map(|e| e.event_id)
            .collect::<HashSet<_>>()
            .len() as u64,
        total
    );
    assert_eq!(s.stream_version(a).await.unwrap(), total);
    assert_eq!(s.count_entries().await.unwrap(), total);
    assert_eq!(s.head().await.unwrap().position, total);
    assert_verifies(s, total).await;
}

// ---------------------------------------------------------------------------------------
// Append-only, enforced by the database.

async fn the_database_refuses_update_and_delete_of_events(kind: Kind) {
    let db = six_entry_log(kind).await;
    let before = all_entries(&*db.store).await;
    let mut statements = vec![
        "UPDATE events SET actor_user = 'mallory' WHERE position = 2".to_string(),
        format!(
            "UPDATE events SET payload = {} WHERE position = 3",
            kind.blob_literal()
        ),
        "UPDATE events SET position = position + 100".to_string(),
        "DELETE FROM events WHERE position = 6".to_string(),
        "DELETE FROM events".to_string(),
    ];
    if kind == Kind::Postgres {
        statements.push("TRUNCATE events".to_string());
        statements.push(
            "INSERT INTO events SELECT * FROM events WHERE position = 2 \
             ON CONFLICT (position) DO UPDATE SET actor_user = 'mallory'"
                .to_string(),
        );
    }
    for sql in &statements {
        let err = db
            .exec_as_app(sql)
            .await
            .expect_err(&format!("the database accepted {sql}"));
        assert!(
            err.contains("append-only"),
            "{sql} failed for another reason: {err}"
        );
    }
    assert_eq!(all_entries(&*db.store).await, before);
    assert_verifies(&*db.store, 6).await;
}

#[tokio::test]
async fn sqlite_the_database_refuses_replacing_an_event_through_insert_or_replace() {
    // REPLACE deletes the conflicting row, and SQLite does not fire DELETE triggers for
    // that unless recursive_triggers is on: the append-only rule must hold here too, for a
    // clash on each unique key: the position, the event id, and the stream and version.
    let db = six_entry_log(Kind::Sqlite).await;
    let pool = db.sqlite().pool();
    let before = all_entries(&*db.store).await;
    let two = &before[1];
    let clashes = [
        (
            "the position",
            LogEntry {
                actor_user: "mallory".into(),
                ..two.clone()
            },
        ),
        (
            "the event id",
            LogEntry {
                position: 7,
                version: 9,
                ..two.clone()
            },
        ),
        (
            "the stream and version",
            LogEntry {
                position: 7,
                event_id: next_event_id(),
                ..two.clone()
            },
        ),
    ];
    for (key, e) in &clashes {
        let sql = insert_sql(Kind::Sqlite, e).replacen("INSERT", "INSERT OR REPLACE", 1);
        let err = sqlx::raw_sql(&sql)
            .execute(pool)
            .await
            .expect_err(&format!("INSERT OR REPLACE clashing on {key} went through"));
        assert!(
            err.to_string().contains("append-only"),
            "INSERT OR REPLACE clashing on {key} failed for another reason: {err}"
        );
        assert_eq!(all_entries(&*db.store).await, before, "clashing on {key}");
    }
    assert_verifies(&*db.store, 6).await;
}

// ---------------------------------------------------------------------------------------
// Tamper detection.

async fn verify_names_a_changed_payload_byte(kind: Kind) {
    let db = six_entry_log(kind).await;
    let mut payload = all_entries(&*db.store).await[3].payload.clone();
    let middle = payload.len() / 2;
    payload[middle] ^= 0x01;
    db.without_guards(
        "events",
        &format!(
            "UPDATE events SET payload = {} WHERE position = 4",
            kind.blob_hex(&payload)
        ),
    )
    .await;
    let entries = all_entries(&*db.store).await;
    assert_eq!(entries[3].payload, payload, "the tampering took");
    let report = assert_problem(&*db.store, 4, "hash_mismatch").await;
    assert_eq!(report.checked, 4);
    assert_eq!(
        report.last_good,
        Head {
            position: 3,
            hash: entries[2].hash
        }
    );
}

async fn verify_names_a_changed_actor(kind: Kind) {
    let db = six_entry_log(kind).await;
    db.without_guards(
        "events",
        "UPDATE events SET actor_user = 'mallory' WHERE position = 2",
    )
    .await;
    assert_problem(&*db.store, 2, "hash_mismatch").await;
}

/// Every stored column an entry's hash covers is checked: a change to any one of them
/// (verify hashes the stored values where it reads them) is named at that entry.
async fn verify_names_a_change_to_any_hashed_column(kind: Kind) {
    let other = Ulid(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef).to_string();
    let changes = [
        ("event_id", format!("'{other}'"), "hash_mismatch"),
        ("stream_id", format!("'{other}'"), "hash_mismatch"),
        ("version", "version + 10".to_string(), "hash_mismatch"),
        (
            "schema_version",
            "schema_version + 1".to_string(),
            "hash_mismatch",
        ),
        ("event_type", "'forged'".to_string(), "hash_mismatch"),
        (
            "occurred_at",
            "occurred_at + 1".to_string(),
            "hash_mismatch",
        ),
        (
            "recorded_at",
            "recorded_at - 1".to_string(),
            "hash_mismatch",
        ),
        ("actor_instance", "'mallory'".to_string(), "hash_mismatch"),
        ("actor_user", "''".to_string(), "hash_mismatch"),
        ("link_seq", "link_seq + 1".to_string(), "hash_mismatch"),
        ("payload", kind.blob_hex(b"forged"), "hash_mismatch"),
        ("prev_hash", kind.blob_hex(&[7; 32]), "prev_hash_mismatch"),
        ("hash", kind.blob_hex(&[7; 32]), "hash_mismatch"),
    ];
    for (column, value, problem) in changes {
        let db = six_entry_log(kind).await;
        let before = all_entries(&*db.store).await;
        db.without_guards(
            "events",
            &format!("UPDATE events SET {column} = {value} WHERE position = 4"),
        )
        .await;
        assert_ne!(
            all_entries(&*db.store).await,
            before,
            "the change to {column} took"
        );
        let report = verify(&*db.store).await;
        let found = report
            .problem
            .unwrap_or_else(|| panic!("a changed {column} went unnoticed"));
        assert_eq!((found.position, found.kind), (4, problem), "{column}");
        assert_eq!(report.last_good.position, 3, "{column}");
    }
}

/// A column holding a value of the wrong type reads as corrupt, in `verify` as in
/// `read_log` (verify reads the rows its own way on SQLite, where a column can hold any
/// type), rather than being hashed as whatever bytes SQLite would convert it to.
#[tokio::test]
async fn sqlite_verify_refuses_a_column_of_the_wrong_type_as_read_log_does() {
    for (column, value) in [
        ("event_type", "CAST('note_added' AS BLOB)"),
        ("actor_instance", "X'61636d65'"),
        ("event_id", "X'00'"),
        ("version", "'three'"),
        ("occurred_at", "1.5"),
        ("payload", "7"),
        ("prev_hash", "X'00'"),
    ] {
        let db = six_entry_log(Kind::Sqlite).await;
        db.without_guards(
            "events",
            &format!("UPDATE events SET {column} = {value} WHERE position = 4"),
        )
        .await;
        assert!(
            matches!(db.store.read_log(0, 10).await, Err(StoreError::Corrupt(_))),
            "read_log with {column} = {value}"
        );
        match verify_log(&*db.store, &mut |_| {}).await {
            Err(StoreError::Corrupt(why)) => assert!(why.contains(column), "{column}: {why}"),
            other => panic!("verify with {column} = {value}: {other:?}"),
        }
    }
}

/// `text` with its first digit moved up by 8 (`0` to `8`): the same 128-bit value, as
/// decoding drops the bits that do not fit.
fn first_digit_plus_8(text: &str) -> String {
    const DIGITS: &str = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let first = DIGITS.find(&text[..1]).expect("a canonical first digit");
    assert!(first < 8, "a canonical ULID starts with 0 to 7");
    format!("{}{}", &DIGITS[first + 8..first + 9], &text[1..])
}

/// An id rewritten into other text for the same value (lower case, or a first digit 8
/// higher, whose extra bit does not fit in 128) hashes like the original, but reads look
/// entries up by the canonical text and miss it: `verify` names it at that entry, while
/// reading the log goes on as before.
async fn verify_names_an_id_stored_as_other_text_for_the_same_value(kind: Kind) {
    type Rewrite = fn(&str) -> String;
    let rewrites: [(&str, Rewrite); 2] = [
        ("lower case", |t| t.to_ascii_lowercase()),
        ("first digit + 8", first_digit_plus_8),
    ];
    for column in ["event_id", "stream_id"] {
        for (how, rewrite) in rewrites {
            let db = six_entry_log(kind).await;
            let before = all_entries(&*db.store).await;
            let e = &before[3];
            let canonical = match column {
                "event_id" => e.event_id,
                _ => e.stream_id,
            }
            .to_string();
            let stored = rewrite(&canonical);
            assert_ne!(stored, canonical);
            assert_eq!(
                Ulid::from_string(&stored),
                Ok(Ulid::from_string(&canonical).unwrap())
            );
            db.without_guards(
                "events",
                &format!("UPDATE events SET {column} = '{stored}' WHERE position = 4"),
            )
            .await;
            let rows = db
                .count_rows(&format!("events WHERE {column} = '{stored}'"))
                .await;
            assert_eq!(rows, 1, "{column}, {how}: the tampering took");
            assert_eq!(
                all_entries(&*db.store).await,
                before,
                "{column}, {how}: the log reads as before"
            );
            if column == "stream_id" {
                let stream = db.store.read_stream(e.stream_id, None).await.unwrap();
                assert!(
                    stream.iter().all(|s| s.position != 4),
                    "{column}, {how}: the event dropped out of its stream"
                );
            }

            let report = verify(&*db.store).await;
            let found = report
                .problem
                .unwrap_or_else(|| panic!("{column} stored as {how} went unnoticed"));
            assert_eq!(
                (found.position, found.kind),
                (4, "non_canonical_id"),
                "{column}, {how}: {}",
                found.detail
            );
            assert!(
                found
                    .detail
                    .starts_with(&format!("{column} is stored as \"{stored}\"")),
                "{column}, {how}: {}",
                found.detail
            );
            assert!(found.detail.contains(&canonical), "{}", found.detail);
            assert!(!found.detail.contains('\n'), "{}", found.detail);
            assert_eq!(
                report.last_good,
                Head {
                    position: 3,
                    hash: before[2].hash
                },
                "{column}, {how}"
            );
            assert_eq!(report.checked, 4, "{column}, {how}");
        }
    }
}

/// With both ids rewritten, the event id is named (it is the first checked).
async fn verify_names_the_event_id_when_both_ids_are_stored_as_other_text(kind: Kind) {
    let db = six_entry_log(kind).await;
    let e = all_entries(&*db.store).await[1].clone();
    let (event, stream) = (
        e.event_id.to_string().to_ascii_lowercase(),
        first_digit_plus_8(&e.stream_id.to_string()),
    );
    db.without_guards(
        "events",
        &format!(
            "UPDATE events SET event_id = '{event}', stream_id = '{stream}' WHERE position = 2"
        ),
    )
    .await;
    let found = assert_problem(&*db.store, 2, "non_canonical_id")
        .await
        .problem
        .expect("a problem");
    assert!(
        found
            .detail
            .starts_with(&format!("event_id is stored as \"{event}\"")),
        "{}",
        found.detail
    );
}

async fn verify_names_a_deleted_middle_entry(kind: Kind) {
    let db = six_entry_log(kind).await;
    db.without_guards("events", "DELETE FROM events WHERE position = 3")
        .await;
    assert_eq!(
        db.store.count_entries().await.unwrap(),
        5,
        "the tampering took"
    );
    assert_problem(&*db.store, 3, "position_gap").await;
}

async fn verify_names_the_first_of_two_swapped_entries(kind: Kind) {
    let db = six_entry_log(kind).await;
    let entries = all_entries(&*db.store).await;
    let (two, five) = (entries[1].clone(), entries[4].clone());
    db.without_guards(
        "events",
        &format!(
            "DELETE FROM events WHERE position IN (2, 5); {}; {}",
            insert_sql(
                kind,
                &LogEntry {
                    position: 2,
                    ..five.clone()
                }
            ),
            insert_sql(kind, &LogEntry { position: 5, ..two }),
        ),
    )
    .await;
    assert_eq!(all_entries(&*db.store).await[1].event_id, five.event_id);
    assert_problem(&*db.store, 2, "prev_hash_mismatch").await;
}

async fn verify_names_a_forged_entry_inserted_in_the_middle(kind: Kind) {
    // The forger renumbers the tail and slips in an entry that reuses the chain values
    // found at that position.
    let db = six_entry_log(kind).await;
    let entries = all_entries(&*db.store).await;
    let forged = LogEntry {
        position: 4,
        event_id: next_event_id(),
        stream_id: stream(0xC),
        version: 1,
        actor_user: "mallory".into(),
        ..entries[3].clone()
    };
    db.without_guards(
        "events",
        &format!("{}; {}", shift_up_from(4), insert_sql(kind, &forged)),
    )
    .await;
    assert_eq!(db.store.count_entries().await.unwrap(), 7);
    assert_problem(&*db.store, 4, "hash_mismatch").await;
}

async fn verify_catches_a_correctly_sealed_forgery_at_the_next_link(kind: Kind) {
    // A forger who recomputes the forged entry's own hash makes position 4 look sound on
    // its own; the chain then breaks between it and the entry it displaced. The hash
    // chain cannot tell which of the two is the forgery, so the first bad link is 5.
    let db = six_entry_log(kind).await;
    let entries = all_entries(&*db.store).await;
    let new = NewEntry {
        link_seq: 0,
        stream_id: stream(0xC),
        ..new_entry(&created("forged"), "mallory")
    };
    let forged = LogEntry::seal(new, 4, 1, T0 + 2, entries[2].hash);
    db.without_guards(
        "events",
        &format!("{}; {}", shift_up_from(4), insert_sql(kind, &forged)),
    )
    .await;
    assert_problem(&*db.store, 5, "prev_hash_mismatch").await;
}

async fn verify_names_a_forged_entry_appended_past_the_recorded_head(kind: Kind) {
    // A correctly sealed entry appended after the last one, without moving the recorded
    // head: the walk is sound up to 7, and the head says the log ends at 6, so the first
    // position that is wrong is 7 (not 8, which does not exist).
    let db = six_entry_log(kind).await;
    let entries = all_entries(&*db.store).await;
    let new = NewEntry {
        link_seq: 0,
        stream_id: stream(0xA),
        ..new_entry(&note("forged"), "mallory")
    };
    let forged = LogEntry::seal(new, 7, 5, T0 + 5, entries[5].hash);
    // Inserts are not refused: that is how appends work.
    db.exec_raw(&insert_sql(kind, &forged)).await;
    assert_eq!(db.store.head().await.unwrap().position, 6);
    assert_problem(&*db.store, 7, "head_mismatch").await;
}

async fn verify_names_a_deleted_last_entry_as_a_head_mismatch(kind: Kind) {
    let db = six_entry_log(kind).await;
    let entries = all_entries(&*db.store).await;
    db.without_guards("events", "DELETE FROM events WHERE position = 6")
        .await;
    let report = assert_problem(&*db.store, 6, "head_mismatch").await;
    assert_eq!(
        report.last_good,
        Head {
            position: 5,
            hash: entries[4].hash
        }
    );
}

async fn verify_names_a_resealed_version_gap(kind: Kind) {
    // The last entry's version is changed and its hash and the head recomputed, so only
    // the stream's version sequence betrays it.
    let db = six_entry_log(kind).await;
    let entries = all_entries(&*db.store).await;
    let mut last = entries[5].clone();
    assert_eq!(last.version, 4);
    last.version = 5;
    last.hash = last.compute_hash();
    let hash = kind.blob_hex(&last.hash);
    db.without_guards(
        "events",
        &format!(
            "UPDATE events SET version = 5, hash = {hash} WHERE position = 6; \
             UPDATE log_head SET hash = {hash} WHERE id = 1"
        ),
    )
    .await;
    assert_problem(&*db.store, 6, "version_gap").await;
}

async fn verify_names_the_first_of_two_changed_entries_whichever_range_holds_them(kind: Kind) {
    // `verify` also walks the log cut into ranges everywhere: with a cut after 3 each
    // tampered entry is in a range of its own, the later range finds a problem too (maybe
    // before the earlier one does), and the report must still name 2.
    let db = six_entry_log(kind).await;
    db.without_guards(
        "events",
        "UPDATE events SET actor_user = 'mallory' WHERE position IN (2, 5)",
    )
    .await;
    let report = assert_problem(&*db.store, 2, "hash_mismatch").await;
    assert_eq!(report.checked, 2);
    let cut = verify_log_cut_at(&*db.store, &[3], &mut |_| {})
        .await
        .unwrap();
    assert_eq!(cut, report);
}

async fn verify_names_a_version_gap_that_only_the_join_of_two_ranges_sees(kind: Kind) {
    // B's second entry (position 5) is resealed as version 3, and the chain after it and
    // the head with it. Cut after 4, the range holding 5 meets B for the first time there:
    // only joining it to the range before (which left B at version 1) shows the gap.
    let db = six_entry_log(kind).await;
    let entries = all_entries(&*db.store).await;
    let mut five = entries[4].clone();
    assert_eq!((five.stream_id, five.version), (stream(0xB), 2));
    five.version = 3;
    five.hash = five.compute_hash();
    let mut six = entries[5].clone();
    six.prev_hash = five.hash;
    six.hash = six.compute_hash();
    let (h5, h6) = (kind.blob_hex(&five.hash), kind.blob_hex(&six.hash));
    db.without_guards(
        "events",
        &format!(
            "UPDATE events SET version = 3, hash = {h5} WHERE position = 5; \
             UPDATE events SET prev_hash = {h5}, hash = {h6} WHERE position = 6; \
             UPDATE log_head SET hash = {h6} WHERE id = 1"
        ),
    )
    .await;
    let report = assert_problem(&*db.store, 5, "version_gap").await;
    assert_eq!(report.checked, 5);
    assert_eq!(
        report.last_good,
        Head {
            position: 4,
            hash: entries[3].hash
        }
    );
    let cut = verify_log_cut_at(&*db.store, &[4], &mut |_| {})
        .await
        .unwrap();
    assert_eq!(cut, report);
}

async fn verify_names_a_recorded_stream_version_that_disagrees_with_the_log(kind: Kind) {
    let db = six_entry_log(kind).await;
    db.exec_raw(&format!(
        "UPDATE streams SET version = 9 WHERE stream_id = '{}'",
        stream(0xB)
    ))
    .await;
    assert_problem(&*db.store, 6, "stream_version_mismatch").await;
}

async fn verify_names_a_stream_missing_from_the_recorded_versions(kind: Kind) {
    // Without its `streams` row, the next append to B would expect version 0 and collide
    // with B's existing events: the recorded versions no longer agree with the log.
    let db = six_entry_log(kind).await;
    db.exec_raw(&format!(
        "DELETE FROM streams WHERE stream_id = '{}'",
        stream(0xB)
    ))
    .await;
    assert_eq!(db.store.stream_version(stream(0xB)).await.unwrap(), 0);
    assert_problem(&*db.store, 6, "stream_version_mismatch").await;
}

async fn verify_names_a_recorded_head_that_was_moved(kind: Kind) {
    let db = six_entry_log(kind).await;
    db.exec_raw("UPDATE log_head SET position = 9 WHERE id = 1")
        .await;
    assert_problem(&*db.store, 7, "head_mismatch").await;
}

// ---------------------------------------------------------------------------------------
// Opening databases.

/// Every table's rows, as text, for comparing a database before and after.
async fn dump(path: &Path) -> Vec<String> {
    let opts = SqliteConnectOptions::new().filename(path).read_only(true);
    let mut conn = SqliteConnection::connect_with(&opts)
        .await
        .expect("raw open");
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let mut out: Vec<String> = sqlx::query_scalar(
        "SELECT type || ' ' || name || ': ' || ifnull(sql, '') FROM sqlite_master ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    for t in tables {
        let cols: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info(?) ORDER BY cid")
                .bind(&t)
                .fetch_all(&mut conn)
                .await
                .unwrap();
        let row = cols
            .iter()
            .map(|c| format!("quote(\"{c}\")"))
            .collect::<Vec<_>>()
            .join(" || '|' || ");
        let rows: Vec<String> =
            sqlx::query_scalar(&format!("SELECT {row} FROM \"{t}\" ORDER BY 1"))
                .fetch_all(&mut conn)
                .await
                .unwrap();
        out.push(format!("{t}: {} rows", rows.len()));
        out.extend(rows.into_iter().map(|r| format!("{t}: {r}")));
    }
    let meta: Vec<(String, String)> = sqlx::query_as("SELECT key, value FROM meta ORDER BY key")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    out.extend(meta.into_iter().map(|(k, v)| format!("meta {k}={v}")));
    conn.close().await.unwrap();
    out
}

#[tokio::test]
async fn sqlite_a_database_from_a_newer_store_schema_is_refused_untouched() {
    let db = Db::fresh(Kind::Sqlite).await;
    db.store
        .append(T0, vec![part(stream(1), 0, &[created("x")])])
        .await
        .unwrap();
    db.store.set_meta("store_schema", "99").await.unwrap();
    db.close().await;
    let before_rows = dump(db.path()).await;
    let before_bytes = std::fs::read(db.path()).unwrap();
    assert!(before_rows.contains(&"meta store_schema=99".to_string()));

    match SqliteStore::open(db.path()).await {
        Err(StoreError::SchemaTooNew { found, supported }) => {
            assert_eq!((found, supported), (99, STORE_SCHEMA))
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    match SqliteStore::create(db.path()).await {
        Err(StoreError::SchemaTooNew { found: 99, .. }) => {}
        other => panic!("create must refuse too, got {other:?}"),
    }
    assert_eq!(dump(db.path()).await, before_rows);
    assert!(
        std::fs::read(db.path()).unwrap() == before_bytes,
        "the database file changed"
    );
}

async fn a_store_schema_that_is_not_a_number_is_corrupt(kind: Kind) {
    let db = Db::fresh(kind).await;
    db.store.set_meta("store_schema", "one").await.unwrap();
    db.close().await;
    match db.open_again().await {
        Err(StoreError::Corrupt(msg)) => assert!(msg.contains("one"), "{msg}"),
        Err(e) => panic!("expected Corrupt, got {e}"),
        Ok(_) => panic!("a store_schema that is not a number was accepted"),
    }
}

#[tokio::test]
async fn sqlite_opening_a_missing_file_is_not_initialized_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.sqlite");
    match SqliteStore::open(&path).await {
        Err(StoreError::NotInitialized(msg)) => {
            assert!(msg.contains("absent.sqlite"), "{msg}")
        }
        other => panic!("expected NotInitialized, got {other:?}"),
    }
    assert!(!path.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

async fn create_on_an_existing_store_keeps_its_log(kind: Kind) {
    let db = six_entry_log(kind).await;
    let before = all_entries(&*db.store).await;
    db.close().await;
    let again = db.create_again().await.expect("create again");
    assert_eq!(all_entries(&*again).await, before);
    assert_verifies(&*again, 6).await;
}

// ---------------------------------------------------------------------------------------
// Projections.

fn put(key: &str, doc: &str) -> DocChange {
    DocChange::Put {
        key: key.into(),
        doc: doc.as_bytes().to_vec(),
    }
}

fn docs(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

async fn list_docs_prefix_and_pages_return_exactly_their_keys_in_byte_order(kind: Kind) {
    let db = Db::fresh(kind).await;
    let s = &*db.store;
    // Neighbours on both sides of the range, a key equal to the prefix, keys whose next
    // character sorts before and after '/', and another projection's key under the prefix.
    let t = "01HZZZZZZZZZZZZZZZZZZZZZZZ";
    let keys = [
        "#numbers".to_string(),
        "01HZZZZZZZZZZZZZZZZZZZZZZY".to_string(),
        t.to_string(),
        format!("{t}/h/0000000000"),
        format!("{t}/i/01J0000000000000000000000A"),
        format!("{t}/i/01J0000000000000000000000B"),
        format!("{t}0"),
        format!("{t}/j"),
        format!("{t}/i"),
    ];
    let changes = keys.iter().map(|k| put(k, k)).collect();
    s.commit_projection("tickets", 0, 1, changes).await.unwrap();
    s.commit_projection("other", 0, 1, vec![put(&format!("{t}/i/x"), "other")])
        .await
        .unwrap();

    let under = |p: String| async move {
        s.list_docs_prefix("tickets", &p)
            .await
            .unwrap()
            .into_iter()
            .map(|(k, v)| {
                assert_eq!(k.as_bytes(), &v[..], "each document holds its key");
                k
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        under(format!("{t}/i/")).await,
        vec![
            format!("{t}/i/01J0000000000000000000000A"),
            format!("{t}/i/01J0000000000000000000000B"),
        ]
    );
    assert_eq!(
        under(t.to_string()).await,
        vec![
            t.to_string(),
            format!("{t}/h/0000000000"),
            format!("{t}/i"),
            format!("{t}/i/01J0000000000000000000000A"),
            format!("{t}/i/01J0000000000000000000000B"),
            format!("{t}/j"),
            format!("{t}0"),
        ]
    );
    assert!(under("zzz".into()).await.is_empty());
    assert_eq!(under("#".into()).await, vec!["#numbers".to_string()]);
    assert_eq!(
        under(String::new()).await.len(),
        keys.len(),
        "the empty prefix is everything"
    );

    // Paging walks every key once, in the same order as list_docs, whatever the page size.
    let all = s.list_docs("tickets").await.unwrap();
    assert_eq!(all.len(), keys.len());
    for limit in [1, 2, 4, 100] {
        let mut walked = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = s
                .list_docs_page("tickets", after.as_deref(), limit)
                .await
                .unwrap();
            assert!(page.len() <= limit as usize);
            match page.last() {
                Some((k, _)) => after = Some(k.clone()),
                None => break,
            }
            walked.extend(page);
        }
        assert_eq!(walked, all, "pages of {limit}");
    }
}

async fn a_projection_commit_from_a_stale_checkpoint_writes_nothing(kind: Kind) {
    let db = Db::fresh(kind).await;
    let s = &*db.store;
    assert_eq!(s.projection_checkpoint("tickets").await.unwrap(), 0);
    s.commit_projection("tickets", 0, 3, vec![put("a", "a@3"), put("b", "b@3")])
        .await
        .unwrap();
    assert_eq!(s.projection_checkpoint("tickets").await.unwrap(), 3);

    match s
        .commit_projection(
            "tickets",
            0,
            5,
            vec![
                put("c", "c@5"),
                put("a", "a@5"),
                DocChange::Delete { key: "b".into() },
            ],
        )
        .await
    {
        Err(StoreError::CheckpointMoved {
            projection,
            expected,
            actual,
        }) => assert_eq!((projection.as_str(), expected, actual), ("tickets", 0, 3)),
        other => panic!("expected CheckpointMoved, got {other:?}"),
    }
    assert_eq!(s.projection_checkpoint("tickets").await.unwrap(), 3);
    assert_eq!(
        s.list_docs("tickets").await.unwrap(),
        docs(&[("a", "a@3"), ("b", "b@3")])
    );
    let loaded = s
        .load_docs("tickets", &["a".into(), "c".into()])
        .await
        .unwrap();
    assert_eq!(loaded.len(), 1, "{loaded:?}");
    assert_eq!(loaded["a"], b"a@3".to_vec());

    // From the current checkpoint it goes through: puts overwrite, deletes delete.
    s.commit_projection(
        "tickets",
        3,
        5,
        vec![put("a", "a@5"), DocChange::Delete { key: "b".into() }],
    )
    .await
    .unwrap();
    assert_eq!(s.projection_checkpoint("tickets").await.unwrap(), 5);
    assert_eq!(s.list_docs("tickets").await.unwrap(), docs(&[("a", "a@5")]));
    assert_eq!(s.projection_checkpoint("billing").await.unwrap(), 0);
    assert!(s.list_docs("billing").await.unwrap().is_empty());
}

async fn two_projection_commits_racing_from_one_checkpoint_let_exactly_one_through(kind: Kind) {
    // Two runners that read the same checkpoint: the database lets one commit and tells
    // the other where the checkpoint went, also when the checkpoint row does not exist yet.
    let db = Db::fresh(kind).await;
    let s = &*db.store;
    for round in 0..10u64 {
        let from = round * 10;
        let (ra, rb) = tokio::join!(
            s.commit_projection(
                "tickets",
                from,
                from + 10,
                vec![put("k", &format!("a{round}"))]
            ),
            s.commit_projection(
                "tickets",
                from,
                from + 10,
                vec![put("k", &format!("b{round}"))]
            ),
        );
        let winner = match (&ra, &rb) {
            (Ok(()), Err(StoreError::CheckpointMoved { actual, .. })) if *actual == from + 10 => {
                "a"
            }
            (Err(StoreError::CheckpointMoved { actual, .. }), Ok(())) if *actual == from + 10 => {
                "b"
            }
            other => {
                panic!("round {round}: expected one commit and one CheckpointMoved, got {other:?}")
            }
        };
        assert_eq!(s.projection_checkpoint("tickets").await.unwrap(), from + 10);
        assert_eq!(
            s.list_docs("tickets").await.unwrap(),
            docs(&[("k", &format!("{winner}{round}"))])
        );
    }
}

async fn live_and_shadow(s: &dyn Store) {
    s.commit_projection("tickets", 0, 5, vec![put("a", "old a"), put("b", "old b")])
        .await
        .unwrap();
    s.commit_projection(
        "tickets.rebuild",
        0,
        9,
        vec![put("b", "new b"), put("c", "new c")],
    )
    .await
    .unwrap();
    s.commit_projection("billing", 0, 4, vec![put("x", "billing x")])
        .await
        .unwrap();
}

async fn replace_projection_swaps_in_the_shadow_and_drops_it(kind: Kind) {
    let db = Db::fresh(kind).await;
    let s = &*db.store;
    live_and_shadow(s).await;
    s.replace_projection("tickets.rebuild", "tickets")
        .await
        .unwrap();
    assert_eq!(
        s.list_docs("tickets").await.unwrap(),
        docs(&[("b", "new b"), ("c", "new c")])
    );
    assert_eq!(s.projection_checkpoint("tickets").await.unwrap(), 9);
    assert!(s.list_docs("tickets.rebuild").await.unwrap().is_empty());
    assert_eq!(s.projection_checkpoint("tickets.rebuild").await.unwrap(), 0);
    assert_eq!(
        s.list_docs("billing").await.unwrap(),
        docs(&[("x", "billing x")])
    );
    assert_eq!(s.projection_checkpoint("billing").await.unwrap(), 4);
}

async fn a_replace_that_fails_midway_leaves_both_projections_as_they_were(kind: Kind) {
    let db = Db::fresh(kind).await;
    let s = &*db.store;
    live_and_shadow(s).await;
    // Make the last step, moving the live name to the shadow's generation, fail however it
    // is done.
    match kind {
        Kind::Sqlite => {
            for op in ["INSERT", "UPDATE"] {
                db.exec_raw_projections(&format!(
                    "CREATE TRIGGER test_fail_{op} BEFORE {op} ON projection_generations \
                     WHEN NEW.name = 'tickets' BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
                ))
                .await;
            }
        }
        Kind::Postgres => {
            db.exec_raw(
                "CREATE FUNCTION test_fail() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN RAISE EXCEPTION 'injected failure'; END $$; \
                 CREATE TRIGGER test_fail BEFORE INSERT OR UPDATE ON projection_generations \
                 FOR EACH ROW WHEN (NEW.name = 'tickets') EXECUTE FUNCTION test_fail()",
            )
            .await;
        }
    }
    let err = s
        .replace_projection("tickets.rebuild", "tickets")
        .await
        .expect_err("the injected failure surfaces");
    assert!(err.to_string().contains("injected failure"), "{err}");
    assert_eq!(
        s.list_docs("tickets").await.unwrap(),
        docs(&[("a", "old a"), ("b", "old b")])
    );
    assert_eq!(s.projection_checkpoint("tickets").await.unwrap(), 5);
    assert_eq!(
        s.list_docs("tickets.rebuild").await.unwrap(),
        docs(&[("b", "new b"), ("c", "new c")])
    );
    assert_eq!(s.projection_checkpoint("tickets.rebuild").await.unwrap(), 9);
}

async fn reset_projection_drops_only_that_projection(kind: Kind) {
    let db = Db::fresh(kind).await;
    let s = &*db.store;
    live_and_shadow(s).await;
    s.reset_projection("tickets").await.unwrap();
    assert!(s.list_docs("tickets").await.unwrap().is_empty());
    assert_eq!(s.projection_checkpoint("tickets").await.unwrap(), 0);
    assert_eq!(s.projection_checkpoint("tickets.rebuild").await.unwrap(), 9);
    assert_eq!(s.list_docs("billing").await.unwrap().len(), 1);
}

async fn a_replaced_projection_keeps_its_rows_until_reclaimed_and_then_loses_only_those(
    kind: Kind,
) {
    let db = Db::fresh(kind).await;
    let s = &*db.store;
    live_and_shadow(s).await;
    s.replace_projection("tickets.rebuild", "tickets")
        .await
        .unwrap();
    // The swap moved a name; the old live rows are still there, out of every reader's sight.
    assert_eq!(db.count_rows("projection_docs").await, 5);
    assert_eq!(s.reclaim_projections(1).await.unwrap(), 1);
    assert_eq!(s.reclaim_projections(10).await.unwrap(), 1);
    assert_eq!(s.reclaim_projections(10).await.unwrap(), 0);
    assert_eq!(db.count_rows("projection_docs").await, 3);
    assert_eq!(db.count_rows("projection_generations").await, 2);
    assert_eq!(
        s.list_docs("tickets").await.unwrap(),
        docs(&[("b", "new b"), ("c", "new c")])
    );
    assert_eq!(s.projection_checkpoint("tickets").await.unwrap(), 9);
    assert_eq!(
        s.list_docs("billing").await.unwrap(),
        docs(&[("x", "billing x")])
    );
}

async fn a_reset_projection_starts_empty_before_and_after_its_rows_are_reclaimed(kind: Kind) {
    let db = Db::fresh(kind).await;
    let s = &*db.store;
    live_and_shadow(s).await;
    s.reset_projection("tickets.rebuild").await.unwrap();
    // Written again from 0 before the dropped rows are gone: none of them shows through.
    s.commit_projection("tickets.rebuild", 0, 2, vec![put("a", "again a")])
        .await
        .unwrap();
    assert_eq!(
        s.list_docs("tickets.rebuild").await.unwrap(),
        docs(&[("a", "again a")])
    );
    assert_eq!(
        s.load_docs("tickets.rebuild", &["b".to_string(), "c".to_string()])
            .await
            .unwrap()
            .len(),
        0
    );
    assert_eq!(s.reclaim_projections(100).await.unwrap(), 2);
    assert_eq!(s.reclaim_projections(100).await.unwrap(), 0);
    assert_eq!(
        s.list_docs("tickets.rebuild").await.unwrap(),
        docs(&[("a", "again a")])
    );
    assert_eq!(s.projection_checkpoint("tickets.rebuild").await.unwrap(), 2);
    assert_eq!(
        s.list_docs("tickets").await.unwrap(),
        docs(&[("a", "old a"), ("b", "old b")])
    );
}

async fn digest_docs_hashes_each_key_and_document_with_their_lengths_in_key_order(kind: Kind) {
    use sha2::{Digest, Sha256};
    let db = Db::fresh(kind).await;
    let s = &*db.store;
    let empty: [u8; 32] = Sha256::digest(b"").into();
    assert_eq!(s.digest_docs("tickets").await.unwrap(), empty);
    live_and_shadow(s).await;
    let mut h = Sha256::new();
    for (k, doc) in [("a", "old a"), ("b", "old b")] {
        h.update((k.len() as u64).to_le_bytes());
        h.update(k);
        h.update((doc.len() as u64).to_le_bytes());
        h.update(doc);
    }
    let want: [u8; 32] = h.finalize().into();
    assert_eq!(s.digest_docs("tickets").await.unwrap(), want);
    // Only the name's current generation counts: the swap changes the digest, and the
    // retired rows (not reclaimed yet) do not show.
    s.replace_projection("tickets.rebuild", "tickets")
        .await
        .unwrap();
    assert_ne!(s.digest_docs("tickets").await.unwrap(), want);
    assert_eq!(s.digest_docs("tickets.rebuild").await.unwrap(), empty);
}

async fn meta_values_are_written_and_overwritten(kind: Kind) {
    let db = Db::fresh(kind).await;
    let s = &*db.store;
    assert_eq!(s.get_meta("instance").await.unwrap(), None);
    s.set_meta("instance", "acme").await.unwrap();
    s.set_meta("instance", "globex").await.unwrap();
    assert_eq!(
        s.get_meta("instance").await.unwrap().as_deref(),
        Some("globex")
    );
}

// ---------------------------------------------------------------------------------------
// PostgreSQL only: what its own tooling can do to the log, and how opening fails.

/// A fresh PostgreSQL store with the six-entry log.
async fn pg_six() -> Db {
    six_entry_log(Kind::Postgres).await
}

#[tokio::test]
async fn postgres_triggers_skipped_by_replication_role_still_leave_the_chain_to_tell() {
    // `session_replication_role = replica` makes ordinary triggers not fire at all; a
    // swap of two entries' positions done that way is found at the first of them.
    let db = pg_six().await;
    db.exec_raw(
        "SET session_replication_role = replica; \
         UPDATE events SET position = position + 100 WHERE position IN (2, 5); \
         UPDATE events SET position = 107 - position WHERE position IN (102, 105)",
    )
    .await;
    assert_eq!(
        all_entries(&*db.store)
            .await
            .iter()
            .map(|e| e.position)
            .collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6]
    );
    assert_problem(&*db.store, 2, "prev_hash_mismatch").await;
}

#[tokio::test]
async fn postgres_truncate_is_refused_even_for_the_owner() {
    let db = pg_six().await;
    for sql in [
        "TRUNCATE events",
        "TRUNCATE channel_out",
        "TRUNCATE events CASCADE",
    ] {
        let err = db
            .exec_as_app(sql)
            .await
            .expect_err(&format!("the database accepted {sql}"));
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    assert_verifies(&*db.store, 6).await;
}

#[tokio::test]
async fn postgres_a_newer_store_schema_is_refused_and_left_as_it_was() {
    let db = pg_six().await;
    db.store.set_meta("store_schema", "99").await.unwrap();
    db.close().await;
    for attempt in ["open", "create"] {
        let r = if attempt == "open" {
            db.open_again().await
        } else {
            db.create_again().await
        };
        match r {
            Err(StoreError::SchemaTooNew { found, supported }) => {
                assert_eq!((found, supported), (99, STORE_SCHEMA), "{attempt}")
            }
            Err(e) => panic!("{attempt}: expected SchemaTooNew, got {e}"),
            Ok(_) => panic!("{attempt}: a newer schema was opened"),
        }
    }
    // Untouched: the marker is still 99 and no migration ran.
    db.exec_raw(
        "DO $$ BEGIN \
           IF (SELECT value FROM meta WHERE key = 'store_schema') <> '99' \
             THEN RAISE EXCEPTION 'store_schema changed'; END IF; \
           IF (SELECT count(*) FROM _sqlx_migrations) <> 9 \
             THEN RAISE EXCEPTION 'migrations changed'; END IF; \
           IF (SELECT count(*) FROM events) <> 6 \
             THEN RAISE EXCEPTION 'events changed'; END IF; \
         END $$",
    )
    .await;
}

#[tokio::test]
async fn postgres_opening_a_missing_database_is_not_initialized_and_creates_nothing() {
    let server = ticketsync_testkit::PgTestDb::create("missing");
    let url = ticketsync_testkit::pg::with_database(server.url(), "ts_test_never_created");
    match PgStore::open(&url).await {
        Err(StoreError::NotInitialized(msg)) => {
            assert!(msg.contains("ts_test_never_created"), "{msg}")
        }
        Err(e) => panic!("expected NotInitialized, got {e}"),
        Ok(_) => panic!("a missing database opened"),
    }
    // An existing database without the schema is not initialized either, and stays empty.
    match PgStore::open(server.url()).await {
        Err(StoreError::NotInitialized(msg)) => {
            assert!(msg.contains("not a ticketsync database"), "{msg}")
        }
        Err(e) => panic!("expected NotInitialized, got {e}"),
        Ok(_) => panic!("an empty database opened"),
    }
    server
        .exec(
            "DO $$ BEGIN IF EXISTS (SELECT 1 FROM information_schema.tables \
             WHERE table_schema = current_schema()) THEN RAISE EXCEPTION 'tables created'; \
             END IF; END $$",
        )
        .expect("the empty database stayed empty");
}

#[tokio::test]
async fn both_backends_seal_the_same_appends_into_the_same_chain() {
    // The chain is the backends' common ground: an instance could move from one to the
    // other, and both sides of a link hash the same way whatever they run on.
    let (sq, pg) = (
        Db::fresh(Kind::Sqlite).await,
        Db::fresh(Kind::Postgres).await,
    );
    let (a, b) = (stream(1), stream(2));
    let batches = vec![
        vec![part(a, 0, &[created("A"), note("a1")])],
        vec![part(b, 0, &[created("B")]), part(a, 2, &[note("a2")])],
        vec![part(b, 1, &notes(3, "b"))],
    ];
    for (i, batch) in batches.into_iter().enumerate() {
        let t = T0 + i as i64;
        let x = sq
            .store
            .append(t, batch.clone())
            .await
            .expect("sqlite append");
        let y = pg.store.append(t, batch).await.expect("postgres append");
        assert_eq!(x, y, "batch {i}");
    }
    assert_eq!(all_entries(&*sq.store).await, all_entries(&*pg.store).await);
    assert_eq!(
        sq.store.head().await.unwrap(),
        pg.store.head().await.unwrap()
    );
    assert_eq!(
        sq.store.stream_versions().await.unwrap(),
        pg.store.stream_versions().await.unwrap()
    );
    assert_verifies(&*pg.store, 7).await;
}

#[tokio::test]
async fn postgres_create_makes_a_missing_database_that_open_then_finds() {
    let db = ticketsync_testkit::PgTestDb::uncreated("create");
    assert!(matches!(
        PgStore::open(db.url()).await,
        Err(StoreError::NotInitialized(_))
    ));
    let store = PgStore::create(db.url()).await.expect("create");
    store
        .append(T0, vec![part(stream(1), 0, &[created("x")])])
        .await
        .expect("append");
    store.close().await;
    let again = PgStore::open(db.url()).await.expect("open");
    assert_eq!(again.count_entries().await.unwrap(), 1);
    assert_eq!(
        again.get_meta("store_schema").await.unwrap().as_deref(),
        Some(STORE_SCHEMA.to_string().as_str())
    );
}

#[tokio::test]
async fn postgres_an_unreachable_server_is_unavailable_naming_it_without_the_password() {
    // Nothing listens on a port that was free a moment ago.
    let port = ticketsync_testkit::free_port();
    let url = format!("postgres://ticketsync:s3cret@127.0.0.1:{port}/ticketsync");
    for r in [PgStore::open(&url).await, PgStore::create(&url).await] {
        match r {
            Err(StoreError::Unavailable(msg)) => {
                assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
                assert!(!msg.contains("s3cret"), "the password leaked: {msg}");
                assert!(!msg.contains('\n'), "not one line: {msg}");
            }
            Err(e) => panic!("expected Unavailable, got {e}"),
            Ok(_) => panic!("connected to nothing"),
        }
    }
}

async fn read_stream_after_returns_exactly_the_tail_past_a_version(kind: Kind) {
    let db = Db::fresh(kind).await;
    let s = &*db.store;
    let (a, b) = (stream(0xA), stream(0xB));
    let mut ea = vec![created("a")];
    ea.extend(notes(4, "a"));
    s.append(T0, vec![part(a, 0, &ea), part(b, 0, &[created("b")])])
        .await
        .expect("append");
    s.append(T0 + 1, vec![part(a, 5, &notes(2, "a later"))])
        .await
        .expect("append");
    let whole = s.read_stream(a, None).await.expect("read_stream");
    assert_eq!(whole.len(), 7);
    for after in 0..=8u64 {
        let tail = s
            .read_stream_after(a, after)
            .await
            .expect("read_stream_after");
        let want: Vec<&LogEntry> = whole.iter().filter(|e| e.version > after).collect();
        assert_eq!(
            tail.iter().collect::<Vec<_>>(),
            want,
            "after version {after}"
        );
    }
    assert!(s
        .read_stream_after(stream(0xC), 0)
        .await
        .expect("unknown stream")
        .is_empty());
}

async fn read_streams_after_answers_each_stream_asked_with_its_own_tail(kind: Kind) {
    let db = Db::fresh(kind).await;
    let s = &*db.store;
    let (a, b, c) = (stream(0xA), stream(0xB), stream(0xC));
    let mut ea = vec![created("a")];
    ea.extend(notes(4, "a"));
    let mut eb = vec![created("b")];
    eb.extend(notes(2, "b"));
    s.append(T0, vec![part(a, 0, &ea), part(b, 0, &eb)])
        .await
        .expect("append");
    s.append(T0 + 1, vec![part(b, 3, &notes(3, "b later"))])
        .await
        .expect("append");
    let asked = [(b, 2), (a, 0), (c, 0), (a, 4), (b, 6), (b, 9)];
    let got = s
        .read_streams_after(&asked)
        .await
        .expect("read_streams_after");
    assert_eq!(got.len(), asked.len(), "one answer per stream asked");
    for ((id, after), tail) in asked.iter().zip(&got) {
        let want = s
            .read_stream_after(*id, *after)
            .await
            .expect("read_stream_after");
        assert_eq!(tail, &want, "stream {id} after version {after}");
    }
    assert_eq!(got[0].len(), 4, "b past version 2: its versions 3 to 6");
    assert_eq!(got[1].len(), 5);
    assert!(got[2].is_empty(), "an unknown stream has no events");
    assert_eq!(got[3].len(), 1);
    assert!(got[4].is_empty() && got[5].is_empty());
    assert!(s
        .read_streams_after(&[])
        .await
        .expect("nothing asked")
        .is_empty());
}

async fn streams_with_types_finds_the_streams_with_those_types_in_the_range(kind: Kind) {
    let db = Db::fresh(kind).await;
    let s = &*db.store;
    let (a, b, c) = (stream(0xA), stream(0xB), stream(0xC));
    // positions: 1 a created, 2 b created, 3 a note, 4 c created, 5 b note
    s.append(
        T0,
        vec![part(a, 0, &[created("a")]), part(b, 0, &[created("b")])],
    )
    .await
    .expect("append");
    s.append(T0, vec![part(a, 1, &[note("n")])])
        .await
        .expect("append");
    s.append(T0, vec![part(c, 0, &[created("c")])])
        .await
        .expect("append");
    s.append(T0, vec![part(b, 1, &[note("n")])])
        .await
        .expect("append");
    let sorted = |mut v: Vec<Ulid>| {
        v.sort();
        v
    };
    let q = |after, to, types: &'static [&'static str]| async move {
        sorted(s.streams_with_types(after, to, types).await.expect("query"))
    };
    assert_eq!(q(0, 5, &["note_added"]).await, sorted(vec![a, b]));
    assert_eq!(
        q(3, 5, &["note_added"]).await,
        vec![b],
        "after is exclusive"
    );
    assert_eq!(q(0, 3, &["note_added"]).await, vec![a], "to is inclusive");
    assert_eq!(q(0, 5, &["ticket_created"]).await, sorted(vec![a, b, c]));
    assert_eq!(
        q(1, 4, &["ticket_created", "note_added"]).await,
        sorted(vec![a, b, c])
    );
    assert!(q(0, 5, &["status_changed"]).await.is_empty());
    assert!(q(5, 5, &["note_added"]).await.is_empty());
}

contract_tests!(
    read_stream_after_returns_exactly_the_tail_past_a_version,
    read_streams_after_answers_each_stream_asked_with_its_own_tail,
    streams_with_types_finds_the_streams_with_those_types_in_the_range,
    an_empty_log_has_the_genesis_head_and_verifies,
    appended_entries_read_back_in_order_with_a_contiguous_chain,
    an_empty_batch_appends_nothing,
    a_stale_expected_version_is_a_conflict_and_writes_nothing,
    single_appends_from_two_handles_interleave_on_one_chain,
    a_batch_whose_second_stream_is_stale_writes_nothing_at_all,
    one_stream_twice_in_a_batch_counts_its_own_earlier_part,
    a_duplicate_event_id_fails_the_whole_batch,
    read_log_caps_a_page_and_verify_walks_every_page,
    scan_log_hands_over_every_entry_after_a_position_in_order,
    scan_log_stops_when_the_visitor_breaks,
    concurrent_writers_to_one_stream_get_versions_1_to_200_without_gaps,
    the_database_refuses_update_and_delete_of_events,
    verify_names_a_changed_payload_byte,
    verify_names_a_changed_actor,
    verify_names_a_change_to_any_hashed_column,
    verify_names_an_id_stored_as_other_text_for_the_same_value,
    verify_names_the_event_id_when_both_ids_are_stored_as_other_text,
    verify_names_the_first_of_two_swapped_entries,
    verify_names_a_forged_entry_inserted_in_the_middle,
    verify_catches_a_correctly_sealed_forgery_at_the_next_link,
    verify_names_a_forged_entry_appended_past_the_recorded_head,
    verify_names_a_resealed_version_gap,
    verify_names_the_first_of_two_changed_entries_whichever_range_holds_them,
    verify_names_a_version_gap_that_only_the_join_of_two_ranges_sees,
    verify_names_a_deleted_middle_entry,
    verify_names_a_deleted_last_entry_as_a_head_mismatch,
    verify_names_a_recorded_stream_version_that_disagrees_with_the_log,
    verify_names_a_stream_missing_from_the_recorded_versions,
    verify_names_a_recorded_head_that_was_moved,
    a_store_schema_that_is_not_a_number_is_corrupt,
    create_on_an_existing_store_keeps_its_log,
    a_projection_commit_from_a_stale_checkpoint_writes_nothing,
    list_docs_prefix_and_pages_return_exactly_their_keys_in_byte_order,
    replace_projection_swaps_in_the_shadow_and_drops_it,
    reset_projection_drops_only_that_projection,
    two_projection_commits_racing_from_one_checkpoint_let_exactly_one_through,
    a_replace_that_fails_midway_leaves_both_projections_as_they_were,
    a_replaced_projection_keeps_its_rows_until_reclaimed_and_then_loses_only_those,
    a_reset_projection_starts_empty_before_and_after_its_rows_are_reclaimed,
    digest_docs_hashes_each_key_and_document_with_their_lengths_in_key_order,
    meta_values_are_written_and_overwritten,
);

/// A PostgreSQL database as store schema `schema` left it (migrations from `from` on not
/// applied yet) retires its ticket projection, written with history chunks, so that it
/// starts over from the log; any other projection stays live.
async fn postgres_ticket_projection_of_schema_is_retired(schema: u32, from: i64) {
    let db = Db::fresh(Kind::Postgres).await;
    for name in ["tickets", "counts"] {
        db.store
            .commit_projection(
                name,
                0,
                0,
                vec![DocChange::Put {
                    key: "k".into(),
                    doc: b"{}".to_vec(),
                }],
            )
            .await
            .unwrap();
    }
    db.close().await;
    db.exec_raw(&format!(
        "DELETE FROM _sqlx_migrations WHERE version >= {from}; \
         UPDATE meta SET value = '{schema}' WHERE key = 'store_schema'"
    ))
    .await;
    let store = db.open_again().await.unwrap();
    assert_eq!(
        store.get_meta("store_schema").await.unwrap(),
        Some(STORE_SCHEMA.to_string())
    );
    assert_eq!(store.projection_checkpoint("tickets").await.unwrap(), 0);
    assert!(store.list_docs("tickets").await.unwrap().is_empty());
    assert_eq!(store.list_docs("counts").await.unwrap().len(), 1);
    assert_eq!(store.reclaim_projections(10).await.unwrap(), 1);
}

/// Store schema 7 (migration 0007): the projection with 64-line chunks is retired.
#[tokio::test]
async fn postgres_schema_7_retires_the_ticket_projection_and_keeps_the_others() {
    postgres_ticket_projection_of_schema_is_retired(6, 7).await;
}

/// Store schema 8 (migration 0008): the projection with 16-line chunks is retired, history
/// is read from the log.
#[tokio::test]
async fn postgres_schema_8_retires_the_ticket_projection_and_keeps_the_others() {
    postgres_ticket_projection_of_schema_is_retired(7, 8).await;
}

/// Store schema 9 (migration 0009): the projection with item documents is retired, items
/// are read from the log.
#[tokio::test]
async fn postgres_schema_9_retires_the_ticket_projection_and_keeps_the_others() {
    postgres_ticket_projection_of_schema_is_retired(8, 9).await;
}
