//! The sync daemon: for every partner, relays this instance's outbound channel from the
//! log's outbox to NATS JetStream, and applies the partner's inbound channel exactly once
//! (dedupe, apply and checkpoint in one transaction; the broker ack after the commit).
//!
//! JetStream is transport, not the source of truth: the sender's outbox is. A receiver that
//! sees a gap asks the sender to publish again from the missing seq, and the sender
//! announces its channel head now and then so a lost tail is noticed too.

pub mod inbound;
pub mod lock;
pub mod nats;
pub mod outbound;
pub mod wake;

pub use inbound::{apply_message, apply_messages, Outcome, Pipeline, Settled};
pub use nats::{run, RunOptions, RunStats};
pub use outbound::{outbound_messages, pack};
