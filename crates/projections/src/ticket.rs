//! The ticket projection: each ticket's current state, items and history as a JSON
//! document, plus the instance's human-friendly ticket numbers.

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

/// Applies one log entry to a ticket view. `number` is used when the entry creates the ticket.
pub fn apply_entry(
    view: Option<TicketView>,
    number: u64,
    e: &LogEntry,
    ev: &Event,
) -> Result<Option<TicketView>, ProjectionError> {
    let at = rfc3339_ms(e.occurred_at);
    let mut v = match (view, ev) {
        (
            None,
            Event::TicketCreated {
                title,
                description,
                customer,
                status,
            },
        ) => TicketView {
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
        (None, _) => return Ok(None),
        (Some(v), _) => v,
    };
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
            if let (false, Some(body)) = (v.items.iter().any(|i| i.id == id), event_body(ev)) {
                let kind = kind_key(body.kind()).to_string();
                let (body, internal) = body_view(&body);
                v.items.push(ItemView {
                    id,
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
                });
            }
        }
        Event::NoteEdited { item, .. }
        | Event::TimeEdited { item, .. }
        | Event::ChargeEdited { item, .. } => {
            let id = item.to_string();
            if let (Some(i), Some(body)) = (
                v.items.iter_mut().find(|i| i.id == id && !i.deleted),
                event_body(ev),
            ) {
                if i.kind == kind_key(body.kind()) {
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
            if let Some(i) = v.items.iter_mut().find(|i| i.id == id) {
                note_change(i, &editor, e.link_seq);
                i.deleted = true;
                i.updated_at = at.clone();
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
    // an item event only its item.
    let touched = ev.item().map(|i| i.to_string());
    let all = matches!(ev, Event::Outsource { .. });
    for i in v
        .items
        .iter_mut()
        .filter(|i| all || touched.as_deref() == Some(i.id.as_str()))
    {
        i.diverged = diverged(
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
            diverged: i.diverged,
        };
        i.sharing = sharing(&links, &facts).name().to_string();
    }
    v.version = e.version;
    v.position = e.position;
    v.updated_at = at.clone();
    v.history.push(HistoryView {
        position: e.position,
        version: e.version,
        event_id: e.event_id.to_string(),
        at,
        actor: actor(e),
        event_type: e.event_type.clone(),
        summary: summary(ev),
    });
    v.totals = totals(&v.items);
    Ok(Some(v))
}

fn note_change(i: &mut ItemView, editor: &InstanceId, link_seq: u32) {
    if i.author.instance == editor.as_str() {
        i.author_change_seqs.push(link_seq);
    } else {
        i.foreign_change = true;
    }
}

fn totals(items: &[ItemView]) -> Totals {
    let mut t = Totals::default();
    for i in items.iter().filter(|i| !i.deleted) {
        match &i.body {
            ItemBodyView::Time {
                hours,
                offset_hours,
                billable,
                ..
            } => {
                t.hours += *hours;
                if *billable {
                    t.billable_hours += *hours - *offset_hours;
                }
            }
            ItemBodyView::Charge {
                quantity,
                unit_cost,
                unit_price,
                ..
            } => {
                t.charges_cost += *quantity * *unit_cost;
                t.charges_price += *quantity * *unit_price;
            }
            _ => {}
        }
    }
    t.hours = t.hours.normalize();
    t.billable_hours = t.billable_hours.normalize();
    t.charges_cost = t.charges_cost.normalize();
    t.charges_price = t.charges_price.normalize();
    t
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

/// Keeps one JSON document per ticket, keyed by the ticket's ULID.
#[derive(Clone, Copy, Debug, Default)]
pub struct TicketProjection;

impl Projection for TicketProjection {
    fn name(&self) -> &str {
        TICKETS
    }

    fn keys(&self, entries: &[LogEntry]) -> Vec<String> {
        let mut keys: BTreeSet<String> = entries.iter().map(|e| e.stream_id.to_string()).collect();
        keys.insert(NUMBERS_KEY.to_string());
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
        let mut views: HashMap<String, Option<TicketView>> = HashMap::new();
        let mut order: Vec<String> = Vec::new();
        for e in entries {
            let key = e.stream_id.to_string();
            if !views.contains_key(&key) {
                let v = match docs.get(&key) {
                    Some(b) => Some(parse_doc::<TicketView>(&key, b)?),
                    None => None,
                };
                views.insert(key.clone(), v);
                order.push(key.clone());
            }
            let ev = decode(e)?;
            let slot = views.entry(key).or_default();
            let creates = slot.is_none() && matches!(ev, Event::TicketCreated { .. });
            let next = apply_entry(slot.take(), numbers.last + 1, e, &ev)?;
            if creates && next.is_some() {
                numbers.last += 1;
            }
            // The partner issues an invoice, numbered in its own sequence, when a link it
            // works completes.
            let mut next = next;
            if let Some(v) = next.as_mut() {
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
        let mut changes = Vec::with_capacity(order.len() + 1);
        for key in order {
            if let Some(Some(v)) = views.get(&key) {
                changes.push(DocChange::Put {
                    doc: to_doc(&key, v)?,
                    key,
                });
            }
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
        let key = id.to_string();
        let docs = store.load_docs(TICKETS, std::slice::from_ref(&key)).await?;
        docs.get(&key).map(|b| parse_doc(&key, b)).transpose()
    }

    /// Every ticket, ordered by number.
    pub async fn list(store: &dyn Store) -> Result<Vec<TicketView>, ProjectionError> {
        let mut out = Vec::new();
        for (k, b) in store.list_docs(TICKETS).await? {
            if k != NUMBERS_KEY {
                out.push(parse_doc::<TicketView>(&k, &b)?);
            }
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
    let mut view = None;
    for e in store.read_stream(id, Some(position)).await? {
        view = apply_entry(view, number, &e, &decode(&e)?)?;
    }
    Ok(view)
}
