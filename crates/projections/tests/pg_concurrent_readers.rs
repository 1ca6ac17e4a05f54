//! Readers never skip a committed event on PostgreSQL: 16 concurrent writers (random
//! delays inside their transactions, random rolled-back transactions, stale versions)
//! while the projection runner's `catch_up` and an outbox reader read concurrently. At the
//! end, what the readers applied is compared, by count and digest, with a plain SELECT of
//! the log and of the outbox: every committed event applied exactly once, in order.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use sqlx::Row;
use ticketsync_domain::{Event, ItemId};
use ticketsync_projections::{catch_up, Projection, ProjectionError};
use ticketsync_store::{
    DocChange, Outgoing, Partner, PartnerState, PgStore, Store, StoreError, StreamAppend,
};
use ticketsync_testkit::PgTestDb;
use ticketsync_wire::{encode_event, LogEntry, NewEntry, GENESIS_HASH, SCHEMA_VERSION};
use tokio::sync::{watch, Notify};
use ulid::Ulid;

const WRITERS: u64 = 16;
/// Appends each writer gets committed.
const COMMITS_PER_WRITER: u64 = 20;
/// Streams the writers share, so that they conflict.
const STREAMS: u128 = 4;
/// Bounds every retry loop: a writer that cannot commit this often has starved.
const MAX_ATTEMPTS: u32 = 2_000;
/// The whole run must finish within this.
const RUN_TIMEOUT: Duration = Duration::from_secs(240);
/// How long the reader waits for a writer's signal before looking again anyway.
const READER_WAKE: Duration = Duration::from_millis(200);
/// Longest a writer that leaves room for others waits for one of them to commit.
const ROOM_WAIT: Duration = Duration::from_millis(3);
const PARTNER: &str = "bolt";

/// Records every entry it applies, in order, and refuses to apply one twice.
struct Probe {
    applied: Mutex<Vec<(u64, Ulid, [u8; 32])>>,
}

impl Projection for Probe {
    fn name(&self) -> &str {
        "probe"
    }
    fn keys(&self, entries: &[LogEntry]) -> Vec<String> {
        entries.iter().map(|e| e.event_id.to_string()).collect()
    }
    fn apply(
        &self,
        docs: HashMap<String, Vec<u8>>,
        entries: &[LogEntry],
    ) -> Result<Vec<DocChange>, ProjectionError> {
        let mut out = Vec::with_capacity(entries.len());
        let mut applied = self.applied.lock().expect("probe lock");
        for e in entries {
            let key = e.event_id.to_string();
            if docs.contains_key(&key) {
                return Err(ProjectionError::BadDoc {
                    key,
                    reason: format!("position {} applied twice", e.position),
                });
            }
            applied.push((e.position, e.event_id, e.hash));
            out.push(DocChange::Put {
                key,
                doc: e.position.to_be_bytes().to_vec(),
            });
        }
        Ok(out)
    }
}

fn digest_of(rows: &[(u64, Ulid, [u8; 32])]) -> [u8; 32] {
    let mut h = Sha256::new();
    for (p, id, hash) in rows {
        h.update(p.to_be_bytes());
        h.update(id.0.to_be_bytes());
        h.update(hash);
    }
    h.finalize().into()
}

fn entry(stream_id: Ulid, writer: u64, n: u64) -> NewEntry {
    let ev = Event::NoteAdded {
        item: ItemId(Ulid::new()),
        text: format!("writer {writer} note {n}"),
        internal: false,
    };
    NewEntry {
        event_id: Ulid::new(),
        stream_id,
        schema_version: SCHEMA_VERSION,
        event_type: ev.type_name().into(),
        occurred_at: 1,
        actor_instance: "acme".into(),
        actor_user: format!("writer{writer}"),
        link_seq: 0,
        payload: encode_event(&ev).expect("encode"),
    }
}

/// What one writer got committed: event ids, and the outbox bodies that went with them.
struct Committed {
    events: Vec<Ulid>,
    rolled_back: u32,
    conflicts: u32,
}

async fn writer(
    store: Arc<PgStore>,
    w: u64,
    seed: u64,
    wrote: Arc<Notify>,
    commits: Arc<watch::Sender<u64>>,
) -> Committed {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut done = Committed {
        events: vec![],
        rolled_back: 0,
        conflicts: 0,
    };
    let mut attempts = 0u32;
    let mut n = 0u64;
    while (done.events.len() as u64) < COMMITS_PER_WRITER {
        attempts += 1;
        assert!(attempts <= MAX_ATTEMPTS, "writer {w} starved (seed {seed})");
        // Commits by any writer from here on, so the room below can wait for one.
        let mut others = commits.subscribe();
        // One or two streams per batch, one or two events per stream.
        let first = Ulid(1 + rng.random_range(0..STREAMS));
        let mut streams = vec![first];
        if rng.random_bool(0.3) {
            let second = Ulid(1 + rng.random_range(0..STREAMS));
            if second != first {
                streams.push(second);
            }
        }
        let mut batch = vec![];
        for s in streams {
            let expected = store.stream_version(s).await.expect("version");
            let k = rng.random_range(1..=2);
            batch.push(StreamAppend {
                stream_id: s,
                expected_version: expected,
                entries: (0..k)
                    .map(|_| {
                        n += 1;
                        entry(s, w, n)
                    })
                    .collect(),
            });
        }
        // Between reading the versions and appending: room for others to get in first,
        // until another writer commits (bounded, as all of them may be waiting here).
        if rng.random_bool(0.5) {
            let _ = tokio::time::timeout(ROOM_WAIT, others.changed()).await;
        }
        let outgoing: Vec<Outgoing> = batch
            .iter()
            .flat_map(|p| p.entries.iter())
            .map(|e| Outgoing {
                from: "acme".into(),
                to: PARTNER.into(),
                event_id: Some(e.event_id.to_string()),
                body: e.event_id.to_string().into_bytes(),
            })
            .collect();
        match store.append_routed(1, batch, outgoing).await {
            Ok(written) => {
                done.events.extend(written.iter().map(|e| e.event_id));
                wrote.notify_one();
                commits.send_modify(|c| *c += 1);
            }
            Err(StoreError::Conflict { .. }) => done.conflicts += 1,
            Err(StoreError::Db(e)) if e.to_string().contains("injected rollback") => {
                done.rolled_back += 1
            }
            Err(e) => panic!("writer {w}: {e}"),
        }
    }
    done
}

/// Reads the outbox after `after`, checking that every entry continues the chain.
async fn read_outbox_from(
    store: &PgStore,
    after: &mut (u64, [u8; 32]),
    seen: &mut Vec<(u64, Vec<u8>)>,
) {
    loop {
        let page = store
            .read_outbox(PARTNER, after.0, 50)
            .await
            .expect("read outbox");
        if page.is_empty() {
            return;
        }
        for e in page {
            assert_eq!(e.seq, after.0 + 1, "the outbox reader saw a gap");
            assert_eq!(
                e.prev_hash, after.1,
                "seq {} does not continue the chain",
                e.seq
            );
            *after = (e.seq, e.hash);
            seen.push((e.seq, e.body));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_committed_event_is_applied_exactly_once_with_16_concurrent_writers() {
    let db = PgTestDb::create("concurrent");
    let store = Arc::new(PgStore::create(db.url()).await.expect("create store"));
    store
        .put_partner(&Partner {
            name: PARTNER.into(),
            state: PartnerState::Paired,
            secret: [7; 32],
            created_at: 1,
            expires_at: None,
            paired_at: Some(1),
            organization: None,
        })
        .await
        .expect("partner");
    // Fault injection inside the writers' transactions, after the position is taken and
    // before the commit: a random delay per row, and one transaction in eight rolled back.
    db.exec(
        "CREATE FUNCTION test_faults() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN \
           PERFORM pg_sleep(random() * 0.004); \
           IF random() < 0.125 THEN RAISE EXCEPTION 'injected rollback'; END IF; \
           RETURN NULL; \
         END $$; \
         CREATE TRIGGER test_faults AFTER INSERT ON events \
           FOR EACH ROW EXECUTE FUNCTION test_faults();",
    )
    .expect("install the fault trigger");

    let base_seed: u64 = rand::random();
    eprintln!("seed {base_seed}");
    let wrote = Arc::new(Notify::new());
    let commits = Arc::new(watch::channel(0u64).0);
    let writers_done = Arc::new(AtomicBool::new(false));
    let probe = Arc::new(Probe {
        applied: Mutex::new(vec![]),
    });
    let reader_passes = Arc::new(AtomicUsize::new(0));

    let run = async {
        // The reader: the projection runner and the outbox reader, concurrently with the
        // writers, until they are done; then one last pass.
        let reader = {
            let (store, probe, wrote, done, passes) = (
                store.clone(),
                probe.clone(),
                wrote.clone(),
                writers_done.clone(),
                reader_passes.clone(),
            );
            tokio::spawn(async move {
                let mut out_head = (0u64, GENESIS_HASH);
                let mut outbox = vec![];
                loop {
                    let last = done.load(Ordering::SeqCst);
                    catch_up(&*store, &*probe).await.expect("catch_up");
                    read_outbox_from(&store, &mut out_head, &mut outbox).await;
                    passes.fetch_add(1, Ordering::Relaxed);
                    if last {
                        return outbox;
                    }
                    // Wait for a commit (or look again after a while), not for a time.
                    let _ = tokio::time::timeout(READER_WAKE, wrote.notified()).await;
                }
            })
        };
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                tokio::spawn(writer(
                    store.clone(),
                    w,
                    base_seed.wrapping_add(w),
                    wrote.clone(),
                    commits.clone(),
                ))
            })
            .collect();
        let mut committed = vec![];
        let (mut rolled_back, mut conflicts) = (0, 0);
        for h in writers {
            let c = h.await.expect("writer finished");
            rolled_back += c.rolled_back;
            conflicts += c.conflicts;
            committed.extend(c.events);
        }
        writers_done.store(true, Ordering::SeqCst);
        wrote.notify_one();
        let outbox = reader.await.expect("reader finished");
        (committed, outbox, rolled_back, conflicts)
    };
    let (committed, outbox, rolled_back, conflicts) = tokio::time::timeout(RUN_TIMEOUT, run)
        .await
        .expect("the run finished in time");
    eprintln!(
        "committed {} events, {rolled_back} transactions rolled back, {conflicts} conflicts, \
         {} reader passes",
        committed.len(),
        reader_passes.load(Ordering::Relaxed)
    );
    // The faults happened: otherwise this test shows nothing.
    assert!(rolled_back > 0, "no transaction was rolled back");
    assert!(conflicts > 0, "no writer lost a race");
    assert!(
        reader_passes.load(Ordering::Relaxed) > 1,
        "the reader never read while writers wrote"
    );

    // The truth: a plain SELECT of the log and the outbox.
    let rows = sqlx::query("SELECT position, event_id, hash FROM events ORDER BY position")
        .fetch_all(store.pool())
        .await
        .expect("select log");
    let log: Vec<(u64, Ulid, [u8; 32])> = rows
        .iter()
        .map(|r| {
            let p: i64 = r.get("position");
            let id: String = r.get("event_id");
            let h: Vec<u8> = r.get("hash");
            (
                p as u64,
                Ulid::from_string(&id).expect("ulid"),
                h.try_into().expect("32 bytes"),
            )
        })
        .collect();
    let total = WRITERS * COMMITS_PER_WRITER;
    assert!(log.len() as u64 >= total, "log holds {}", log.len());
    assert_eq!(
        log.iter().map(|r| r.0).collect::<Vec<_>>(),
        (1..=log.len() as u64).collect::<Vec<_>>(),
        "positions are contiguous from 1"
    );
    // What the writers were told committed is exactly what the log holds.
    let in_log: HashSet<Ulid> = log.iter().map(|r| r.1).collect();
    assert_eq!(committed.len(), log.len());
    assert_eq!(committed.iter().copied().collect::<HashSet<_>>(), in_log);

    // The projection runner applied every committed event once, in log order.
    let applied = probe.applied.lock().expect("probe lock").clone();
    assert_eq!(applied.len(), log.len(), "applied count");
    assert_eq!(digest_of(&applied), digest_of(&log), "applied digest");
    assert_eq!(
        store
            .projection_checkpoint("probe")
            .await
            .expect("checkpoint"),
        log.len() as u64
    );
    assert_eq!(
        store.list_docs("probe").await.expect("docs").len(),
        log.len()
    );

    // The outbox reader saw every entry once, gap-free, and they carry every committed event.
    let out_rows = sqlx::query("SELECT seq, body FROM channel_out WHERE partner = $1 ORDER BY seq")
        .bind(PARTNER)
        .fetch_all(store.pool())
        .await
        .expect("select outbox");
    let stored: Vec<(u64, Vec<u8>)> = out_rows
        .iter()
        .map(|r| (r.get::<i64, _>("seq") as u64, r.get::<Vec<u8>, _>("body")))
        .collect();
    assert_eq!(outbox, stored, "the outbox reader's view equals the table");
    let bodies: HashSet<Vec<u8>> = stored.iter().map(|r| r.1.clone()).collect();
    assert_eq!(bodies.len(), log.len());
    assert_eq!(
        bodies,
        log.iter()
            .map(|r| r.1.to_string().into_bytes())
            .collect::<HashSet<_>>()
    );
}
