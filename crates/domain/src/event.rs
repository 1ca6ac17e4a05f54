//! Domain events: the facts a ticket's history is made of.

use crate::ids::{Actor, ItemId, Timestamp};
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
        }
    }

    /// Every event type name, in declaration order.
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

    /// The item this event is about, if any.
    pub fn item(&self) -> Option<ItemId> {
        match self {
            Event::TicketCreated { .. } | Event::StatusChanged { .. } => None,
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

/// Who caused an event and when; carried by the log envelope, not the payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventMeta {
    pub actor: Actor,
    pub at: Timestamp,
}
