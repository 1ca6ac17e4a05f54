//! The ticket projection: each ticket's head (its current state and totals) as a JSON
//! document, with what each time entry and charge adds to the totals and the instance's
//! ticket numbers; a ticket's items and history are read from its stream in the log.

use std::collections::{BTreeSet, HashMap};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use ticketsync_domain::outsource::{apply_change, diverged, sharing, ItemFacts};
use ticketsync_domain::{
    Actor, Event, EventMeta, InstanceId, ItemBody, ItemKind, Link, LinkChange, TimeEntry, Timestamp,
};
use ticketsync_store::{DocChange, Store};
use ticketsync_wire::replay::rfc3339_ms;
use ticketsync_wire::{decode_event, LogEntry};
use ulid::Ulid;

use crate::links::{current_view, to_docs, to_domain, LinkDoc, OutsourceView};
use crate::runner::{Projection, ProjectionError};

/// The projection's stored name.
pub const TICKETS: &str = "tickets";
/// Key of the document that numbers tickets; ticket keys are ULIDs, so it cannot clash.
const NUMBERS_KEY: &str = "#numbers";

/// A ticket as shown by `ticket show --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketView {
    pub id: String,
    /// This instance's number for the ticket, from 1 in order of creation.
    pub number: u64,
    pub title: String,
    pub description: String,
    pub customer: Option<String>,
    pub status: String,
    pub created_at: String,
    pub created_by: ActorView,
    pub updated_at: String,
    /// Version of the ticket's stream: the number of events it has.
    pub version: u64,
    /// Log position of the ticket's latest event.
    pub position: u64,
    pub totals: Totals,
    /// The current link's outsource status (`null` when never outsourced or insourced).
    pub outsource_status: Option<String>,
    /// The current link, as seen from this instance.
    pub outsource: Option<OutsourceView>,
    /// Every link of the ticket with all its transitions, oldest first.
    pub links: Vec<LinkDoc>,
    /// Invoices of the ticket's links: issued here (as the partner, numbered in this
    /// instance's sequence) or received (as the lead, numbered in the partner's).
    #[serde(default)]
    pub invoices: Vec<InvoiceRef>,
    /// Transaction fees the lead recorded for portal companies' acceptances.
    #[serde(default)]
    pub transaction_fees: Vec<FeeView>,
    /// Every item in the order added, deleted ones included and marked.
    pub items: Vec<ItemView>,
    pub history: Vec<HistoryView>,
}

/// An invoice of one of the ticket's links: its number in the issuing partner's sequence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceRef {
    pub number: u64,
    pub link_id: String,
    /// When the link completed (the invoice date).
    pub issued_at: String,
    /// What the partner stated in its `invoice_issued` event (`None` on the partner until
    /// it has recorded the event; on the lead the event is what creates this record).
    #[serde(default)]
    pub stated: Option<StatedInvoice>,
}

/// A transaction fee recorded for the acceptance of one link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeView {
    pub link_id: String,
    pub partner: String,
    pub amount: Decimal,
    pub currency: String,
    pub recorded_at: String,
}

/// The figures of an `invoice_issued` event, which the lead checks its own bill against.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatedInvoice {
    pub terms_version: u32,
    pub currency: String,
    pub lines: u32,
    pub subtotal: Decimal,
    pub lines_digest: String,
    /// Log position of the event on this instance.
    pub position: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorView {
    pub instance: String,
    pub user: String,
}

/// Sums over the items that are not deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub hours: Decimal,
    pub billable_hours: Decimal,
    pub charges_cost: Decimal,
    pub charges_price: Decimal,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemView {
    pub id: String,
    /// `note`, `time`, `charge` or `attachment`.
    pub kind: String,
    pub author: ActorView,
    pub created_at: String,
    pub updated_at: String,
    pub deleted: bool,
    /// Changed on this side only (by another instance than the author's, or by the author
    /// while the link was not live).
    pub diverged: bool,
    /// Internal items never leave this instance (a partner's notes are kept internal on the
    /// lead: hidden from the lead's customer, still shared with the partner).
    pub internal: bool,
    /// `shared`, `internal`, `not shared` or `diverged`.
    pub sharing: String,
    /// Arrived from the link's counterparty.
    pub received: bool,
    /// Outsourcing transitions its author knew when adding it.
    pub link_seq: u32,
    /// Edited or deleted here by another instance than the author's.
    #[serde(default)]
    pub foreign_change: bool,
    /// The `link_seq` of each change by its author.
    #[serde(default)]
    pub author_change_seqs: Vec<u32>,
    #[serde(flatten)]
    pub body: ItemBodyView,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ItemBodyView {
    Note {
        text: String,
    },
    Time {
        hours: Decimal,
        offset_hours: Decimal,
        resource: String,
        role: Option<String>,
        summary: String,
        date: String,
        billable: bool,
    },
    Charge {
        description: String,
        quantity: Decimal,
        unit_cost: Decimal,
        unit_price: Decimal,
        billable: bool,
    },
    Attachment {
        sha256: String,
        filename: String,
        size: u64,
        media_type: String,
    },
}

/// One line of a ticket's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryView {
    pub position: u64,
    pub version: u64,
    pub event_id: String,
    pub at: String,
    pub actor: ActorView,
    #[serde(rename = "type")]
    pub event_type: String,
    pub summary: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Numbers {
    last: u64,
    /// The last invoice number this instance issued.
    #[serde(default)]
    last_invoice: u64,
}

fn kind_key(k: ItemKind) -> &'static str {
    match k {
        ItemKind::Note => "note",
        ItemKind::Time => "time",
        ItemKind::Charge => "charge",
        ItemKind::Attachment => "attachment",
    }
}

fn body_view(b: &ItemBody) -> (ItemBodyView, bool) {
    match b {
        ItemBody::Note { text, internal } => (ItemBodyView::Note { text: text.clone() }, *internal),
        ItemBody::Time(e) => (time_view(e), false),
        ItemBody::Charge(c) => (
            ItemBodyView::Charge {
                description: c.description.clone(),
                quantity: c.quantity,
                unit_cost: c.unit_cost,
                unit_price: c.unit_price,
                billable: c.billable,
            },
            false,
        ),
        ItemBody::Attachment(a) => (
            ItemBodyView::Attachment {
                sha256: a.sha256.to_hex(),
                filename: a.filename.clone(),
                size: a.size,
                media_type: a.media_type.clone(),
            },
            a.internal,
        ),
    }
}

fn time_view(e: &TimeEntry) -> ItemBodyView {
    ItemBodyView::Time {
        hours: e.hours,
        offset_hours: e.offset_hours,
        resource: e.resource.clone(),
        role: e.role.clone(),
        summary: e.summary.clone(),
        date: e.date.to_string(),
        billable: e.billable,
    }
}

fn actor(e: &LogEntry) -> ActorView {
    ActorView {
        instance: e.actor_instance.clone(),
        user: e.actor_user.clone(),
    }
}

/// The body an event gives an item, for add and edit events.
fn event_body(ev: &Event) -> Option<ItemBody> {
    Some(match ev {
        Event::NoteAdded { text, internal, .. } | Event::NoteEdited { text, internal, .. } => {
            ItemBody::Note {
                text: text.clone(),
                internal: *internal,
            }
        }
        Event::TimeAdded { entry, .. } | Event::TimeEdited { entry, .. } => {
            ItemBody::Time(entry.clone())
        }
        Event::ChargeAdded { charge, .. } | Event::ChargeEdited { charge, .. } => {
            ItemBody::Charge(charge.clone())
        }
        Event::AttachmentAdded { attachment, .. } => ItemBody::Attachment(attachment.clone()),
        _ => return None,
    })
}

fn summary(ev: &Event) -> String {
    let internal = |i: bool| if i { " (internal)" } else { "" };
    match ev {
        Event::TicketCreated { title, status, .. } => format!("created {title:?} as {status}"),
        Event::StatusChanged { from, to } => format!("status {from} -> {to}"),
        Event::NoteAdded {
            item, internal: i, ..
        } => format!("note {item} added{}", internal(*i)),
        Event::NoteEdited {
            item, internal: i, ..
        } => format!("note {item} edited{}", internal(*i)),
        Event::TimeAdded { item, entry } => {
            format!("time {item} added: {} h by {}", entry.hours, entry.resource)
        }
        Event::TimeEdited { item, entry } => {
            format!(
                "time {item} edited: {} h by {}",
                entry.hours, entry.resource
            )
        }
        Event::ChargeAdded { item, charge } => {
            format!(
                "charge {item} added: {} x {}",
                charge.quantity, charge.description
            )
        }
        Event::ChargeEdited { item, charge } => {
            format!(
                "charge {item} edited: {} x {}",
                charge.quantity, charge.description
            )
        }
        Event::AttachmentAdded { item, attachment } => format!(
            "attachment {item} added: {} ({} bytes){}",
            attachment.filename,
            attachment.size,
            internal(attachment.internal)
        ),
        Event::ItemDeleted { item, kind } => format!("{} {item} deleted", kind_key(*kind)),
        Event::Outsource { change, .. } => match change {
            LinkChange::Sent { partner, lead, .. } => format!("outsourced by {lead} to {partner}"),
            LinkChange::TermsProposed { .. } => "new terms proposed".into(),
            LinkChange::Accepted { terms_version, .. } => {
                format!("accepted terms version {terms_version}")
            }
            LinkChange::Declined { reason } => format!("declined: {reason}"),
            LinkChange::Canceled => "outsourcing canceled".into(),
            LinkChange::Expired => "offer expired".into(),
            LinkChange::Started => "work started".into(),
            LinkChange::Completed => "insource complete: waiting for approval".into(),
            LinkChange::Rejected { reason } => format!("completion rejected: {reason}"),
            LinkChange::Approved => "completion approved".into(),
            LinkChange::ForceCompleted => "force-completed by the lead".into(),
            LinkChange::CompletedByStatus => "link completed: ticket status Complete".into(),
        },
        Event::InvoiceIssued { invoice, .. } => format!(
            "invoice {} issued: {} {} in {} lines (terms version {})",
            invoice.number,
            invoice.subtotal,
            invoice.currency,
            invoice.lines,
            invoice.terms_version
        ),
        Event::TransactionFeeRecorded { fee, .. } => {
            format!("transaction fee {} {} recorded", fee.amount, fee.currency)
        }
    }
}

/// Where each part of a ticket is stored: the head (the view without items and history)
/// under `t/{ticket}`, what each time entry and charge adds to the totals under
/// `c/{ticket}/{item}`, and `#n/{number}` naming the ticket with that number. Neither the
/// items nor the history are stored: both are the ticket's stream, read from the log when
/// a ticket is read (`get`). Each kind has its own prefix, so the heads alone (a ticket
/// list) are one key-range scan; ticket ids are ULIDs, so no ticket's prefix is a prefix of
/// another's.
fn head_key(ticket: &str) -> String {
    format!("t/{ticket}")
}

fn counted_key(ticket: &str, item: &str) -> String {
    format!("c/{ticket}/{item}")
}

const HEADS_PREFIX: &str = "t/";
const COUNTED_PREFIX: &str = "c/";
/// Tickets whose streams `list` reads in one round trip.
const LIST_STREAMS: usize = 64;

fn number_key(number: u64) -> String {
    format!("#n/{number:012}")
}

/// The ticket whose counted item a stored key holds.
fn counted_ticket(key: &str) -> Option<&str> {
    key.strip_prefix(COUNTED_PREFIX)
        .and_then(|r| r.split_once('/'))
        .map(|(t, _)| t)
}

/// An item in a ticket's view (read from the stream) with the log position that added it,
/// which orders items.
#[derive(Clone, Debug)]
struct ViewItem {
    added: u64,
    item: ItemView,
}

/// What a time entry or a charge adds to its ticket's totals, as stored: all the head
/// needs to move its totals when the item is edited or deleted. Notes and attachments add
/// nothing, so nothing is stored for them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Counted {
    /// `time` or `charge`: an edit of another kind leaves it as it is.
    kind: String,
    deleted: bool,
    /// Its current contribution (zero once deleted).
    adds: Totals,
}

/// A ticket while entries are applied: the head (the view with empty items and history),
/// the counted items loaded or added and which of them changed, and, when the whole view is
/// wanted (reading a ticket, not applying to stored heads), every item.
#[derive(Clone, Debug)]
struct Working {
    head: TicketView,
    counted: HashMap<String, Counted>,
    dirty: BTreeSet<String>,
    items: Option<HashMap<String, ViewItem>>,
    /// The head's links as the domain's, converted when an event first needs them and kept
    /// in step with the head from then on.
    links: Option<Vec<Link>>,
}

impl Working {
    fn new(head: TicketView, whole: bool) -> Self {
        Working {
            head,
            counted: HashMap::new(),
            dirty: BTreeSet::new(),
            items: whole.then(HashMap::new),
            links: None,
        }
    }

    /// The whole view: items in the order added, and the ticket's `history` (in log order).
    /// Only a `whole` working has items; otherwise they come out empty.
    fn into_view(self, history: Vec<HistoryView>) -> TicketView {
        let mut v = self.head;
        let mut items: Vec<ViewItem> = self.items.unwrap_or_default().into_values().collect();
        items.sort_by_key(|s| s.added);
        v.items = items.into_iter().map(|s| s.item).collect();
        v.history = history;
        v
    }

    /// The documents that changed.
    fn changes(self, ticket: &str, out: &mut Vec<DocChange>) -> Result<(), ProjectionError> {
        let key = head_key(ticket);
        out.push(DocChange::Put {
            doc: to_doc(&key, &self.head)?,
            key,
        });
        for id in &self.dirty {
            if let Some(c) = self.counted.get(id) {
                let key = counted_key(ticket, id);
                out.push(DocChange::Put {
                    doc: to_doc(&key, c)?,
                    key,
                });
            }
        }
        Ok(())
    }
}

/// What an item body adds to the ticket's totals (notes and attachments: nothing).
fn contribution(b: &ItemBody) -> Totals {
    let mut t = Totals::default();
    match b {
        ItemBody::Time(e) => {
            t.hours = e.hours;
            if e.billable {
                t.billable_hours = e.hours - e.offset_hours;
            }
        }
        ItemBody::Charge(c) => {
            t.charges_cost = c.quantity * c.unit_cost;
            t.charges_price = c.quantity * c.unit_price;
        }
        ItemBody::Note { .. } | ItemBody::Attachment(_) => {}
    }
    t
}

/// Whether items of this kind add to the totals (and so are stored as [`Counted`]).
fn counts(k: ItemKind) -> bool {
    matches!(k, ItemKind::Time | ItemKind::Charge)
}

/// Moves the totals from an item's old contribution to its new one. Decimals are exact, so
/// keeping running sums gives the same figures as summing every item again.
fn adjust(t: &mut Totals, before: &Totals, after: &Totals) {
    t.hours = (t.hours - before.hours + after.hours).normalize();
    t.billable_hours =
        (t.billable_hours - before.billable_hours + after.billable_hours).normalize();
    t.charges_cost = (t.charges_cost - before.charges_cost + after.charges_cost).normalize();
    t.charges_price = (t.charges_price - before.charges_price + after.charges_price).normalize();
}

/// Applies one log entry to a ticket. `number` is used when the entry creates the ticket,
/// `whole` when it does: whether the ticket keeps every item (reading it) or only its
/// counted ones (applying to stored heads). An event that changes a time entry or a charge
/// needs that item's [`Counted`] loaded (if it exists).
///
/// The totals move with the counted items alone, whichever the mode, so a ticket read from
/// its stream has the totals of its stored head.
fn apply_to(
    work: Option<Working>,
    number: u64,
    whole: bool,
    e: &LogEntry,
    ev: &Event,
) -> Result<Option<Working>, ProjectionError> {
    let at = rfc3339_ms(e.occurred_at);
    let mut w = match (work, ev) {
        (
            None,
            Event::TicketCreated {
                title,
                description,
                customer,
                status,
            },
        ) => Working::new(
            TicketView {
                id: e.stream_id.to_string(),
                number,
                title: title.clone(),
                description: description.clone(),
                customer: customer.clone(),
                status: status.clone(),
                created_at: at.clone(),
                created_by: actor(e),
                updated_at: at.clone(),
                version: 0,
                position: 0,
                totals: Totals::default(),
                outsource_status: None,
                outsource: None,
                links: vec![],
                invoices: vec![],
                transaction_fees: vec![],
                items: vec![],
                history: vec![],
            },
            whole,
        ),
        (None, _) => return Ok(None),
        (Some(w), _) => w,
    };
    let Working {
        head: v,
        counted,
        dirty,
        items,
        links: cached,
    } = &mut w;
    let editor = InstanceId::parse(&e.actor_instance).map_err(|_| ProjectionError::BadDoc {
        key: v.id.clone(),
        reason: format!("bad instance {:?}", e.actor_instance),
    })?;
    match ev {
        Event::TicketCreated { .. } => {}
        Event::StatusChanged { to, .. } => v.status = to.clone(),
        Event::Outsource { link, change } => {
            let meta = EventMeta {
                actor: Actor {
                    instance: editor.clone(),
                    user: e.actor_user.clone(),
                },
                at: Timestamp(e.occurred_at),
                link_seq: e.link_seq,
            };
            let links = domain_links(cached, &v.links)?;
            apply_change(links, *link, &meta, change);
            v.links = to_docs(links);
            v.outsource = current_view(links, &v.created_by.instance);
            v.outsource_status = v.outsource.as_ref().map(|o| o.status.clone());
        }
        Event::NoteAdded { item, .. }
        | Event::TimeAdded { item, .. }
        | Event::ChargeAdded { item, .. }
        | Event::AttachmentAdded { item, .. } => {
            let id = item.to_string();
            if let Some(body) = body_wanted(ev, items) {
                let kind = kind_key(body.kind());
                if counts(body.kind()) && !counted.contains_key(&id) {
                    let adds = contribution(&body);
                    adjust(&mut v.totals, &Totals::default(), &adds);
                    counted.insert(
                        id.clone(),
                        Counted {
                            kind: kind.to_string(),
                            deleted: false,
                            adds,
                        },
                    );
                    dirty.insert(id.clone());
                }
                if let Some(items) = items.as_mut().filter(|m| !m.contains_key(&id)) {
                    let (body, internal) = body_view(&body);
                    let i = ItemView {
                        id: id.clone(),
                        kind: kind.to_string(),
                        author: actor(e),
                        created_at: at.clone(),
                        updated_at: at.clone(),
                        deleted: false,
                        diverged: false,
                        internal,
                        sharing: String::new(),
                        received: e.actor_instance != v.created_by.instance,
                        link_seq: e.link_seq,
                        foreign_change: false,
                        author_change_seqs: vec![],
                        body,
                    };
                    items.insert(
                        id,
                        ViewItem {
                            added: e.position,
                            item: i,
                        },
                    );
                }
            }
        }
        Event::NoteEdited { item, .. }
        | Event::TimeEdited { item, .. }
        | Event::ChargeEdited { item, .. } => {
            let id = item.to_string();
            if let Some(body) = body_wanted(ev, items) {
                let kind = kind_key(body.kind());
                if let Some(c) = counted
                    .get_mut(&id)
                    .filter(|c| !c.deleted && c.kind == kind)
                {
                    let adds = contribution(&body);
                    adjust(&mut v.totals, &c.adds, &adds);
                    c.adds = adds;
                    dirty.insert(id.clone());
                }
                if let Some(i) = shown(items, &id).filter(|i| !i.deleted && i.kind == kind) {
                    note_change(i, &editor, e.link_seq);
                    let (b, internal) = body_view(&body);
                    i.body = b;
                    i.internal = internal;
                    i.updated_at = at.clone();
                }
            }
        }
        Event::ItemDeleted { item, .. } => {
            let id = item.to_string();
            if let Some(c) = counted.get_mut(&id) {
                adjust(&mut v.totals, &c.adds, &Totals::default());
                c.adds = Totals::default();
                c.deleted = true;
                dirty.insert(id.clone());
            }
            if let Some(i) = shown(items, &id) {
                note_change(i, &editor, e.link_seq);
                i.deleted = true;
                i.updated_at = at.clone();
            }
        }
        Event::TransactionFeeRecorded { link, fee } => {
            let link_id = link.to_string();
            let partner = domain_links(cached, &v.links)?
                .iter()
                .find(|l| l.id == *link && l.lead == editor)
                .map(|l| l.partner.to_string());
            if let Some(partner) = partner {
                if !v.transaction_fees.iter().any(|f| f.link_id == link_id) {
                    v.transaction_fees.push(FeeView {
                        link_id,
                        partner,
                        amount: fee.amount,
                        currency: fee.currency.code().to_string(),
                        recorded_at: at.clone(),
                    });
                }
            }
        }
        Event::InvoiceIssued { link, invoice } => {
            let link_id = link.to_string();
            let issued_by_partner = domain_links(cached, &v.links)?
                .iter()
                .any(|l| l.id == *link && l.partner == editor);
            if issued_by_partner {
                let stated = StatedInvoice {
                    terms_version: invoice.terms_version,
                    currency: invoice.currency.code().to_string(),
                    lines: invoice.lines,
                    subtotal: invoice.subtotal,
                    lines_digest: invoice.lines_digest.to_hex(),
                    position: e.position,
                };
                match v.invoices.iter_mut().find(|i| i.link_id == link_id) {
                    Some(i) => {
                        i.stated.get_or_insert(stated);
                    }
                    None => v.invoices.push(InvoiceRef {
                        number: invoice.number,
                        link_id,
                        issued_at: at.clone(),
                        stated: Some(stated),
                    }),
                }
            }
        }
    }
    // Sharing and divergence can change after the fact (a concurrent transition that wins
    // supersedes what an item was authored under): a link event re-derives every item,
    // an item event only its item. Only a whole ticket has its items.
    if let Some(items) = items.as_mut() {
        if matches!(ev, Event::Outsource { .. }) {
            let links = domain_links(cached, &v.links)?;
            for s in items.values_mut() {
                rederive(links, &mut s.item)?;
            }
        } else if let Some(id) = ev.item().map(|i| i.to_string()) {
            // Looked up, not searched for: a ticket can have thousands of items.
            if let Some(s) = items.get_mut(&id) {
                rederive(domain_links(cached, &v.links)?, &mut s.item)?;
            }
        }
    }
    v.version = e.version;
    v.position = e.position;
    v.updated_at = at;
    Ok(Some(w))
}

/// The body an add or edit event gives its item, when something will use it: a whole
/// ticket shows every item; stored heads only count time entries and charges, so applying
/// a note or an attachment to them copies nothing out of the event.
fn body_wanted(ev: &Event, items: &Option<HashMap<String, ViewItem>>) -> Option<ItemBody> {
    // `item_deleted`, the other counted type, has no body.
    let counted = COUNTED_TYPES.contains(&ev.type_name());
    (counted || items.is_some())
        .then(|| event_body(ev))
        .flatten()
}

/// The item `id` as a whole ticket shows it (`None` for stored heads, which keep no items,
/// and for an item the ticket does not have).
fn shown<'w>(
    items: &'w mut Option<HashMap<String, ViewItem>>,
    id: &str,
) -> Option<&'w mut ItemView> {
    items.as_mut()?.get_mut(id).map(|s| &mut s.item)
}

/// The ticket's links as the domain's: `cached` if an earlier event converted them, else
/// converted from the head's `docs` now and kept there. Events that do not look at the
/// links (most of them: notes, time, charges) never convert them.
fn domain_links<'c>(
    cached: &'c mut Option<Vec<Link>>,
    docs: &[LinkDoc],
) -> Result<&'c mut Vec<Link>, ProjectionError> {
    if cached.is_none() {
        *cached = Some(to_domain(docs)?);
    }
    Ok(cached.get_or_insert_with(Vec::new))
}

/// Derives an item's sharing and divergence from the ticket's links.
fn rederive(links: &[Link], i: &mut ItemView) -> Result<(), ProjectionError> {
    i.diverged = diverged(
        links,
        i.link_seq,
        i.internal && !i.received,
        i.foreign_change,
        &i.author_change_seqs,
    );
    let author = InstanceId::parse(&i.author.instance).map_err(|_| ProjectionError::BadDoc {
        key: i.id.clone(),
        reason: "bad author instance".into(),
    })?;
    let facts = ItemFacts {
        author: &author,
        link_seq: i.link_seq,
        internal: i.internal,
        received: i.received,
        diverged: i.diverged,
    };
    i.sharing = sharing(links, &facts).name().to_string();
    Ok(())
}

/// The history line of one entry of a ticket's stream.
fn history_line(e: &LogEntry, ev: &Event) -> HistoryView {
    HistoryView {
        position: e.position,
        version: e.version,
        event_id: e.event_id.to_string(),
        at: rfc3339_ms(e.occurred_at),
        actor: actor(e),
        event_type: e.event_type.clone(),
        summary: summary(ev),
    }
}

/// The history lines of a ticket's stream `entries` (in version order; `events[i]` is
/// `entries[i]`'s event): one per entry from its creation on, as the projection applies
/// them (an entry before the ticket exists changes nothing, so it has no line).
fn history_lines(entries: &[LogEntry], events: &[Event]) -> Vec<HistoryView> {
    let mut lines = Vec::with_capacity(entries.len());
    for (e, ev) in entries.iter().zip(events) {
        if lines.is_empty() && !matches!(ev, Event::TicketCreated { .. }) {
            continue;
        }
        lines.push(history_line(e, ev));
    }
    lines
}

fn decode_all(entries: &[LogEntry]) -> Result<Vec<Event>, ProjectionError> {
    entries.iter().map(decode).collect()
}

fn note_change(i: &mut ItemView, editor: &InstanceId, link_seq: u32) {
    if i.author.instance == editor.as_str() {
        i.author_change_seqs.push(link_seq);
    } else {
        i.foreign_change = true;
    }
}

fn decode(e: &LogEntry) -> Result<Event, ProjectionError> {
    decode_event(e.schema_version, &e.payload).map_err(|source| ProjectionError::Decode {
        position: e.position,
        source,
    })
}

fn parse_doc<T: for<'de> Deserialize<'de>>(key: &str, bytes: &[u8]) -> Result<T, ProjectionError> {
    serde_json::from_slice(bytes).map_err(|e| ProjectionError::BadDoc {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

fn to_doc<T: Serialize>(key: &str, v: &T) -> Result<Vec<u8>, ProjectionError> {
    serde_json::to_vec(v).map_err(|e| ProjectionError::BadDoc {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

/// Keeps each ticket as a head document (what a ticket list shows, totals included) and,
/// per time entry and charge, what it adds to the totals (see `head_key`), so applying an
/// event reads and writes a bounded amount whatever the ticket's length; plus the
/// `#numbers` counters and a `#n/{number}` index. A ticket's items and history are not
/// copied into documents: both are functions of the ticket's stream, so reading a ticket
/// reads its stream from the log up to the head's position (`get`).
#[derive(Clone, Copy, Debug, Default)]
pub struct TicketProjection;

/// Event types that add, change or delete a time entry or a charge: the only entries whose
/// item's stored document applying them reads.
const COUNTED_TYPES: [&str; 5] = [
    "time_added",
    "time_edited",
    "charge_added",
    "charge_edited",
    "item_deleted",
];

impl Projection for TicketProjection {
    fn name(&self) -> &str {
        TICKETS
    }

    fn keys(&self, entries: &[LogEntry]) -> Vec<String> {
        let mut keys: BTreeSet<String> = BTreeSet::new();
        keys.insert(NUMBERS_KEY.to_string());
        for e in entries {
            let ticket = e.stream_id.to_string();
            keys.insert(head_key(&ticket));
            // By the stored type name: only these are decoded a second time (an undecodable
            // entry is reported by `apply`).
            if !COUNTED_TYPES.contains(&e.event_type.as_str()) {
                continue;
            }
            let counted = decode(e).ok().and_then(|ev| match ev {
                Event::ItemDeleted { item, kind } => counts(kind).then_some(item),
                ev => ev.item(),
            });
            if let Some(item) = counted {
                keys.insert(counted_key(&ticket, &item.to_string()));
            }
        }
        keys.into_iter().collect()
    }

    fn apply(
        &self,
        docs: HashMap<String, Vec<u8>>,
        entries: &[LogEntry],
    ) -> Result<Vec<DocChange>, ProjectionError> {
        let mut numbers: Numbers = match docs.get(NUMBERS_KEY) {
            Some(b) => parse_doc(NUMBERS_KEY, b)?,
            None => Numbers::default(),
        };
        let mut stored = Stored::of(docs);
        let mut work: HashMap<String, Option<Working>> = HashMap::new();
        let mut order: Vec<String> = Vec::new();
        let mut numbered: Vec<(u64, String)> = Vec::new();
        for e in entries {
            let key = e.stream_id.to_string();
            if !work.contains_key(&key) {
                work.insert(key.clone(), stored.take(&key)?);
                order.push(key.clone());
            }
            let ev = decode(e)?;
            let slot = work.entry(key.clone()).or_default();
            let creates = slot.is_none() && matches!(ev, Event::TicketCreated { .. });
            let mut next = apply_to(slot.take(), numbers.last + 1, false, e, &ev)?;
            if creates && next.is_some() {
                numbers.last += 1;
                numbered.push((numbers.last, key));
            }
            // The partner issues an invoice, numbered in its own sequence, when a link it
            // works completes.
            if let Some(v) = next.as_mut().map(|w| &mut w.head) {
                if let Some(o) = &v.outsource {
                    if o.role == "partner"
                        && o.status == "Complete"
                        && o.accepted_terms_version.is_some()
                        && !v.invoices.iter().any(|i| i.link_id == o.link_id)
                    {
                        numbers.last_invoice += 1;
                        v.invoices.push(InvoiceRef {
                            number: numbers.last_invoice,
                            link_id: o.link_id.clone(),
                            issued_at: rfc3339_ms(e.occurred_at),
                            stated: None,
                        });
                    }
                }
            }
            *slot = next;
        }
        let mut changes = Vec::with_capacity(order.len() * 2 + numbered.len() + 1);
        for key in order {
            if let Some(Some(w)) = work.remove(&key) {
                w.changes(&key, &mut changes)?;
            }
        }
        for (n, ticket) in numbered {
            changes.push(DocChange::Put {
                key: number_key(n),
                doc: ticket.into_bytes(),
            });
        }
        changes.push(DocChange::Put {
            key: NUMBERS_KEY.to_string(),
            doc: to_doc(NUMBERS_KEY, &numbers)?,
        });
        Ok(changes)
    }
}

/// The stored documents a batch loaded, by ticket, parsed when the ticket is first met.
struct Stored {
    heads: HashMap<String, Vec<u8>>,
    counted: HashMap<String, Vec<(String, Vec<u8>)>>,
}

impl Stored {
    fn of(docs: HashMap<String, Vec<u8>>) -> Stored {
        let mut out = Stored {
            heads: HashMap::new(),
            counted: HashMap::new(),
        };
        for (key, doc) in docs {
            if let Some(t) = key.strip_prefix(HEADS_PREFIX) {
                out.heads.insert(t.to_string(), doc);
            } else if let Some(t) = counted_ticket(&key) {
                let t = t.to_string();
                out.counted.entry(t).or_default().push((key, doc));
            }
        }
        out
    }

    /// The ticket as stored (without items); `None` when it has no head.
    fn take(&mut self, ticket: &str) -> Result<Option<Working>, ProjectionError> {
        let Some(head) = self.heads.remove(ticket) else {
            return Ok(None);
        };
        let mut w = Working::new(parse_doc(&head_key(ticket), &head)?, false);
        for (key, doc) in self.counted.remove(ticket).unwrap_or_default() {
            let c: Counted = parse_doc(&key, &doc)?;
            let id = key.rsplit('/').next().unwrap_or_default().to_string();
            w.counted.insert(id, c);
        }
        Ok(Some(w))
    }
}

/// A ticket's whole view: its stream up to the stored head's position folded again, with
/// the head's number and the invoices numbered by this instance (which only the stored head
/// has: they are numbered across tickets). The history, the items and the head stay at the
/// same point even while the projection is behind the log.
fn whole_view(head: TicketView, entries: &[LogEntry]) -> Result<TicketView, ProjectionError> {
    let Some(mut view) = fold_whole(entries, head.number)? else {
        return Err(ProjectionError::BadDoc {
            key: head_key(&head.id),
            reason: "its stream does not create the ticket".into(),
        });
    };
    view.invoices = head.invoices;
    Ok(view)
}

/// A ticket's stream `entries` folded into its whole view (items and history), the ticket
/// numbered `number`; `None` when they do not create it. Each entry is decoded once, for the
/// fold and for the history lines.
fn fold_whole(entries: &[LogEntry], number: u64) -> Result<Option<TicketView>, ProjectionError> {
    let events = decode_all(entries)?;
    let mut work = None;
    for (e, ev) in entries.iter().zip(&events) {
        work = apply_to(work, number, true, e, ev)?;
    }
    Ok(work.map(|w| w.into_view(history_lines(entries, &events))))
}

impl TicketProjection {
    /// One ticket's current view.
    pub async fn get(store: &dyn Store, id: Ulid) -> Result<Option<TicketView>, ProjectionError> {
        let Some(head) = Self::head(store, id).await? else {
            return Ok(None);
        };
        let entries = store.read_stream(id, Some(head.position)).await?;
        Ok(Some(whole_view(head, &entries)?))
    }

    /// One ticket's view without its items and history (`items` and `history` are empty):
    /// its head document alone, one read however long the ticket is.
    pub async fn head(store: &dyn Store, id: Ulid) -> Result<Option<TicketView>, ProjectionError> {
        Ok(Self::heads(store, &[id]).await?.pop().and_then(|(_, v)| v))
    }

    /// The heads of several tickets (as [`TicketProjection::head`]) read together, in the
    /// order asked; `None` for a ticket the projection does not hold.
    pub async fn heads(
        store: &dyn Store,
        ids: &[Ulid],
    ) -> Result<Vec<(Ulid, Option<TicketView>)>, ProjectionError> {
        let keys: Vec<String> = ids.iter().map(|id| head_key(&id.to_string())).collect();
        let docs = store.load_docs(TICKETS, &keys).await?;
        ids.iter()
            .zip(&keys)
            .map(|(id, key)| {
                let view = docs
                    .get(key)
                    .map(|doc| parse_doc::<TicketView>(key, doc))
                    .transpose()?;
                Ok((*id, view))
            })
            .collect()
    }

    /// The ticket with this instance's number `number`.
    pub async fn get_by_number(
        store: &dyn Store,
        number: u64,
    ) -> Result<Option<TicketView>, ProjectionError> {
        let key = number_key(number);
        let docs = store.load_docs(TICKETS, std::slice::from_ref(&key)).await?;
        let Some(doc) = docs.get(&key) else {
            return Ok(None);
        };
        let id = std::str::from_utf8(doc)
            .ok()
            .and_then(|s| s.parse::<Ulid>().ok())
            .ok_or_else(|| ProjectionError::BadDoc {
                key: key.clone(),
                reason: "not a ticket id".into(),
            })?;
        Self::get(store, id).await
    }

    /// Every ticket with its items and history, ordered by number. Holds them all at once:
    /// to go through many tickets, take [`TicketProjection::list_heads`] and read them
    /// whole a group at a time with [`TicketProjection::views`].
    pub async fn list(store: &dyn Store) -> Result<Vec<TicketView>, ProjectionError> {
        Self::views(store, Self::list_heads(store).await?).await
    }

    /// The tickets of these heads read whole (with items and history, each as of its
    /// head), in the order given.
    pub async fn views(
        store: &dyn Store,
        heads: Vec<TicketView>,
    ) -> Result<Vec<TicketView>, ProjectionError> {
        let mut out = Vec::with_capacity(heads.len());
        // The streams are read a group at a time: one round trip per group, not per ticket.
        let mut heads = heads.into_iter().peekable();
        while heads.peek().is_some() {
            let group: Vec<TicketView> = heads.by_ref().take(LIST_STREAMS).collect();
            let asked = group
                .iter()
                .map(|h| {
                    h.id.parse::<Ulid>()
                        .map(|id| (id, 0))
                        .map_err(|_| ProjectionError::BadDoc {
                            key: head_key(&h.id),
                            reason: "not a ticket id".into(),
                        })
                })
                .collect::<Result<Vec<(Ulid, u64)>, _>>()?;
            let streams = store.read_streams_after(&asked).await?;
            if streams.len() != group.len() {
                return Err(ticketsync_store::StoreError::Corrupt(format!(
                    "the store answered {} of {} stream reads",
                    streams.len(),
                    group.len()
                ))
                .into());
            }
            for (head, mut entries) in group.into_iter().zip(streams) {
                entries.retain(|e| e.position <= head.position);
                out.push(whole_view(head, &entries)?);
            }
        }
        Ok(out)
    }

    /// Every ticket without its items and history (`items` and `history` are empty),
    /// ordered by number: what a ticket list shows, read from the heads alone.
    pub async fn list_heads(store: &dyn Store) -> Result<Vec<TicketView>, ProjectionError> {
        let mut out = Vec::new();
        for (key, doc) in store.list_docs_prefix(TICKETS, HEADS_PREFIX).await? {
            out.push(parse_doc::<TicketView>(&key, &doc)?);
        }
        out.sort_by_key(|t| t.number);
        Ok(out)
    }
}

/// Reconstructs a ticket as it was at log position `position`, straight from the log.
/// `number` is the ticket's number (numbers never change once given).
pub async fn ticket_as_of(
    store: &dyn Store,
    id: Ulid,
    position: u64,
    number: u64,
) -> Result<Option<TicketView>, ProjectionError> {
    let entries = store.read_stream(id, Some(position)).await?;
    fold_whole(&entries, number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ticketsync_wire::{encode_event, SCHEMA_VERSION};

    fn entry(version: u64, ev: &Event) -> LogEntry {
        LogEntry {
            position: version * 3,
            event_id: Ulid::from_parts(version, 1),
            stream_id: Ulid::from_parts(1, 2),
            version,
            schema_version: SCHEMA_VERSION,
            event_type: ev.type_name().into(),
            occurred_at: 1_765_000_000_000 + version as i64,
            recorded_at: 0,
            actor_instance: "acme".into(),
            actor_user: "ana".into(),
            link_seq: 0,
            payload: encode_event(ev).unwrap(),
            prev_hash: [0; 32],
            hash: [0; 32],
        }
    }

    fn created() -> Event {
        Event::TicketCreated {
            title: "Printer".into(),
            description: String::new(),
            customer: None,
            status: "New".into(),
        }
    }

    fn status(to: &str) -> Event {
        Event::StatusChanged {
            from: "New".into(),
            to: to.into(),
        }
    }

    #[test]
    fn history_has_one_line_per_entry_from_the_creation_on() {
        let entries = vec![
            entry(1, &status("Open")),
            entry(2, &created()),
            entry(3, &status("In Progress")),
        ];
        let lines = history_lines(&entries, &decode_all(&entries).unwrap());
        let got: Vec<(u64, u64, &str, &str)> = lines
            .iter()
            .map(|l| {
                (
                    l.version,
                    l.position,
                    l.event_type.as_str(),
                    l.summary.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (2, 6, "ticket_created", "created \"Printer\" as New"),
                (3, 9, "status_changed", "status New -> In Progress"),
            ]
        );
        assert_eq!(lines[1].at, rfc3339_ms(entries[2].occurred_at));
        assert_eq!(lines[1].event_id, entries[2].event_id.to_string());
        assert_eq!(lines[1].actor, actor(&entries[2]));
    }

    #[test]
    fn an_undecodable_entry_fails_the_history() {
        let mut bad = entry(2, &status("Open"));
        bad.payload = vec![0xff; 3];
        assert!(decode_all(&[entry(1, &created()), bad]).is_err());
    }

    fn time(hours: &str, offset: &str) -> TimeEntry {
        TimeEntry {
            hours: hours.parse().unwrap(),
            offset_hours: offset.parse().unwrap(),
            resource: "ana".into(),
            role: None,
            summary: "fixed it".into(),
            date: "2026-12-01".parse().unwrap(),
            billable: true,
        }
    }

    fn charge(quantity: &str, cost: &str, price: &str) -> ticketsync_domain::Charge {
        ticketsync_domain::Charge {
            description: "toner".into(),
            quantity: quantity.parse().unwrap(),
            unit_cost: cost.parse().unwrap(),
            unit_price: price.parse().unwrap(),
            billable: true,
        }
    }

    fn item(n: u64) -> ticketsync_domain::ItemId {
        ticketsync_domain::ItemId(Ulid::from_parts(n, 7))
    }

    /// Applies `entries` in batches of `batch`, as the runner does: each batch gets the
    /// documents its `keys` name, as the batches before it left them.
    fn apply_in_batches(entries: &[LogEntry], batch: usize) -> HashMap<String, Vec<u8>> {
        let mut stored: HashMap<String, Vec<u8>> = HashMap::new();
        for chunk in entries.chunks(batch) {
            let docs = TicketProjection
                .keys(chunk)
                .into_iter()
                .filter_map(|k| stored.get(&k).map(|d| (k, d.clone())))
                .collect();
            for c in TicketProjection.apply(docs, chunk).unwrap() {
                match c {
                    DocChange::Put { key, doc } => {
                        stored.insert(key, doc);
                    }
                    DocChange::Delete { key } => {
                        stored.remove(&key);
                    }
                }
            }
        }
        stored
    }

    #[test]
    fn applying_stores_the_head_and_counted_items_but_no_notes_or_history() {
        let events = [
            created(),
            Event::NoteAdded {
                item: item(1),
                text: "called the customer".into(),
                internal: false,
            },
            Event::TimeAdded {
                item: item(2),
                entry: time("1.5", "0"),
            },
            Event::ChargeAdded {
                item: item(3),
                charge: charge("2", "10", "15"),
            },
        ];
        let entries: Vec<LogEntry> = (1..).zip(&events).map(|(v, ev)| entry(v, ev)).collect();
        let stored = apply_in_batches(&entries, 10);
        let ticket = entries[0].stream_id.to_string();
        let mut keys: Vec<String> = stored.keys().cloned().collect();
        keys.sort();
        let counted = |n| counted_key(&ticket, &item(n).to_string());
        let head = head_key(&ticket);
        let mut want = vec![
            NUMBERS_KEY.to_string(),
            number_key(1),
            counted(2),
            counted(3),
            head.clone(),
        ];
        want.sort();
        assert_eq!(keys, want);
        let view: TicketView = serde_json::from_slice(&stored[&head]).unwrap();
        assert!(view.history.is_empty() && view.items.is_empty());
        assert_eq!(view.totals.hours, "1.5".parse().unwrap());
        assert_eq!(view.totals.charges_price, "30".parse().unwrap());
    }

    #[test]
    fn the_counted_types_are_the_events_that_change_time_entries_and_charges() {
        let named: Vec<&str> = [
            Event::TimeAdded {
                item: item(1),
                entry: time("1", "0"),
            },
            Event::TimeEdited {
                item: item(1),
                entry: time("1", "0"),
            },
            Event::ChargeAdded {
                item: item(1),
                charge: charge("1", "1", "1"),
            },
            Event::ChargeEdited {
                item: item(1),
                charge: charge("1", "1", "1"),
            },
            Event::ItemDeleted {
                item: item(1),
                kind: ItemKind::Time,
            },
        ]
        .iter()
        .map(Event::type_name)
        .collect();
        assert_eq!(named, COUNTED_TYPES);
    }

    #[test]
    fn totals_follow_edits_and_deletes_through_stored_counted_items() {
        let events = [
            created(),
            Event::TimeAdded {
                item: item(1),
                entry: time("2", "0.5"),
            },
            Event::ChargeAdded {
                item: item(2),
                charge: charge("3", "4", "5"),
            },
            Event::NoteAdded {
                item: item(3),
                text: "waiting for parts".into(),
                internal: false,
            },
            Event::TimeEdited {
                item: item(1),
                entry: time("3.25", "0.25"),
            },
            // An edit of another kind and a note's deletion leave the totals as they are.
            Event::ChargeEdited {
                item: item(1),
                charge: charge("100", "1", "1"),
            },
            Event::ItemDeleted {
                item: item(3),
                kind: ItemKind::Note,
            },
            Event::TimeAdded {
                item: item(4),
                entry: time("1", "0"),
            },
            Event::ItemDeleted {
                item: item(2),
                kind: ItemKind::Charge,
            },
            // A deleted item is not edited back.
            Event::ChargeEdited {
                item: item(2),
                charge: charge("9", "9", "9"),
            },
        ];
        let entries: Vec<LogEntry> = (1..).zip(&events).map(|(v, ev)| entry(v, ev)).collect();
        let want = Totals {
            hours: "4.25".parse().unwrap(),
            billable_hours: "4".parse().unwrap(),
            charges_cost: "0".parse().unwrap(),
            charges_price: "0".parse().unwrap(),
        };
        let ticket = entries[0].stream_id.to_string();
        // One batch, one entry per batch (every counted item read back from its document),
        // and the whole fold a ticket is read with all agree.
        for batch in [100, 1, 3] {
            let stored = apply_in_batches(&entries, batch);
            let head: TicketView = serde_json::from_slice(&stored[&head_key(&ticket)]).unwrap();
            assert_eq!(head.totals, want, "batches of {batch}");
            let whole = whole_view(head.clone(), &entries).unwrap();
            assert_eq!(whole.totals, want);
            assert_eq!(whole.items.len(), 4);
            assert!(whole
                .items
                .iter()
                .any(|i| i.id == item(3).to_string() && i.deleted));
            let mut stripped = whole.clone();
            stripped.items.clear();
            stripped.history.clear();
            assert_eq!(stripped, head, "the whole view's head is the stored head");
        }
    }
}
