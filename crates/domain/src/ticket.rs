//! The ticket aggregate: its state and `evolve`, the fold of events into that state.

use std::collections::BTreeMap;
use std::fmt;

use crate::event::{Event, EventMeta};
use crate::ids::{Actor, ItemId, TicketId, Timestamp};
use crate::values::{Attachment, Charge, TimeEntry};

/// A ticket as the command side needs it to decide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    pub id: TicketId,
    pub title: String,
    pub description: String,
    pub customer: Option<String>,
    pub status: String,
    pub created_by: Actor,
    pub created_at: Timestamp,
    /// Every item ever added, deleted ones included (flagged), by id.
    pub items: BTreeMap<ItemId, Item>,
}

/// The kinds of ticket item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ItemKind {
    Note,
    Time,
    Charge,
    Attachment,
}

impl ItemKind {
    pub fn name(self) -> &'static str {
        match self {
            ItemKind::Note => "note",
            ItemKind::Time => "time entry",
            ItemKind::Charge => "charge",
            ItemKind::Attachment => "attachment",
        }
    }
}

impl fmt::Display for ItemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A note, time entry, charge or attachment on a ticket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub id: ItemId,
    /// Who added it. Only this user (on this instance) may edit or delete it.
    pub author: Actor,
    pub body: ItemBody,
    pub deleted: bool,
    /// Set when someone on another instance than the author's edited it locally.
    pub diverged: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemBody {
    Note { text: String, internal: bool },
    Time(TimeEntry),
    Charge(Charge),
    Attachment(Attachment),
}

impl ItemBody {
    pub fn kind(&self) -> ItemKind {
        match self {
            ItemBody::Note { .. } => ItemKind::Note,
            ItemBody::Time(_) => ItemKind::Time,
            ItemBody::Charge(_) => ItemKind::Charge,
            ItemBody::Attachment(_) => ItemKind::Attachment,
        }
    }
}

/// Folds one event into the ticket state. `decide` only emits events that apply cleanly;
/// an event that does not fit (an edit of an unknown item, a second creation) leaves the
/// state unchanged, so a replay never panics on a history it did not produce itself.
pub fn evolve(
    state: Option<Ticket>,
    id: TicketId,
    meta: &EventMeta,
    event: &Event,
) -> Option<Ticket> {
    match (state, event) {
        (
            None,
            Event::TicketCreated {
                title,
                description,
                customer,
                status,
            },
        ) => Some(Ticket {
            id,
            title: title.clone(),
            description: description.clone(),
            customer: customer.clone(),
            status: status.clone(),
            created_by: meta.actor.clone(),
            created_at: meta.at,
            items: BTreeMap::new(),
        }),
        (None, _) => None,
        (Some(mut t), event) => {
            apply(&mut t, meta, event);
            Some(t)
        }
    }
}

fn apply(t: &mut Ticket, meta: &EventMeta, event: &Event) {
    let mut add = |item: ItemId, body: ItemBody| {
        t.items.entry(item).or_insert_with(|| Item {
            id: item,
            author: meta.actor.clone(),
            body,
            deleted: false,
            diverged: false,
        });
    };
    match event {
        Event::TicketCreated { .. } => {}
        Event::StatusChanged { to, .. } => t.status = to.clone(),
        Event::NoteAdded {
            item,
            text,
            internal,
        } => add(
            *item,
            ItemBody::Note {
                text: text.clone(),
                internal: *internal,
            },
        ),
        Event::TimeAdded { item, entry } => add(*item, ItemBody::Time(entry.clone())),
        Event::ChargeAdded { item, charge } => add(*item, ItemBody::Charge(charge.clone())),
        Event::AttachmentAdded { item, attachment } => {
            add(*item, ItemBody::Attachment(attachment.clone()))
        }
        Event::NoteEdited {
            item,
            text,
            internal,
        } => edit(
            t,
            *item,
            meta,
            ItemBody::Note {
                text: text.clone(),
                internal: *internal,
            },
        ),
        Event::TimeEdited { item, entry } => edit(t, *item, meta, ItemBody::Time(entry.clone())),
        Event::ChargeEdited { item, charge } => {
            edit(t, *item, meta, ItemBody::Charge(charge.clone()))
        }
        Event::ItemDeleted { item, .. } => {
            if let Some(i) = t.items.get_mut(item) {
                i.deleted = true;
                // A delete of another instance's item stays on this side, like an edit.
                if i.author.instance != meta.actor.instance {
                    i.diverged = true;
                }
            }
        }
    }
}

fn edit(t: &mut Ticket, item: ItemId, meta: &EventMeta, body: ItemBody) {
    if let Some(i) = t.items.get_mut(&item) {
        if i.body.kind() == body.kind() && !i.deleted {
            if i.author.instance != meta.actor.instance {
                i.diverged = true;
            }
            i.body = body;
        }
    }
}
