//! Throwaway PostgreSQL databases for tests: each test gets a database of its own, with a
//! unique name, on the server named by `TICKETSYNC_TEST_PG`, dropped when the guard is.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::{Connection, Executor, PgConnection};

/// The server tests use unless `TICKETSYNC_TEST_PG` names another (trust auth, local).
pub const DEFAULT_TEST_PG: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The maintenance database URL tests create their databases through.
pub fn test_pg_url() -> String {
    std::env::var("TICKETSYNC_TEST_PG")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_TEST_PG.to_string())
}

/// `url` with its database (the path) replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{db}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// One test's database. Dropping it drops the database (terminating its connections),
/// also when the test fails.
pub struct PgTestDb {
    admin: String,
    name: String,
    url: String,
}

/// Runs one async job on a fresh current-thread runtime in its own thread, so the
/// helpers work from sync tests, from async tests and from `Drop`.
fn run<T: Send + 'static>(
    job: impl std::future::Future<Output = Result<T, sqlx::Error>> + Send + 'static,
) -> Result<T, String> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        rt.block_on(job).map_err(|e| e.to_string())
    })
    .join()
    .map_err(|_| "the database helper thread panicked".to_string())?
}

impl PgTestDb {
    /// Creates an empty database named `ts_test_<pid>_<n>_<nanos>_<tag>` (`tag` is only
    /// for people reading the server's database list).
    pub fn create(tag: &str) -> PgTestDb {
        let db = PgTestDb::uncreated(tag);
        let sql = format!("CREATE DATABASE \"{}\"", db.name);
        let target = db.admin.clone();
        if let Err(e) = run(async move {
            let mut c = PgConnection::connect(&target).await?;
            c.execute(sql.as_str()).await?;
            c.close().await
        }) {
            panic!(
                "cannot create test database {} on {} (set TICKETSYNC_TEST_PG, \
                 or run scripts/setup.sh to start a local server): {e}",
                db.name, db.admin
            );
        }
        db
    }

    /// A unique database name and URL, without creating the database (for code that
    /// creates it itself); it is still dropped, if it exists, with the guard.
    pub fn uncreated(tag: &str) -> PgTestDb {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let tag: String = tag
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(20)
            .collect::<String>()
            .to_lowercase();
        let name = format!(
            "ts_test_{}_{}_{nanos}_{tag}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let admin = test_pg_url();
        let url = with_database(&admin, &name);
        PgTestDb { admin, name, url }
    }

    /// The URL of the test's database.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs SQL statements on the test's database over a connection of their own (as
    /// an operator with `psql` would), returning the first error.
    pub fn exec(&self, sql: &str) -> Result<(), String> {
        let url = self.url.clone();
        let sql = sql.to_string();
        run(async move {
            let mut c = PgConnection::connect(&url).await?;
            c.execute(sql.as_str()).await?;
            c.close().await
        })
    }
}

impl Drop for PgTestDb {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        if let Err(e) = run(async move {
            let mut c = PgConnection::connect(&admin).await?;
            c.execute(sql.as_str()).await?;
            c.close().await
        }) {
            // Not a panic: a drop during unwinding must not abort the test binary.
            eprintln!("warning: could not drop test database {}: {e}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_database_replaces_only_the_path() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "y"),
            "postgres://u:p@h/y?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:1", "z"), "postgres://h:1/z");
    }
}
