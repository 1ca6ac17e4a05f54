//! The stored and replicated form of ticket events: versioned postcard schemas, the log
//! entry with its SHA-256 chain, upcasting, and the JSON rendering used by `replay`.
//!
//! Domain types never derive `Serialize`; the types here do, and converting between the
//! two is the only place where the byte layout of history is decided.

pub mod chain;
pub mod channel;
pub mod codec;
pub mod replay;
pub mod serde_bytes;
pub mod v1;

pub use chain::{channel_hash, EntryFields, EntryHasher, LogEntry, NewEntry, GENESIS_HASH};
pub use codec::{decode_event, encode_event, event_data_json, WireError, SCHEMA_VERSION};
pub use replay::ReplayLine;
