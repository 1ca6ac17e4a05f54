//! Event schema version 1: the postcard layout of every event type.
//!
//! Postcard encodes an enum variant by its index, so variants and fields here are never
//! reordered, removed or changed. A change of shape is a new schema version with an
//! upcaster in `codec`; the golden fixtures under `tests/fixtures/v1` hold this layout fixed.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use ticketsync_domain as d;
use ulid::Ulid;

/// One event as stored in schema version 1. Externally tagged: the JSON form is
/// `{"note_added": {...}}`, which `replay` splits into `type` and `data`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventV1 {
    TicketCreated(TicketCreated),
    StatusChanged(StatusChanged),
    NoteAdded(Note),
    NoteEdited(Note),
    TimeAdded(Time),
    TimeEdited(Time),
    ChargeAdded(ChargeV1),
    ChargeEdited(ChargeV1),
    AttachmentAdded(AttachmentV1),
    ItemDeleted(ItemDeleted),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TicketCreated {
    pub title: String,
    pub description: String,
    pub customer: Option<String>,
    /// The initial ticket status.
    pub status: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StatusChanged {
    pub from: String,
    pub to: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Note {
    #[serde(with = "crate::serde_bytes::ulid_id")]
    #[schemars(with = "String")]
    pub item: Ulid,
    pub text: String,
    /// Internal notes never leave the instance.
    pub internal: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Time {
    #[serde(with = "crate::serde_bytes::ulid_id")]
    #[schemars(with = "String")]
    pub item: Ulid,
    /// Decimal hours, as a string (`"1.5"`).
    #[serde(with = "rust_decimal::serde::str")]
    #[schemars(with = "String")]
    pub hours: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    #[schemars(with = "String")]
    pub offset_hours: Decimal,
    pub resource: String,
    pub role: Option<String>,
    pub summary: String,
    /// `YYYY-MM-DD`.
    #[schemars(with = "String")]
    pub date: NaiveDate,
    pub billable: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChargeV1 {
    #[serde(with = "crate::serde_bytes::ulid_id")]
    #[schemars(with = "String")]
    pub item: Ulid,
    pub description: String,
    #[serde(with = "rust_decimal::serde::str")]
    #[schemars(with = "String")]
    pub quantity: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    #[schemars(with = "String")]
    pub unit_cost: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    #[schemars(with = "String")]
    pub unit_price: Decimal,
    pub billable: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AttachmentV1 {
    #[serde(with = "crate::serde_bytes::ulid_id")]
    #[schemars(with = "String")]
    pub item: Ulid,
    /// SHA-256 of the content, lowercase hex in JSON.
    #[serde(with = "crate::serde_bytes::digest")]
    #[schemars(with = "String")]
    pub sha256: [u8; 32],
    pub filename: String,
    pub size: u64,
    pub media_type: String,
    pub internal: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KindV1 {
    Note,
    Time,
    Charge,
    Attachment,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ItemDeleted {
    #[serde(with = "crate::serde_bytes::ulid_id")]
    #[schemars(with = "String")]
    pub item: Ulid,
    pub kind: KindV1,
}

impl From<&d::Event> for EventV1 {
    fn from(e: &d::Event) -> Self {
        use d::Event as E;
        match e {
            E::TicketCreated {
                title,
                description,
                customer,
                status,
            } => EventV1::TicketCreated(TicketCreated {
                title: title.clone(),
                description: description.clone(),
                customer: customer.clone(),
                status: status.clone(),
            }),
            E::StatusChanged { from, to } => EventV1::StatusChanged(StatusChanged {
                from: from.clone(),
                to: to.clone(),
            }),
            E::NoteAdded {
                item,
                text,
                internal,
            } => EventV1::NoteAdded(note(item, text, *internal)),
            E::NoteEdited {
                item,
                text,
                internal,
            } => EventV1::NoteEdited(note(item, text, *internal)),
            E::TimeAdded { item, entry } => EventV1::TimeAdded(time(item, entry)),
            E::TimeEdited { item, entry } => EventV1::TimeEdited(time(item, entry)),
            E::ChargeAdded { item, charge } => EventV1::ChargeAdded(charge_v1(item, charge)),
            E::ChargeEdited { item, charge } => EventV1::ChargeEdited(charge_v1(item, charge)),
            E::AttachmentAdded {
                item,
                attachment: a,
            } => EventV1::AttachmentAdded(AttachmentV1 {
                item: item.0,
                sha256: a.sha256.0,
                filename: a.filename.clone(),
                size: a.size,
                media_type: a.media_type.clone(),
                internal: a.internal,
            }),
            E::ItemDeleted { item, kind } => EventV1::ItemDeleted(ItemDeleted {
                item: item.0,
                kind: match kind {
                    d::ItemKind::Note => KindV1::Note,
                    d::ItemKind::Time => KindV1::Time,
                    d::ItemKind::Charge => KindV1::Charge,
                    d::ItemKind::Attachment => KindV1::Attachment,
                },
            }),
        }
    }
}

fn note(item: &d::ItemId, text: &str, internal: bool) -> Note {
    Note {
        item: item.0,
        text: text.to_string(),
        internal,
    }
}

fn time(item: &d::ItemId, e: &d::TimeEntry) -> Time {
    Time {
        item: item.0,
        hours: e.hours,
        offset_hours: e.offset_hours,
        resource: e.resource.clone(),
        role: e.role.clone(),
        summary: e.summary.clone(),
        date: e.date,
        billable: e.billable,
    }
}

fn charge_v1(item: &d::ItemId, c: &d::Charge) -> ChargeV1 {
    ChargeV1 {
        item: item.0,
        description: c.description.clone(),
        quantity: c.quantity,
        unit_cost: c.unit_cost,
        unit_price: c.unit_price,
        billable: c.billable,
    }
}

impl From<EventV1> for d::Event {
    fn from(e: EventV1) -> Self {
        use d::Event as E;
        let id = d::ItemId;
        match e {
            EventV1::TicketCreated(t) => E::TicketCreated {
                title: t.title,
                description: t.description,
                customer: t.customer,
                status: t.status,
            },
            EventV1::StatusChanged(s) => E::StatusChanged {
                from: s.from,
                to: s.to,
            },
            EventV1::NoteAdded(n) => E::NoteAdded {
                item: id(n.item),
                text: n.text,
                internal: n.internal,
            },
            EventV1::NoteEdited(n) => E::NoteEdited {
                item: id(n.item),
                text: n.text,
                internal: n.internal,
            },
            EventV1::TimeAdded(t) => E::TimeAdded {
                item: id(t.item),
                entry: entry(&t),
            },
            EventV1::TimeEdited(t) => E::TimeEdited {
                item: id(t.item),
                entry: entry(&t),
            },
            EventV1::ChargeAdded(c) => E::ChargeAdded {
                item: id(c.item),
                charge: charge(&c),
            },
            EventV1::ChargeEdited(c) => E::ChargeEdited {
                item: id(c.item),
                charge: charge(&c),
            },
            EventV1::AttachmentAdded(a) => E::AttachmentAdded {
                item: id(a.item),
                attachment: d::Attachment {
                    sha256: d::Sha256Digest(a.sha256),
                    filename: a.filename,
                    size: a.size,
                    media_type: a.media_type,
                    internal: a.internal,
                },
            },
            EventV1::ItemDeleted(x) => E::ItemDeleted {
                item: id(x.item),
                kind: match x.kind {
                    KindV1::Note => d::ItemKind::Note,
                    KindV1::Time => d::ItemKind::Time,
                    KindV1::Charge => d::ItemKind::Charge,
                    KindV1::Attachment => d::ItemKind::Attachment,
                },
            },
        }
    }
}

fn entry(t: &Time) -> d::TimeEntry {
    d::TimeEntry {
        hours: t.hours,
        offset_hours: t.offset_hours,
        resource: t.resource.clone(),
        role: t.role.clone(),
        summary: t.summary.clone(),
        date: t.date,
        billable: t.billable,
    }
}

fn charge(c: &ChargeV1) -> d::Charge {
    d::Charge {
        description: c.description.clone(),
        quantity: c.quantity,
        unit_cost: c.unit_cost,
        unit_price: c.unit_price,
        billable: c.billable,
    }
}
