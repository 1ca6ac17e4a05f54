//! The ticket projection: each ticket's current state and items as JSON documents (a head,
//! one per item), plus the instance's ticket numbers; a ticket's history is read from its
//! stream in the log.

use std::collections::{BTreeSet, HashMap};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use ticketsync_domain::outsource::{apply_change, diverged, sharing, ItemFacts};
use ticketsync_domain::{
    Actor, Event, EventMeta, InstanceId, ItemBody, ItemKind, LinkChange, TimeEntry, Timestamp,
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
/// under `t/{ticket}`, each item under `i/{ticket}/{item}`, and `#n/{number}` naming the
/// ticket with that number. The history is not stored: it is the ticket's stream, read
/// from the log (`history`). Each kind has its own prefix, so the heads alone (a ticket
/// list) or one ticket's items are one key-range scan; ticket ids are ULIDs, so no ticket's
/// prefix is a prefix of another's.
fn head_key(ticket: &str) -> String {
    format!("t/{ticket}")
}

fn item_key(ticket: &str, item: &str) -> String {
    format!("i/{ticket}/{item}")
}

fn items_prefix(ticket: &str) -> String {
    format!("i/{ticket}/")
}

const HEADS_PREFIX: &str = "t/";
/// Tickets whose streams `list` reads in one round trip.
const LIST_STREAMS: usize = 64;

fn number_key(number: u64) -> String {
    format!("#n/{number:012}")
}

/// What a stored key holds.
enum DocKind<'a> {
    Head(&'a str),
    Item(&'a str),
    Other,
}

fn classify(key: &str) -> DocKind<'_> {
    if let Some(t) = key.strip_prefix(HEADS_PREFIX) {
        return DocKind::Head(t);
    }
    match key.strip_prefix("i/").and_then(|r| r.split_once('/')) {
        Some((t, _)) => DocKind::Item(t),
        None => DocKind::Other,
    }
}

/// An item as stored: its view and the log position that added it, which orders items.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredItem {
    added: u64,
    item: ItemView,
}

/// A ticket's stored documents, grouped by what they are, not parsed yet.
#[derive(Default)]
struct Raw {
    head: Option<Vec<u8>>,
    items: Vec<(String, Vec<u8>)>,
}

/// Sorts loaded documents by ticket.
fn group(docs: impl IntoIterator<Item = (String, Vec<u8>)>) -> HashMap<String, Raw> {
    let mut out: HashMap<String, Raw> = HashMap::new();
    for (key, doc) in docs {
        match classify(&key) {
            DocKind::Head(t) => out.entry(t.to_string()).or_default().head = Some(doc),
            DocKind::Item(t) => out.entry(t.to_string()).or_default().items.push((key, doc)),
            DocKind::Other => {}
        }
    }
    out
}

/// One ticket's documents in memory while entries are applied: the head (the view with
/// empty items and history), the items loaded or added, and which items changed.
#[derive(Clone, Debug)]
struct Working {
    head: TicketView,
    items: HashMap<String, StoredItem>,
    dirty_items: BTreeSet<String>,
}

impl Working {
    fn new(head: TicketView) -> Self {
        Working {
            head,
            items: HashMap::new(),
            dirty_items: BTreeSet::new(),
        }
    }

    /// Parses a ticket's documents; `None` when it has no head.
    fn parse(ticket: &str, raw: Raw) -> Result<Option<Working>, ProjectionError> {
        let Some(head) = raw.head else {
            return Ok(None);
        };
        let mut w = Working::new(parse_doc(&head_key(ticket), &head)?);
        for (key, doc) in raw.items {
            let s: StoredItem = parse_doc(&key, &doc)?;
            w.items.insert(s.item.id.clone(), s);
        }
        Ok(Some(w))
    }

    /// The whole view: items in the order added, and the ticket's `history` (in log order).
    fn into_view(self, history: Vec<HistoryView>) -> TicketView {
        let mut v = self.head;
        let mut items: Vec<StoredItem> = self.items.into_values().collect();
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
        for id in &self.dirty_items {
            if let Some(s) = self.items.get(id) {
                let key = item_key(ticket, id);
                out.push(DocChange::Put {
                    doc: to_doc(&key, s)?,
                    key,
                });
            }
        }
        Ok(())
    }
}

/// What an item adds to the ticket's totals (nothing once deleted).
fn contribution(i: &ItemView) -> Totals {
    let mut t = Totals::default();
    if i.deleted {
        return t;
    }
    match &i.body {
        ItemBodyView::Time {
            hours,
            offset_hours,
            billable,
            ..
        } => {
            t.hours = *hours;
            if *billable {
                t.billable_hours = *hours - *offset_hours;
            }
        }
        ItemBodyView::Charge {
            quantity,
            unit_cost,
            unit_price,
            ..
        } => {
            t.charges_cost = *quantity * *unit_cost;
            t.charges_price = *quantity * *unit_price;
        }
        _ => {}
    }
    t
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

/// Applies one log entry to a ticket's documents. `number` is used when the entry creates
/// the ticket. An item event needs its item loaded (if it exists), a link event every item.
fn apply_to(
    work: Option<Working>,
    number: u64,
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
        ) => Working::new(TicketView {
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
        }),
        (None, _) => return Ok(None),
        (Some(w), _) => w,
    };
    let Working {
        head: v,
        items,
        dirty_items,
    } = &mut w;
    let mut links = to_domain(&v.links)?;
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
            apply_change(&mut links, *link, &meta, change);
            v.links = to_docs(&links);
            v.outsource = current_view(&links, &v.created_by.instance);
            v.outsource_status = v.outsource.as_ref().map(|o| o.status.clone());
        }
        Event::NoteAdded { item, .. }
        | Event::TimeAdded { item, .. }
        | Event::ChargeAdded { item, .. }
        | Event::AttachmentAdded { item, .. } => {
            let id = item.to_string();
            if let (false, Some(body)) = (items.contains_key(&id), event_body(ev)) {
                let kind = kind_key(body.kind()).to_string();
                let (body, internal) = body_view(&body);
                let i = ItemView {
                    id: id.clone(),
                    kind,
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
                adjust(&mut v.totals, &Totals::default(), &contribution(&i));
                items.insert(
                    id.clone(),
                    StoredItem {
                        added: e.position,
                        item: i,
                    },
                );
                dirty_items.insert(id);
            }
        }
        Event::NoteEdited { item, .. }
        | Event::TimeEdited { item, .. }
        | Event::ChargeEdited { item, .. } => {
            let id = item.to_string();
            if let (Some(s), Some(body)) = (
                items.get_mut(&id).filter(|s| !s.item.deleted),
                event_body(ev),
            ) {
                let i = &mut s.item;
                if i.kind == kind_key(body.kind()) {
                    let before = contribution(i);
                    note_change(i, &editor, e.link_seq);
                    let (b, internal) = body_view(&body);
                    i.body = b;
                    i.internal = internal;
                    i.updated_at = at.clone();
                    adjust(&mut v.totals, &before, &contribution(i));
                    dirty_items.insert(id);
                }
            }
        }
        Event::ItemDeleted { item, .. } => {
            let id = item.to_string();
            if let Some(s) = items.get_mut(&id) {
                let i = &mut s.item;
                let before = contribution(i);
                note_change(i, &editor, e.link_seq);
                i.deleted = true;
                i.updated_at = at.clone();
                adjust(&mut v.totals, &before, &contribution(i));
                dirty_items.insert(id);
            }
        }
        Event::TransactionFeeRecorded { link, fee } => {
            let link_id = link.to_string();
            let partner = links
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
            let issued_by_partner = links.iter().any(|l| l.id == *link && l.partner == editor);
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
    // an item event only its item. An item is rewritten only when something changed.
    let mut rederive = |id: &str, s: &mut StoredItem| -> Result<(), ProjectionError> {
        let i = &mut s.item;
        let diverged_now = diverged(
            &links,
            i.link_seq,
            i.internal && !i.received,
            i.foreign_change,
            &i.author_change_seqs,
        );
        let author =
            InstanceId::parse(&i.author.instance).map_err(|_| ProjectionError::BadDoc {
                key: i.id.clone(),
                reason: "bad author instance".into(),
            })?;
        let facts = ItemFacts {
            author: &author,
            link_seq: i.link_seq,
            internal: i.internal,
            received: i.received,
            diverged: diverged_now,
        };
        let sharing_now = sharing(&links, &facts).name();
        if i.diverged != diverged_now || i.sharing != sharing_now {
            i.diverged = diverged_now;
            i.sharing = sharing_now.to_string();
            dirty_items.insert(id.to_string());
        }
        Ok(())
    };
    if matches!(ev, Event::Outsource { .. }) {
        for (id, s) in items.iter_mut() {
            rederive(id, s)?;
        }
    } else if let Some(id) = ev.item().map(|i| i.to_string()) {
        // Looked up, not searched for: a ticket can have thousands of items.
        if let Some(s) = items.get_mut(&id) {
            rederive(&id, s)?;
        }
    }
    v.version = e.version;
    v.position = e.position;
    v.updated_at = at;
    Ok(Some(w))
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

/// The history lines of a ticket's stream `entries` (in version order): one per entry from
/// its creation on, as the projection applies them (an entry before the ticket exists
/// changes nothing, so it has no line).
fn history_of(entries: &[LogEntry]) -> Result<Vec<HistoryView>, ProjectionError> {
    let events = decode_all(entries)?;
    Ok(history_lines(entries, &events))
}

/// `history_of` for entries already decoded (`events[i]` is `entries[i]`'s event).
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

/// Keeps each ticket as a head document and one document per item (see `head_key`), so
/// applying an event reads and writes a bounded amount whatever the ticket's length; plus
/// the `#numbers` counters and a `#n/{number}` index. A ticket's history is not copied into
/// documents: each line is a function of one entry of the ticket's stream, so reading a
/// ticket reads its stream from the log up to the head's position (`get`).
#[derive(Clone, Copy, Debug, Default)]
pub struct TicketProjection;

impl Projection for TicketProjection {
    fn name(&self) -> &str {
        TICKETS
    }

    fn keys(&self, entries: &[LogEntry]) -> Vec<String> {
        let mut keys: BTreeSet<String> = BTreeSet::new();
        keys.insert(NUMBERS_KEY.to_string());
        for e in entries {
            let ticket = e.stream_id.to_string();
            // An undecodable entry is reported by `apply`.
            if let Some(item) = decode(e).ok().and_then(|ev| ev.item()) {
                keys.insert(item_key(&ticket, &item.to_string()));
            }
            keys.insert(head_key(&ticket));
        }
        keys.into_iter().collect()
    }

    fn prefixes(&self, entries: &[LogEntry]) -> Vec<String> {
        let mut tickets: BTreeSet<Ulid> = BTreeSet::new();
        // By the stored type name: no need to decode every entry a second time.
        for e in entries {
            if Event::OUTSOURCE_TYPE_NAMES.contains(&e.event_type.as_str()) {
                tickets.insert(e.stream_id);
            }
        }
        tickets
            .into_iter()
            .map(|t| items_prefix(&t.to_string()))
            .collect()
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
        let mut raw = group(docs);
        let mut work: HashMap<String, Option<Working>> = HashMap::new();
        let mut order: Vec<String> = Vec::new();
        let mut numbered: Vec<(u64, String)> = Vec::new();
        for e in entries {
            let key = e.stream_id.to_string();
            if !work.contains_key(&key) {
                let w = match raw.remove(&key) {
                    Some(r) => Working::parse(&key, r)?,
                    None => None,
                };
                work.insert(key.clone(), w);
                order.push(key.clone());
            }
            let ev = decode(e)?;
            let slot = work.entry(key.clone()).or_default();
            let creates = slot.is_none() && matches!(ev, Event::TicketCreated { .. });
            let mut next = apply_to(slot.take(), numbers.last + 1, e, &ev)?;
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
        let mut changes = Vec::with_capacity(order.len() * 3 + numbered.len() + 1);
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

impl TicketProjection {
    /// One ticket's current view.
    pub async fn get(store: &dyn Store, id: Ulid) -> Result<Option<TicketView>, ProjectionError> {
        let ticket = id.to_string();
        let head = head_key(&ticket);
        let mut docs: Vec<(String, Vec<u8>)> = store
            .load_docs(TICKETS, std::slice::from_ref(&head))
            .await?
            .into_iter()
            .collect();
        if docs.is_empty() {
            return Ok(None);
        }
        docs.extend(
            store
                .list_docs_prefix(TICKETS, &items_prefix(&ticket))
                .await?,
        );
        let Some(w) = group(docs)
            .remove(&ticket)
            .map(|raw| Working::parse(&ticket, raw))
            .transpose()?
            .flatten()
        else {
            return Ok(None);
        };
        // The stream up to the event the head was computed from: the history matches the
        // head and items even while the projection is behind the log.
        let entries = store.read_stream(id, Some(w.head.position)).await?;
        Ok(Some(w.into_view(history_of(&entries)?)))
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

    /// Every ticket with its items and history, ordered by number. Holds them all at once.
    pub async fn list(store: &dyn Store) -> Result<Vec<TicketView>, ProjectionError> {
        let mut work = Vec::new();
        for (key, raw) in group(store.list_docs(TICKETS).await?) {
            if let Some(w) = Working::parse(&key, raw)? {
                let id = key.parse::<Ulid>().map_err(|_| ProjectionError::BadDoc {
                    key: head_key(&key),
                    reason: "not a ticket id".into(),
                })?;
                work.push((id, w));
            }
        }
        let mut out = Vec::with_capacity(work.len());
        // The streams are read a group at a time: one round trip per group, not per ticket.
        let mut work = work.into_iter().peekable();
        while work.peek().is_some() {
            let group: Vec<(Ulid, Working)> = work.by_ref().take(LIST_STREAMS).collect();
            let asked: Vec<(Ulid, u64)> = group.iter().map(|(id, _)| (*id, 0)).collect();
            let streams = store.read_streams_after(&asked).await?;
            for ((_, w), mut entries) in group.into_iter().zip(streams) {
                entries.retain(|e| e.position <= w.head.position);
                out.push(w.into_view(history_of(&entries)?));
            }
        }
        out.sort_by_key(|t| t.number);
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
    // Decoded once, for the fold and for the history lines.
    let events = decode_all(&entries)?;
    let mut work = None;
    for (e, ev) in entries.iter().zip(&events) {
        work = apply_to(work, number, e, ev)?;
    }
    Ok(work.map(|w| w.into_view(history_lines(&entries, &events))))
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
        let lines = history_of(&entries).unwrap();
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
        assert!(history_of(&[entry(1, &created()), bad]).is_err());
    }

    #[test]
    fn applying_keeps_no_history_in_documents() {
        let e = entry(1, &created());
        let keys = TicketProjection.keys(std::slice::from_ref(&e));
        assert!(keys.iter().all(|k| !k.starts_with("h/")), "{keys:?}");
        assert!(keys.contains(&head_key(&e.stream_id.to_string())));
        let changes = TicketProjection.apply(HashMap::new(), &[e]).unwrap();
        let head = changes
            .iter()
            .find_map(|c| match c {
                DocChange::Put { key, doc } if key.starts_with("t/") => Some(doc),
                _ => None,
            })
            .expect("a head");
        let view: TicketView = serde_json::from_slice(head).unwrap();
        assert!(view.history.is_empty());
        assert!(changes.iter().all(|c| matches!(c, DocChange::Put { .. })));
    }
}
