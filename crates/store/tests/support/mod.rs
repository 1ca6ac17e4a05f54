//! The backends the store contract suite runs against: a fresh SQLite file or a fresh
//! PostgreSQL database per test, behind one `Db`, plus the raw access tests need to play
//! the attacker (or the operator) on either backend. `contract_tests!` instantiates each
//! generic test once per backend.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};
use tempfile::TempDir;
use ticketsync_store::{PgStore, SqliteStore, Store, StoreError};
use ticketsync_testkit::PgTestDb;

/// Which backend a contract test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

impl Kind {
    /// A blob literal holding `bytes`, in the backend's SQL.
    pub fn blob_hex(self, bytes: &[u8]) -> String {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        match self {
            Kind::Sqlite => format!("X'{hex}'"),
            Kind::Postgres => format!("'\\x{hex}'::bytea"),
        }
    }

    /// A one-byte blob literal in the backend's SQL.
    pub fn blob_literal(self) -> &'static str {
        match self {
            Kind::Sqlite => "X'00'",
            Kind::Postgres => "'\\x00'::bytea",
        }
    }
}

enum Backend {
    Sqlite {
        _dir: TempDir,
        path: PathBuf,
        store: SqliteStore,
    },
    Postgres {
        store: PgStore,
        // Last: the database is dropped after the store's pool is gone.
        db: PgTestDb,
    },
}

/// One test's store on a fresh database of the chosen backend.
pub struct Db {
    pub kind: Kind,
    pub store: Arc<dyn Store>,
    backend: Backend,
}

impl Db {
    pub async fn fresh(kind: Kind) -> Db {
        match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let path = dir.path().join("log.sqlite");
                let store = SqliteStore::create(&path).await.expect("create store");
                Db {
                    kind,
                    store: Arc::new(store.clone()),
                    backend: Backend::Sqlite {
                        _dir: dir,
                        path,
                        store,
                    },
                }
            }
            Kind::Postgres => {
                let db = PgTestDb::create("store");
                let store = PgStore::create(db.url()).await.expect("create store");
                Db {
                    kind,
                    store: Arc::new(store.clone()),
                    backend: Backend::Postgres { store, db },
                }
            }
        }
    }

    /// The SQLite file (SQLite tests only).
    pub fn path(&self) -> &Path {
        match &self.backend {
            Backend::Sqlite { path, .. } => path,
            Backend::Postgres { .. } => panic!("not a SQLite test"),
        }
    }

    pub fn sqlite(&self) -> &SqliteStore {
        match &self.backend {
            Backend::Sqlite { store, .. } => store,
            Backend::Postgres { .. } => panic!("not a SQLite test"),
        }
    }

    pub fn pg(&self) -> &PgTestDb {
        match &self.backend {
            Backend::Postgres { db, .. } => db,
            Backend::Sqlite { .. } => panic!("not a PostgreSQL test"),
        }
    }

    /// Closes the store's connections (the test's `store` fails afterwards).
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite { store, .. } => store.pool().close().await,
            Backend::Postgres { store, .. } => store.close().await,
        }
    }

    /// Opens the same database again, as a new process would.
    pub async fn open_again(&self) -> Result<Arc<dyn Store>, StoreError> {
        Ok(match &self.backend {
            Backend::Sqlite { path, .. } => Arc::new(SqliteStore::open(path).await?),
            Backend::Postgres { db, .. } => Arc::new(PgStore::open(db.url()).await?),
        })
    }

    /// `create` on the same database again (as a repeated `init` would).
    pub async fn create_again(&self) -> Result<Arc<dyn Store>, StoreError> {
        Ok(match &self.backend {
            Backend::Sqlite { path, .. } => Arc::new(SqliteStore::create(path).await?),
            Backend::Postgres { db, .. } => Arc::new(PgStore::create(db.url()).await?),
        })
    }

    /// Runs one statement through the store's own connections, with every guard in
    /// place, and returns the rows it changed or the database's error message.
    pub async fn exec_as_app(&self, sql: &str) -> Result<u64, String> {
        let done = match &self.backend {
            Backend::Sqlite { store, .. } => sqlx::query(sql)
                .execute(store.pool())
                .await
                .map(|d| d.rows_affected()),
            Backend::Postgres { store, .. } => sqlx::query(sql)
                .execute(store.pool())
                .await
                .map(|d| d.rows_affected()),
        };
        done.map_err(|e| e.to_string())
    }

    /// The number of rows in `table`, whatever the store can still read of them (on
    /// SQLite, `projection_*` tables are counted in the projections file).
    pub async fn count_rows(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let n = match &self.backend {
            Backend::Sqlite { store, .. } if table.starts_with("projection_") => {
                sqlx::query_scalar(&sql)
                    .fetch_one(store.projections_pool())
                    .await
            }
            Backend::Sqlite { store, .. } => sqlx::query_scalar(&sql).fetch_one(store.pool()).await,
            Backend::Postgres { store, .. } => {
                sqlx::query_scalar(&sql).fetch_one(store.pool()).await
            }
        };
        n.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Runs SQL over a connection of its own, as someone with direct access to the
    /// database (the file, or a database role) would; panics if it fails.
    pub async fn exec_raw(&self, sql: &str) {
        match &self.backend {
            Backend::Sqlite { path, .. } => {
                let mut c = attacker(path).await;
                sqlx::raw_sql(sql)
                    .execute(&mut c)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                c.close().await.expect("close");
            }
            Backend::Postgres { db, .. } => {
                db.exec(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
        }
    }

    /// `exec_raw` on SQLite's projections file.
    pub async fn exec_raw_projections(&self, sql: &str) {
        let Backend::Sqlite { path, .. } = &self.backend else {
            panic!("only SQLite keeps its projections in a file of their own");
        };
        let mut c = attacker(&SqliteStore::projections_path(path)).await;
        sqlx::raw_sql(sql)
            .execute(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        c.close().await.expect("close");
    }

    /// Runs `sql` with the append-only guards of `table` switched off, then switches
    /// them back on: what an attacker with full control of the database can do. SQLite:
    /// the refusing triggers are dropped and recreated from their stored definitions;
    /// PostgreSQL: a superuser disables the table's user triggers.
    pub async fn without_guards(&self, table: &str, sql: &str) {
        match &self.backend {
            Backend::Sqlite { path, .. } => {
                let mut c = attacker(path).await;
                let guards: Vec<(String, String)> = sqlx::query_as(
                    "SELECT name, sql FROM sqlite_master \
                     WHERE type = 'trigger' AND tbl_name = ? AND name LIKE '%refuse%'",
                )
                .bind(table)
                .fetch_all(&mut c)
                .await
                .expect("list triggers");
                assert!(!guards.is_empty(), "{table} has no guard triggers");
                for (name, _) in &guards {
                    sqlx::raw_sql(&format!("DROP TRIGGER \"{name}\""))
                        .execute(&mut c)
                        .await
                        .expect("drop trigger");
                }
                let done = sqlx::raw_sql(sql).execute(&mut c).await;
                for (_, def) in &guards {
                    sqlx::raw_sql(def)
                        .execute(&mut c)
                        .await
                        .expect("restore trigger");
                }
                done.unwrap_or_else(|e| panic!("{sql}: {e}"));
                c.close().await.expect("close");
            }
            Backend::Postgres { db, .. } => {
                db.exec(&format!(
                    "ALTER TABLE {table} DISABLE TRIGGER USER; {sql}; \
                     ALTER TABLE {table} ENABLE TRIGGER USER"
                ))
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
        }
    }
}

/// A separate connection to the SQLite file, as another process would open it. Schema
/// changes go through such a connection alone: SQLite may judge DDL on a pooled
/// connection against a schema it cached before another connection changed it.
pub async fn attacker(path: &Path) -> SqliteConnection {
    let opts = SqliteConnectOptions::new().filename(path);
    SqliteConnection::connect_with(&opts)
        .await
        .expect("raw connection")
}

/// Instantiates each listed `async fn name(kind: Kind)` as `sqlite::name` and
/// `postgres::name`.
macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::support::Kind::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::support::Kind::Postgres).await
                }
            )*
        }
    };
}
