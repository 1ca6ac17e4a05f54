//! Pure ticket domain: identifiers, validated values, commands, events, `decide` and `evolve`.
//!
//! Nothing in this crate performs I/O, reads a clock or draws random numbers: ids and
//! timestamps are passed in by the caller, so every function here is deterministic and
//! can be property-tested without a database.

pub mod billing;
pub mod command;
pub mod error;
pub mod event;
pub mod ids;
pub mod outsource;
pub mod policy;
pub mod sync;
pub mod terms;
pub mod ticket;
pub mod values;
pub mod workflow;

pub use command::{decide, Command, Context, OutsourceCommand};
pub use error::{DomainError, Refusal};
pub use event::{Event, EventMeta, LinkChange, Snapshot};
pub use ids::{Actor, InstanceId, ItemId, LinkId, TicketId, Timestamp};
pub use outsource::{Link, Move, OutsourceStatus, Side};
pub use policy::{Policy, StatusSet};
pub use terms::{Currency, Rate, Rounding, Terms};
pub use ticket::{evolve, Item, ItemBody, ItemKind, Sharing, Ticket};
pub use values::{Attachment, Charge, Sha256Digest, TimeEntry};
