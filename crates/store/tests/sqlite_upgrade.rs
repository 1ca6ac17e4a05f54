//! Opening a SQLite store written before migration 0007 (projection documents in a
//! WITHOUT ROWID table) moves its documents to the rowid table unchanged.

use std::borrow::Cow;
use std::str::FromStr;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use ticketsync_store::{DocChange, SqliteStore, Store};

static ALL: Migrator = sqlx::migrate!("./migrations/sqlite");

#[tokio::test]
async fn documents_written_before_the_rowid_table_read_and_append_the_same_after() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    // The store as migrations 1 to 6 left it, with documents small and large (a large
    // one spilled onto overflow pages of the old table).
    let big = format!("[{}]", vec!["\"line of a long history\""; 400].join(","));
    {
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .unwrap()
            .create_if_missing(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await
            .unwrap();
        let old = Migrator {
            migrations: Cow::Owned(
                ALL.iter()
                    .filter(|m| m.version <= 6)
                    .cloned()
                    .collect::<Vec<_>>(),
            ),
            ..Migrator::DEFAULT
        };
        old.run(&pool).await.unwrap();
        let ddl: String = sqlx::query_scalar(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'projection_docs'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(ddl.contains("WITHOUT ROWID"), "{ddl}");
        sqlx::query("INSERT INTO projection_generations (name, position) VALUES ('tickets', 7)")
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
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert!(!ddl.contains("WITHOUT ROWID"), "{ddl}");
    assert_eq!(store.projection_checkpoint("tickets").await.unwrap(), 7);
    assert_eq!(
        store.list_docs("tickets").await.unwrap(),
        vec![
            ("a".to_string(), b"1".to_vec()),
            ("h/x".to_string(), big.clone().into_bytes())
        ]
    );
    store
        .commit_projection(
            "tickets",
            7,
            8,
            vec![DocChange::Append {
                key: "h/x".into(),
                elements: b"\"one more\"".to_vec(),
            }],
        )
        .await
        .unwrap();
    let loaded = store
        .load_docs("tickets", &["h/x".to_string()])
        .await
        .unwrap();
    let want = format!("{},\"one more\"]", &big[..big.len() - 1]);
    assert_eq!(loaded["h/x"], want.into_bytes());
}
