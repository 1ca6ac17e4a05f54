//! Store errors, split by what the caller can do about them.

use ulid::Ulid;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer appended to the stream first; decide again against the new state.
    #[error("conflict on {stream_id}: expected version {expected}, found {actual}; another writer got there first, try again")]
    Conflict {
        stream_id: Ulid,
        expected: u64,
        actual: u64,
    },
    /// A projection was advanced by someone else meanwhile.
    #[error("projection {projection} moved: expected checkpoint {expected}, found {actual}")]
    CheckpointMoved {
        projection: String,
        expected: u64,
        actual: u64,
    },
    /// The database was written by a newer ticketsync.
    #[error("the database has store schema {found}, newer than this ticketsync supports ({supported}); upgrade ticketsync")]
    SchemaTooNew { found: u32, supported: u32 },
    /// There is no initialized database where one was expected.
    #[error("{0}")]
    NotInitialized(String),
    /// Stored data that cannot be what this code wrote.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// The database could not be reached or opened.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// An error of the SQLite log reader (`read_log`, `scan_log`), which reads through
    /// rusqlite rather than sqlx.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}
