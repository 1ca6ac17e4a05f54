//! Conversions from stored column values to the store's types, shared by both backends:
//! a value that does not fit is `StoreError::Corrupt`, never a panic.

use ticketsync_wire::GENESIS_HASH;
use ulid::Ulid;

use crate::channel::ChannelHead;
use crate::{Head, StoreError, STORE_SCHEMA};

pub(crate) fn to_u64(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative {what}: {v}")))
}

pub(crate) fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Corrupt(format!("value {v} out of range")))
}

pub(crate) fn parse_ulid(s: &str, what: &str) -> Result<Ulid, StoreError> {
    Ulid::from_string(s).map_err(|_| StoreError::Corrupt(format!("{what} {s:?} is not a ULID")))
}

pub(crate) fn hash32(v: Vec<u8>, what: &str) -> Result<[u8; 32], StoreError> {
    hash32_of(&v, what)
}

pub(crate) fn hash32_of(v: &[u8], what: &str) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(v)
        .map_err(|_| StoreError::Corrupt(format!("{what} has {} bytes, not 32", v.len())))
}

/// The log's recorded head from its (position, hash) row, or position 0 and the genesis
/// hash when it has none (an empty log).
pub(crate) fn log_head_of(head: Option<(i64, Vec<u8>)>) -> Result<Head, StoreError> {
    match head {
        Some((p, h)) => Ok(Head {
            position: to_u64(p, "head position")?,
            hash: hash32(h, "head hash")?,
        }),
        None => Ok(Head {
            position: 0,
            hash: GENESIS_HASH,
        }),
    }
}

/// A channel's last (seq, hash) row, or the genesis head when it has none.
pub(crate) fn head_of(head: Option<(i64, Vec<u8>)>) -> Result<ChannelHead, StoreError> {
    match head {
        Some((s, h)) => Ok(ChannelHead {
            seq: to_u64(s, "channel seq")?,
            hash: hash32(h, "channel hash")?,
        }),
        None => Ok(ChannelHead {
            seq: 0,
            hash: GENESIS_HASH,
        }),
    }
}

/// Refuses a database written by a newer ticketsync, given its stored `store_schema`
/// setting (`None`: not written yet, a new database).
pub(crate) fn check_store_schema(stored: Option<String>) -> Result<(), StoreError> {
    let found: u32 = match stored {
        None => return Ok(()),
        Some(s) => s
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("store_schema {s:?} is not a number")))?,
    };
    if found > STORE_SCHEMA {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: STORE_SCHEMA,
        });
    }
    Ok(())
}
