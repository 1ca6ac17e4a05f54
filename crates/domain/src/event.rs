//! Domain events: the facts a ticket's history is made of.

use crate::billing::{IssuedInvoice, TransactionFee};
use crate::ids::{Actor, InstanceId, ItemId, LinkId, Timestamp};
use crate::outsource::{Move, Side};
use crate::terms::Terms;
use crate::ticket::ItemKind;
use crate::values::{Attachment, Charge, TimeEntry};

/// One fact about one ticket. Item events carry the whole new value (not a patch),
/// so each event reads on its own in an audit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    TicketCreated {
        title: String,
        description: String,
        customer: Option<String>,
        status: String,
    },
    StatusChanged {
        from: String,
        to: String,
    },
    NoteAdded {
        item: ItemId,
        text: String,
        internal: bool,
    },
    NoteEdited {
        item: ItemId,
        text: String,
        internal: bool,
    },
    TimeAdded {
        item: ItemId,
        entry: TimeEntry,
    },
    TimeEdited {
        item: ItemId,
        entry: TimeEntry,
    },
    ChargeAdded {
        item: ItemId,
        charge: Charge,
    },
    ChargeEdited {
        item: ItemId,
        charge: Charge,
    },
    AttachmentAdded {
        item: ItemId,
        attachment: Attachment,
    },
    ItemDeleted {
        item: ItemId,
        kind: ItemKind,
    },
    /// A move of the outsourcing link `link`.
    Outsource {
        link: LinkId,
        change: LinkChange,
    },
    /// The service partner issued its invoice for the completed link `link`.
    InvoiceIssued {
        link: LinkId,
        invoice: IssuedInvoice,
    },
    /// The lead recorded the transaction fee of a portal company's acceptance of `link`.
    TransactionFeeRecorded {
        link: LinkId,
        fee: TransactionFee,
    },
}

/// What the partner sees of the ticket when it is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub title: String,
    pub description: String,
    pub customer: Option<String>,
}

/// The outsourcing moves, with what each carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkChange {
    /// Lead: the ticket is sent to `partner` with terms (the link is created Unsent and
    /// moves to Assigned).
    Sent {
        lead: InstanceId,
        partner: InstanceId,
        terms: Terms,
        snapshot: Snapshot,
    },
    /// A new terms version: a lead's revision or a partner's counter-offer.
    TermsProposed {
        terms: Terms,
    },
    /// Partner: accepts the terms version `terms_version` (the latest it knew).
    Accepted {
        terms_version: u32,
        organization: Option<String>,
    },
    Declined {
        reason: String,
    },
    Canceled,
    Expired,
    Started,
    /// Partner: insource complete.
    Completed,
    /// Lead: completion sent back.
    Rejected {
        reason: String,
    },
    Approved,
    ForceCompleted,
    /// Either side: the ticket status became Complete.
    CompletedByStatus,
}

impl LinkChange {
    /// The state-machine move this change makes when authored by `side`.
    pub fn mv(&self, side: Side) -> Move {
        match self {
            LinkChange::Sent { .. } => Move::Send,
            LinkChange::TermsProposed { .. } => match side {
                Side::Lead => Move::Revise,
                Side::Partner => Move::Counter,
            },
            LinkChange::Accepted { .. } => Move::Accept,
            LinkChange::Declined { .. } => Move::Decline,
            LinkChange::Canceled => Move::Cancel,
            LinkChange::Expired => Move::Expire,
            LinkChange::Started => Move::Start,
            LinkChange::Completed => Move::Complete,
            LinkChange::Rejected { .. } => Move::Reject,
            LinkChange::Approved => Move::Approve,
            LinkChange::ForceCompleted => Move::ForceComplete,
            LinkChange::CompletedByStatus => Move::CompleteByStatus,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            LinkChange::Sent { .. } => "outsource_sent",
            LinkChange::TermsProposed { .. } => "terms_proposed",
            LinkChange::Accepted { .. } => "outsource_accepted",
            LinkChange::Declined { .. } => "outsource_declined",
            LinkChange::Canceled => "outsource_canceled",
            LinkChange::Expired => "outsource_expired",
            LinkChange::Started => "outsource_started",
            LinkChange::Completed => "insource_completed",
            LinkChange::Rejected { .. } => "completion_rejected",
            LinkChange::Approved => "completion_approved",
            LinkChange::ForceCompleted => "outsource_force_completed",
            LinkChange::CompletedByStatus => "outsource_completed_by_status",
        }
    }
}

impl Event {
    /// A stable snake_case name, used in the log's `event_type` column and in `replay`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::TicketCreated { .. } => "ticket_created",
            Event::StatusChanged { .. } => "status_changed",
            Event::NoteAdded { .. } => "note_added",
            Event::NoteEdited { .. } => "note_edited",
            Event::TimeAdded { .. } => "time_added",
            Event::TimeEdited { .. } => "time_edited",
            Event::ChargeAdded { .. } => "charge_added",
            Event::ChargeEdited { .. } => "charge_edited",
            Event::AttachmentAdded { .. } => "attachment_added",
            Event::ItemDeleted { .. } => "item_deleted",
            Event::Outsource { change, .. } => change.type_name(),
            Event::InvoiceIssued { .. } => "invoice_issued",
            Event::TransactionFeeRecorded { .. } => "transaction_fee_recorded",
        }
    }

    /// Every event type name of the ticket and item events, in declaration order
    /// (the outsourcing types are [`Event::OUTSOURCE_TYPE_NAMES`]).
    pub const TYPE_NAMES: [&'static str; 10] = [
        "ticket_created",
        "status_changed",
        "note_added",
        "note_edited",
        "time_added",
        "time_edited",
        "charge_added",
        "charge_edited",
        "attachment_added",
        "item_deleted",
    ];

    /// Every outsourcing event type name.
    pub const OUTSOURCE_TYPE_NAMES: [&'static str; 12] = [
        "outsource_sent",
        "terms_proposed",
        "outsource_accepted",
        "outsource_declined",
        "outsource_canceled",
        "outsource_expired",
        "outsource_started",
        "insource_completed",
        "completion_rejected",
        "completion_approved",
        "outsource_force_completed",
        "outsource_completed_by_status",
    ];

    /// The outsourcing event types that can complete a link (after which the partner
    /// issues its invoice).
    pub const LINK_COMPLETING_TYPE_NAMES: [&'static str; 3] = [
        "completion_approved",
        "outsource_force_completed",
        "outsource_completed_by_status",
    ];

    /// Every billing event type name.
    pub const BILLING_TYPE_NAMES: [&'static str; 2] =
        ["invoice_issued", "transaction_fee_recorded"];

    /// The item this event is about, if any.
    pub fn item(&self) -> Option<ItemId> {
        match self {
            Event::TicketCreated { .. }
            | Event::StatusChanged { .. }
            | Event::Outsource { .. }
            | Event::InvoiceIssued { .. }
            | Event::TransactionFeeRecorded { .. } => None,
            Event::NoteAdded { item, .. }
            | Event::NoteEdited { item, .. }
            | Event::TimeAdded { item, .. }
            | Event::TimeEdited { item, .. }
            | Event::ChargeAdded { item, .. }
            | Event::ChargeEdited { item, .. }
            | Event::AttachmentAdded { item, .. }
            | Event::ItemDeleted { item, .. } => Some(*item),
        }
    }
}

/// Who caused an event, when, and what they knew; carried by the log envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventMeta {
    pub actor: Actor,
    pub at: Timestamp,
    /// Outsourcing transitions of the ticket the author knew when deciding.
    pub link_seq: u32,
}
