//! Read models built from the log: the checkpointed runner, the ticket projection,
//! projection digests, rebuild and point-in-time views.

pub mod billing;
pub mod links;
pub mod runner;
pub mod ticket;

pub use runner::{
    catch_up, digest, rebuild, reclaim, Projection, ProjectionError, Rebuilt, REBUILD_BATCH,
    RUN_BATCH,
};
pub use ticket::{
    ticket_as_of, FeeView, InvoiceRef, StatedInvoice, TicketProjection, TicketView, TICKETS,
};
