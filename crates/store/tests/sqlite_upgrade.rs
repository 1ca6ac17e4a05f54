//! Opening a SQLite store written before migration 0007 (projection documents in a
//! WITHOUT ROWID table) moves its documents to the rowid table unchanged, and opening one
//! written before store schema 6 moves its projections into the projections file.

use std::borrow::Cow;
use std::str::FromStr;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use ticketsync_store::{DocChange, SqliteStore, Store, STORE_SCHEMA};

static ALL: Migrator = sqlx::migrate!("./migrations/sqlite");

/// One connection to a new SQLite file at `path`.
async fn new_file(path: &std::path::Path) -> sqlx::SqlitePool {
    let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .unwrap()
        .create_if_missing(true);
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .unwrap()
}

/// The database file says the current store schema (its own migrations ran before the
/// move, which does not take the number back to 6) and holds no projection table any more.
async fn assert_moved(store: &SqliteStore) {
    assert_eq!(
        store.get_meta("store_schema").await.unwrap(),
        Some(STORE_SCHEMA.to_string())
    );
    let left: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'projection%'",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert!(left.is_empty(), "still in the database file: {left:?}");
}

/// A new database file at `path` as the migrations up to `version` leave it.
async fn migrated_to(path: &std::path::Path, version: i64) -> sqlx::SqlitePool {
    let pool = new_file(path).await;
    let old = Migrator {
        migrations: Cow::Owned(
            ALL.iter()
                .filter(|m| m.version <= version)
                .cloned()
                .collect::<Vec<_>>(),
        ),
        ..Migrator::DEFAULT
    };
    old.run(&pool).await.unwrap();
    pool
}

#[tokio::test]
async fn documents_written_before_the_rowid_table_read_and_are_replaced_the_same_after() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    // The store as migrations 1 to 6 left it, with documents small and large (a large
    // one spilled onto overflow pages of the old table).
    let big = format!("[{}]", vec!["\"line of a long history\""; 400].join(","));
    {
        let pool = migrated_to(&path, 6).await;
        let ddl: String = sqlx::query_scalar(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'projection_docs'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(ddl.contains("WITHOUT ROWID"), "{ddl}");
        sqlx::query("INSERT INTO projection_generations (name, position) VALUES ('counts', 7)")
            .execute(&pool)
            .await
            .unwrap();
        // Only the log's head matters here (a projection ahead of it would start over).
        sqlx::query("INSERT INTO log_head (id, position, hash) VALUES (1, 7, zeroblob(32))")
            .execute(&pool)
            .await
            .unwrap();
        for (key, doc) in [("a", b"1".to_vec()), ("h/x", big.clone().into_bytes())] {
            sqlx::query("INSERT INTO projection_docs (generation, key, doc) VALUES (1, ?, ?)")
                .bind(key)
                .bind(doc)
                .execute(&pool)
                .await
                .unwrap();
        }
        pool.close().await;
    }

    let store = SqliteStore::open(&path).await.unwrap();
    let ddl: String = sqlx::query_scalar(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'projection_docs'",
    )
    .fetch_one(store.projections_pool())
    .await
    .unwrap();
    assert!(!ddl.contains("WITHOUT ROWID"), "{ddl}");
    assert_eq!(store.projection_checkpoint("counts").await.unwrap(), 7);
    assert_eq!(
        store.list_docs("counts").await.unwrap(),
        vec![
            ("a".to_string(), b"1".to_vec()),
            ("h/x".to_string(), big.clone().into_bytes())
        ]
    );
    let want = format!("{},\"one more\"]", &big[..big.len() - 1]);
    store
        .commit_projection(
            "counts",
            7,
            8,
            vec![DocChange::Put {
                key: "h/x".into(),
                doc: want.clone().into_bytes(),
            }],
        )
        .await
        .unwrap();
    let loaded = store
        .load_docs("counts", &["h/x".to_string()])
        .await
        .unwrap();
    assert_eq!(loaded["h/x"], want.into_bytes());
}

/// Creates `path` as store schema 5 left it (migrations 1 to 7), with a live projection
/// `live` in generation 3 (1 and 2 were used and reclaimed) and a retired one not yet
/// reclaimed.
async fn schema_5(path: &std::path::Path, live: &str) {
    let pool = migrated_to(path, 7).await;
    let generations = format!(
        "INSERT INTO projection_generations (name, position) VALUES ('{live}', 0), (NULL, 0)"
    );
    for sql in [
        "INSERT INTO projection_generations (name, position) VALUES ('a', 0), ('b', 0)",
        "DELETE FROM projection_generations",
        generations.as_str(),
        "INSERT INTO projection_docs (generation, key, doc) VALUES \
         (3, 't/1', x'7b7d'), (3, 'i/1/a', x'5b5d'), (4, 'old', x'00')",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    let v: String = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'store_schema'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(v, "5");
    pool.close().await;
}

#[tokio::test]
async fn a_schema_5_database_moves_its_projections_into_the_projections_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ticketsync.db");
    schema_5(&path, "counts").await;
    let docs_path = SqliteStore::projections_path(&path);
    assert_eq!(docs_path, dir.path().join("ticketsync.projections.db"));
    assert!(!docs_path.exists());

    let store = SqliteStore::open(&path).await.unwrap();
    assert!(docs_path.exists());
    assert_moved(&store).await;
    assert_eq!(
        store.list_docs("counts").await.unwrap(),
        vec![
            ("i/1/a".to_string(), b"[]".to_vec()),
            ("t/1".to_string(), b"{}".to_vec())
        ]
    );
    // The retired generation came along, and its rows are still reclaimed.
    assert_eq!(store.reclaim_projections(10).await.unwrap(), 1);
    // A new generation is numbered after every one the database file ever used.
    store
        .commit_projection(
            "billing",
            0,
            0,
            vec![DocChange::Put {
                key: "k".into(),
                doc: b"v".to_vec(),
            }],
        )
        .await
        .unwrap();
    let generation: i64 =
        sqlx::query_scalar("SELECT generation FROM projection_generations WHERE name = 'billing'")
            .fetch_one(store.projections_pool())
            .await
            .unwrap();
    assert_eq!(generation, 5);
    drop(store);

    // Opening again moves nothing and loses nothing.
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.list_docs("counts").await.unwrap().len(), 2);
    assert_eq!(store.list_docs("billing").await.unwrap().len(), 1);
}

#[tokio::test]
async fn projections_ahead_of_the_log_start_over_and_a_missing_projections_file_is_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ticketsync.db");
    let store = SqliteStore::create(&path).await.unwrap();
    // The log is empty (head 0); a projection at position 3 describes entries it lacks,
    // as when the database file is restored from a copy older than its projections file.
    store
        .commit_projection(
            "tickets",
            0,
            3,
            vec![DocChange::Put {
                key: "k".into(),
                doc: b"v".to_vec(),
            }],
        )
        .await
        .unwrap();
    drop(store);
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.projection_checkpoint("tickets").await.unwrap(), 0);
    assert!(store.list_docs("tickets").await.unwrap().is_empty());
    drop(store);

    for suffix in ["", "-wal", "-shm"] {
        let f = format!("{}{suffix}", SqliteStore::projections_path(&path).display());
        let _ = std::fs::remove_file(f);
    }
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.projection_checkpoint("tickets").await.unwrap(), 0);
    store
        .commit_projection(
            "tickets",
            0,
            0,
            vec![DocChange::Put {
                key: "k".into(),
                doc: b"v".to_vec(),
            }],
        )
        .await
        .unwrap();
}

/// A crash after the projections file took the rows but before the database file dropped
/// them: opening again drops them without copying twice.
#[tokio::test]
async fn a_move_interrupted_after_the_copy_finishes_without_copying_again() {
    static PROJECTIONS: Migrator = sqlx::migrate!("./migrations/sqlite-projections");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ticketsync.db");
    schema_5(&path, "counts").await;
    {
        let pool = new_file(&SqliteStore::projections_path(&path)).await;
        PROJECTIONS.run(&pool).await.unwrap();
        // What the copy wrote, with one document changed since by a projection commit.
        for sql in [
            "INSERT INTO projection_generations (generation, name, position) \
             VALUES (3, 'counts', 0), (4, NULL, 0)",
            "INSERT INTO projection_docs (generation, key, doc) VALUES \
             (3, 't/1', x'7b2261223a317d'), (3, 'i/1/a', x'5b5d'), (4, 'old', x'00')",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }

    let store = SqliteStore::open(&path).await.unwrap();
    assert_moved(&store).await;
    // The projections file's rows stand; the database file's older copy was not applied.
    assert_eq!(
        store.list_docs("counts").await.unwrap(),
        vec![
            ("i/1/a".to_string(), b"[]".to_vec()),
            ("t/1".to_string(), br#"{"a":1}"#.to_vec())
        ]
    );
}

/// A schema-5 file's ticket projection was written with 64-line history chunks: it moves
/// retired, its rows are reclaimed, and the ticket projection starts over from the log.
#[tokio::test]
async fn a_schema_5_ticket_projection_moves_retired_and_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ticketsync.db");
    schema_5(&path, "tickets").await;
    let store = SqliteStore::open(&path).await.unwrap();
    assert_moved(&store).await;
    assert_eq!(store.projection_checkpoint("tickets").await.unwrap(), 0);
    assert!(store.list_docs("tickets").await.unwrap().is_empty());
    // Its two documents and the retired generation's one.
    assert_eq!(store.reclaim_projections(10).await.unwrap(), 3);
}

/// A database as store schema `schema` left it: the projections file without its
/// migrations from `projections_from` on and the database file without its own from
/// `db_from` on, holding a ticket projection and another one. Opening it again retires
/// the ticket projection (written with history chunks, which later schemas do not read);
/// the other projection stays live.
async fn a_ticket_projection_of_schema_is_retired(
    schema: u32,
    projections_from: i64,
    db_from: i64,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ticketsync.db");
    {
        let store = SqliteStore::create(&path).await.unwrap();
        drop(store);
    }
    {
        let pool = new_file(&SqliteStore::projections_path(&path)).await;
        sqlx::query("DELETE FROM _sqlx_migrations WHERE version >= ?")
            .bind(projections_from)
            .execute(&pool)
            .await
            .unwrap();
        for sql in [
            "INSERT INTO projection_generations (name, position) VALUES ('tickets', 0), ('counts', 0)",
            "INSERT INTO projection_docs (generation, key, doc) \
             SELECT generation, 'k', x'7b7d' FROM projection_generations",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
        let db = new_file(&path).await;
        sqlx::query("DELETE FROM _sqlx_migrations WHERE version >= ?")
            .bind(db_from)
            .execute(&db)
            .await
            .unwrap();
        sqlx::query("UPDATE meta SET value = ? WHERE key = 'store_schema'")
            .bind(schema.to_string())
            .execute(&db)
            .await
            .unwrap();
        db.close().await;
    }
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(
        store.get_meta("store_schema").await.unwrap(),
        Some(STORE_SCHEMA.to_string())
    );
    assert!(store.list_docs("tickets").await.unwrap().is_empty());
    assert_eq!(store.list_docs("counts").await.unwrap().len(), 1);
    assert_eq!(store.reclaim_projections(10).await.unwrap(), 1);
}

/// Schema 6: the ticket projection with 64-line history chunks is retired by the
/// projections file's migration 0002.
#[tokio::test]
async fn a_schema_6_ticket_projection_is_retired_and_other_projections_stay() {
    a_ticket_projection_of_schema_is_retired(6, 2, 8).await;
}

/// Schema 7: the ticket projection with 16-line history chunks is retired by the
/// projections file's migration 0003 (history is read from the log since schema 8).
#[tokio::test]
async fn a_schema_7_ticket_projection_is_retired_and_other_projections_stay() {
    a_ticket_projection_of_schema_is_retired(7, 3, 9).await;
}

/// Schema 8: the ticket projection with item documents is retired by the projections
/// file's migration 0004 (items are read from the log since schema 9).
#[tokio::test]
async fn a_schema_8_ticket_projection_is_retired_and_other_projections_stay() {
    a_ticket_projection_of_schema_is_retired(8, 4, 10).await;
}
