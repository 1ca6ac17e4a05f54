//! Exit codes and the mapping from every error to one of them.

use ticketsync_domain::DomainError;
use ticketsync_projections::ProjectionError;
use ticketsync_store::StoreError;
use ticketsync_wire::WireError;

pub const OK: u8 = 0;
/// Anything not listed below: I/O errors, an unreachable database, a bug.
pub const OTHER: u8 = 1;
/// Bad command line or malformed input value (also clap's own code for usage errors).
pub const USAGE: u8 = 2;
/// The workflow or the permissions refuse the command in the ticket's current state.
pub const REFUSED: u8 = 3;
/// `verify` found a problem in the log.
pub const VERIFY_FAILED: u8 = 4;
/// The ticket or item does not exist.
pub const NOT_FOUND: u8 = 5;
/// Another writer changed the ticket at the same moment, repeatedly; run the command again.
pub const CONFLICT: u8 = 6;
/// The data directory is not initialized, or was written by a newer ticketsync.
pub const INCOMPATIBLE: u8 = 7;
/// Another `sync run` already runs for this instance.
pub const BUSY: u8 = 8;

pub use ticketsync_app::Failure;

/// The exit code for an error, looked up through its whole chain of causes.
pub fn code_for(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause
            .downcast_ref::<ticketsync_sync::lock::DaemonBusy>()
            .is_some()
        {
            return BUSY;
        }
        if let Some(f) = cause.downcast_ref::<Failure>() {
            return match f {
                Failure::Usage(_) => USAGE,
                Failure::Refused(_) => REFUSED,
                Failure::NotFound(_) => NOT_FOUND,
            };
        }
        if let Some(d) = cause.downcast_ref::<DomainError>() {
            return match d {
                DomainError::Invalid { .. } => USAGE,
                DomainError::Refused(_) => REFUSED,
                DomainError::TicketNotFound(_) | DomainError::ItemNotFound { .. } => NOT_FOUND,
            };
        }
        if let Some(s) = cause.downcast_ref::<StoreError>() {
            return match s {
                StoreError::Conflict { .. } | StoreError::CheckpointMoved { .. } => CONFLICT,
                StoreError::SchemaTooNew { .. } | StoreError::NotInitialized(_) => INCOMPATIBLE,
                _ => OTHER,
            };
        }
        if let Some(WireError::TooNew { .. }) = cause.downcast_ref::<WireError>() {
            return INCOMPATIBLE;
        }
        if let Some(ProjectionError::Store(s)) = cause.downcast_ref::<ProjectionError>() {
            if matches!(
                s,
                StoreError::SchemaTooNew { .. } | StoreError::NotInitialized(_)
            ) {
                return INCOMPATIBLE;
            }
        }
    }
    OTHER
}
