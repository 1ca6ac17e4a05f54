//! The ticket aggregate: its state and `evolve`, the fold of events into that state.

use std::collections::BTreeMap;
use std::fmt;

use crate::event::{Event, EventMeta, LinkChange};
use crate::ids::{Actor, InstanceId, ItemId, LinkId, TicketId, Timestamp};
use crate::outsource::{ItemFacts, Link, OutsourceStatus, Side};
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
    /// Every outsourcing of the ticket, oldest first; the last is the current one.
    pub links: Vec<Link>,
}

pub use crate::outsource::Sharing;

impl Ticket {
    /// The `link_seq` of the next event: one more than the highest transition seq known
    /// (0 when none). Counting from the highest seq rather than the number of transitions
    /// keeps the order right for a partner that never saw the ticket's earlier links: its
    /// first move still sorts after the send it answers.
    pub fn known(&self) -> u32 {
        self.links
            .iter()
            .flat_map(|l| &l.transitions)
            .map(|t| t.seq + 1)
            .max()
            .unwrap_or(0)
    }

    /// The current (latest) link, if the ticket was ever outsourced or insourced.
    pub fn current_link(&self) -> Option<&Link> {
        self.links.last()
    }

    pub fn link(&self, id: LinkId) -> Option<&Link> {
        self.links.iter().find(|l| l.id == id)
    }

    /// Whether something authored knowing `link_seq` transitions was authored on a live
    /// link (see [`crate::outsource::live_at`]).
    pub fn live_at(&self, link_seq: u32) -> bool {
        crate::outsource::live_at(&self.links, link_seq)
    }

    /// The link in effect for something authored knowing `link_seq` transitions.
    pub fn link_at(&self, link_seq: u32) -> Option<&Link> {
        crate::outsource::link_at(&self.links, link_seq)
    }

    /// How an item stands towards the link's counterparty.
    pub fn sharing(&self, item: &Item) -> Sharing {
        crate::outsource::sharing(
            &self.links,
            &ItemFacts {
                author: &item.author.instance,
                link_seq: item.link_seq,
                internal: item.internal(),
                received: item.received,
                diverged: item.diverged,
            },
        )
    }

    /// The version of an item both sides hold: the last one its author gave it while the
    /// link it was shared on was live (`None`: deleted, or never shared).
    pub fn shared_version<'a>(&self, item: &'a Item) -> Option<&'a ItemBody> {
        let first = item.author_versions.first()?;
        if !self.live_at(first.0) {
            return None;
        }
        let link = self.link_at(first.0).map(|l| l.id);
        let mut current = first.1.as_ref();
        for (seq, v) in &item.author_versions[1..] {
            if !(self.live_at(*seq) && self.link_at(*seq).map(|l| l.id) == link) {
                // An author's change while not live stays on its side and the item stops
                // syncing (it is diverged): later versions never reach the other side.
                break;
            }
            current = v.as_ref();
        }
        current
    }

    /// The instance whose log holds this ticket: the one that created it locally (a lead
    /// creates its tickets; a partner creates the insourced copy when it arrives).
    pub fn home(&self) -> &InstanceId {
        &self.created_by.instance
    }
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
    /// Derived: the item was changed on this side only (see [`crate::outsource::diverged`]).
    pub diverged: bool,
    /// Outsourcing transitions the author knew when adding it.
    pub link_seq: u32,
    /// Arrived from the link's counterparty (authored on another instance).
    pub received: bool,
    /// Edited or deleted here by another instance than the author's.
    pub foreign_change: bool,
    /// The `link_seq` of each edit or delete by the author.
    pub author_change_seqs: Vec<u32>,
    /// Every version its author gave it, with the `link_seq` then: the add, each edit,
    /// and `None` for a delete. What both sides hold of it is the last version given
    /// while the link it was shared on was live ([`Ticket::shared_version`]).
    pub author_versions: Vec<(u32, Option<ItemBody>)>,
}

impl Item {
    /// Internal items never leave the instance (a partner's notes are stored internal on
    /// the lead, hidden from the lead's customer, yet shared with the partner).
    pub fn internal(&self) -> bool {
        match &self.body {
            ItemBody::Note { internal, .. } => *internal,
            ItemBody::Attachment(a) => a.internal,
            ItemBody::Time(_) | ItemBody::Charge(_) => false,
        }
    }
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
            links: Vec::new(),
        }),
        (None, _) => None,
        (Some(mut t), event) => {
            apply(&mut t, meta, event);
            Some(t)
        }
    }
}

fn apply(t: &mut Ticket, meta: &EventMeta, event: &Event) {
    // An item is received when it was authored on another instance than this log's.
    let received = meta.actor.instance != *t.home();
    let mut add = |item: ItemId, body: ItemBody| {
        t.items.entry(item).or_insert_with(|| Item {
            id: item,
            author: meta.actor.clone(),
            author_versions: vec![(meta.link_seq, Some(body.clone()))],
            body,
            deleted: false,
            diverged: false,
            link_seq: meta.link_seq,
            received,
            foreign_change: false,
            author_change_seqs: vec![],
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
                note_change(i, meta, None);
            }
        }
        Event::Outsource { link, change } => {
            outsource(t, *link, meta, change);
            // A transition can change, after the fact, what was live when: re-derive all.
            let ids: Vec<ItemId> = t.items.keys().copied().collect();
            for id in ids {
                t.rederive(id);
            }
            return;
        }
        Event::InvoiceIssued { link, invoice } => {
            // The first invoice of a link stands; a second one is refused before it is
            // ever appended (by `decide` and by `sync::receive`).
            let issuer = &meta.actor.instance;
            if let Some(l) = t
                .links
                .iter_mut()
                .find(|l| l.id == *link && l.partner == *issuer)
            {
                l.invoice.get_or_insert_with(|| invoice.clone());
            }
            return;
        }
        Event::TransactionFeeRecorded { link, fee } => {
            let by = &meta.actor.instance;
            if let Some(l) = t.links.iter_mut().find(|l| l.id == *link && l.lead == *by) {
                l.transaction_fee.get_or_insert_with(|| fee.clone());
            }
            return;
        }
    }
    if let Some(id) = event.item() {
        t.rederive(id);
    }
}

fn note_change(i: &mut Item, meta: &EventMeta, new: Option<&ItemBody>) {
    if i.author.instance == meta.actor.instance {
        i.author_change_seqs.push(meta.link_seq);
        i.author_versions.push((meta.link_seq, new.cloned()));
    } else {
        i.foreign_change = true;
    }
}

fn edit(t: &mut Ticket, item: ItemId, meta: &EventMeta, body: ItemBody) {
    if let Some(i) = t.items.get_mut(&item) {
        if i.body.kind() != body.kind() {
            return;
        }
        if !i.deleted {
            note_change(i, meta, Some(&body));
            i.body = body;
        } else if i.author.instance == meta.actor.instance {
            // Deleted here by someone else (a local change); the author's edit still is
            // the version both sides bill.
            i.author_versions.push((meta.link_seq, Some(body)));
        }
    }
}

impl Ticket {
    /// Recomputes an item's derived `diverged` flag from the links as now resolved.
    fn rederive(&mut self, id: ItemId) {
        let Some(i) = self.items.get(&id) else { return };
        let d = crate::outsource::diverged(
            &self.links,
            i.link_seq,
            i.internal() && !i.received,
            i.foreign_change,
            &i.author_change_seqs,
        );
        if let Some(i) = self.items.get_mut(&id) {
            i.diverged = d;
        }
    }
}

fn outsource(t: &mut Ticket, link: LinkId, meta: &EventMeta, change: &LinkChange) {
    crate::outsource::apply_change(&mut t.links, link, meta, change);
}

/// The outsource status of the ticket's current link, if any.
pub fn outsource_status(t: &Ticket) -> Option<OutsourceStatus> {
    t.current_link().map(|l| l.status)
}

/// The side `me` is on for the ticket's current link.
pub fn side_of(t: &Ticket, me: &InstanceId) -> Option<Side> {
    t.current_link().and_then(|l| l.side_of(me))
}
