//! Local figures: appends to the log (batched and one per durable commit) against bare sqlx
//! insert loops into a comparable table, and the cost of a command as a ticket's history grows.

use std::path::Path;
use std::str::FromStr;
use std::time::Instant;

use anyhow::{Context as _, Result};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use ticketsync_app::Instance;
use ticketsync_domain::{Command, Event, ItemId, TicketId};
use ticketsync_store::{SqliteStore, Store, StreamAppend};
use ticketsync_wire::{encode_event, NewEntry, SCHEMA_VERSION};
use ulid::Ulid;

use crate::report::{rate, Baseline, Figure};

/// A note's text of a typical length (the payload every generated event carries).
pub const NOTE_TEXT: &str = "Called the customer back: the printer on floor 3 jams on duplex jobs; replaced the pickup roller and ran 40 test pages.";

/// A realistic stored event: a note, postcard-encoded as the log stores it.
fn note_entry(stream: Ulid) -> Result<NewEntry> {
    let ev = Event::NoteAdded {
        item: ItemId(Ulid::new()),
        text: NOTE_TEXT.to_string(),
        internal: false,
    };
    Ok(NewEntry {
        event_id: Ulid::new(),
        stream_id: stream,
        schema_version: SCHEMA_VERSION,
        event_type: ev.type_name().to_string(),
        occurred_at: ticketsync_app::now_ms(),
        actor_instance: "acme".into(),
        actor_user: "alice".into(),
        link_seq: 0,
        payload: encode_event(&ev)?,
    })
}

/// A SQLite file with the log's durability settings and a table shaped like the log's
/// (same columns, primary key and unique constraints; no triggers, no chain, no head).
async fn bare_table(path: &Path) -> Result<SqlitePool> {
    let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    sqlx::query(
        "CREATE TABLE rows (position INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, \
         stream_id TEXT NOT NULL, version INTEGER NOT NULL, schema_version INTEGER NOT NULL, \
         event_type TEXT NOT NULL, occurred_at INTEGER NOT NULL, recorded_at INTEGER NOT NULL, \
         actor_instance TEXT NOT NULL, actor_user TEXT NOT NULL, link_seq INTEGER NOT NULL, \
         payload BLOB NOT NULL, prev_hash BLOB NOT NULL, hash BLOB NOT NULL, \
         UNIQUE (stream_id, version))",
    )
    .execute(&pool)
    .await?;
    Ok(pool)
}

async fn bare_insert<'e, E: sqlx::SqliteExecutor<'e>>(
    ex: E,
    position: i64,
    version: i64,
    e: &NewEntry,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO rows (position, event_id, stream_id, version, schema_version, event_type, \
         occurred_at, recorded_at, actor_instance, actor_user, link_seq, payload, prev_hash, hash) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(position)
    .bind(e.event_id.to_string())
    .bind(e.stream_id.to_string())
    .bind(version)
    .bind(i64::from(e.schema_version))
    .bind(&e.event_type)
    .bind(e.occurred_at)
    .bind(e.occurred_at)
    .bind(&e.actor_instance)
    .bind(&e.actor_user)
    .bind(i64::from(e.link_seq))
    .bind(&e.payload)
    .bind(&[7u8; 32][..])
    .bind(&[9u8; 32][..])
    .execute(ex)
    .await?;
    Ok(())
}

/// Batched appends of `n` events, `batch` per append over `streams` streams, against a bare
/// per-row insert loop with one transaction per batch of the same size.
pub async fn append_batched(dir: &Path, n: u64, batch: u64, streams: u64) -> Result<Figure> {
    let store = SqliteStore::create(&dir.join("append-batched.db")).await?;
    let ids: Vec<Ulid> = (0..streams).map(|_| Ulid::new()).collect();
    let per_stream = (batch / streams).max(1);
    let mut versions = vec![0u64; ids.len()];
    // Encode everything before the clock starts: the figure is the log's, not the encoder's.
    let mut batches = Vec::new();
    let mut made = 0;
    while made < n {
        let mut parts = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let k = per_stream.min(n - made);
            if k == 0 {
                break;
            }
            let entries = (0..k)
                .map(|_| note_entry(*id))
                .collect::<Result<Vec<_>>>()?;
            parts.push(StreamAppend {
                stream_id: *id,
                expected_version: versions[i],
                entries,
            });
            versions[i] += k;
            made += k;
        }
        batches.push(parts);
    }
    let flat: Vec<Vec<NewEntry>> = batches
        .iter()
        .map(|b| b.iter().flat_map(|p| p.entries.clone()).collect())
        .collect();
    let t = Instant::now();
    for b in batches {
        store.append(ticketsync_app::now_ms(), b).await?;
    }
    let ours = rate(n, t.elapsed().as_secs_f64());

    let pool = bare_table(&dir.join("bare-batched.db")).await?;
    let t = Instant::now();
    let mut pos = 0i64;
    for b in &flat {
        let mut tx = pool.begin().await?;
        for e in b {
            pos += 1;
            bare_insert(&mut *tx, pos, pos, e).await?;
        }
        tx.commit().await?;
    }
    let bare = rate(n, t.elapsed().as_secs_f64());
    pool.close().await;
    let ratio = ours / bare;
    Ok(Figure {
        key: "append_batched".into(),
        name: "local append, batched API, durable (synchronous=FULL)".into(),
        value: ours,
        unit: "events/s".into(),
        baselines: vec![Baseline {
            name: "bare sqlx per-row insert loop".into(),
            value: bare,
            unit: "events/s".into(),
        }],
        ratio: Some(ratio),
        target: ">= 100000 events/s and >= 2.5x the bare loop".into(),
        met: ours >= 100_000.0 && ratio >= 2.5,
        detail: format!("{n} events, {batch} per append over {streams} streams"),
    })
}

/// `n` appends of one event each (one durable commit each) against a bare loop of
/// single-row autocommitted inserts.
pub async fn append_single(dir: &Path, n: u64) -> Result<Figure> {
    let store = SqliteStore::create(&dir.join("append-single.db")).await?;
    let id = Ulid::new();
    let entries = (0..n).map(|_| note_entry(id)).collect::<Result<Vec<_>>>()?;
    let t = Instant::now();
    for (v, e) in entries.iter().enumerate() {
        store
            .append(
                ticketsync_app::now_ms(),
                vec![StreamAppend {
                    stream_id: id,
                    expected_version: v as u64,
                    entries: vec![e.clone()],
                }],
            )
            .await?;
    }
    let ours = rate(n, t.elapsed().as_secs_f64());
    let pool = bare_table(&dir.join("bare-single.db")).await?;
    let t = Instant::now();
    for (i, e) in entries.iter().enumerate() {
        let p = i as i64 + 1;
        bare_insert(&pool, p, p, e).await?;
    }
    let bare = rate(n, t.elapsed().as_secs_f64());
    pool.close().await;
    let ratio = ours / bare;
    Ok(Figure {
        key: "append_single".into(),
        name: "local append, one event per durable commit".into(),
        value: ours,
        unit: "events/s".into(),
        baselines: vec![Baseline {
            name: "bare sqlx single-row durable insert loop".into(),
            value: bare,
            unit: "events/s".into(),
        }],
        ratio: Some(ratio),
        target: ">= 0.7x the bare loop".into(),
        met: ratio >= 0.7,
        detail: format!("{n} commits of one event"),
    })
}

/// `n` commands (`ticketsync note add` through `Instance::execute`, the CLI's path) on one
/// ticket; compares the rate of the last `window` commands with the first `window`.
pub async fn command_cost(dir: &Path, n: u64, window: u64) -> Result<Figure> {
    let d = dir.join("history");
    Instance::init(&d, "acme", None, None).await?;
    let inst = Instance::open(&d, Some("alice".into())).await?;
    let id = TicketId(Ulid::new());
    inst.execute(
        id,
        Command::CreateTicket {
            title: "A long-running ticket".into(),
            description: "grows to thousands of events".into(),
            customer: Some("Contoso".into()),
        },
    )
    .await?;
    let window = window.min(n / 2).max(1);
    let mut first = 0.0;
    let mut t = Instant::now();
    for i in 0..n {
        if i == n - window {
            t = Instant::now();
        }
        inst.execute(
            id,
            Command::AddNote {
                item: ItemId(Ulid::new()),
                text: NOTE_TEXT.into(),
                internal: false,
            },
        )
        .await?;
        if i + 1 == window {
            first = rate(window, t.elapsed().as_secs_f64());
        }
    }
    let last = rate(window, t.elapsed().as_secs_f64());
    let ratio = last / first;
    Ok(Figure {
        key: "command_cost".into(),
        name: "cost of one command as a ticket's history grows".into(),
        value: last,
        unit: "commands/s".into(),
        baselines: vec![Baseline {
            name: format!("the same ticket's first {window} commands"),
            value: first,
            unit: "commands/s".into(),
        }],
        ratio: Some(ratio),
        target: "last 1000 at >= 0.9x the rate of the first 1000".into(),
        met: ratio >= 0.9,
        detail: format!("note add x {n} on one ticket via Instance::execute (CLI path)"),
    })
}
