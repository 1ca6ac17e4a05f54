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
    OutsourceSent(OutsourceSent),
    TermsProposed(TermsProposed),
    OutsourceAccepted(OutsourceAccepted),
    OutsourceDeclined(LinkReason),
    OutsourceCanceled(LinkOnly),
    OutsourceExpired(LinkOnly),
    OutsourceStarted(LinkOnly),
    InsourceCompleted(LinkOnly),
    CompletionRejected(LinkReason),
    CompletionApproved(LinkOnly),
    OutsourceForceCompleted(LinkOnly),
    OutsourceCompletedByStatus(LinkOnly),
    InvoiceIssued(InvoiceIssued),
    TransactionFeeRecorded(TransactionFeeRecorded),
}

/// How the partner's work is priced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RateV1 {
    /// Per billable hour (decimal string).
    Hourly(
        #[serde(with = "rust_decimal::serde::str")]
        #[schemars(with = "String")]
        Decimal,
    ),
    /// One amount for the whole job (decimal string).
    Flat(
        #[serde(with = "rust_decimal::serde::str")]
        #[schemars(with = "String")]
        Decimal,
    ),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TermsV1 {
    pub rate: RateV1,
    /// ISO 4217 code.
    pub currency: String,
    #[serde(with = "rust_decimal::serde::str_option")]
    #[schemars(with = "Option<String>")]
    pub authorized_hours: Option<Decimal>,
    #[serde(with = "rust_decimal::serde::str_option")]
    #[schemars(with = "Option<String>")]
    pub authorized_charge: Option<Decimal>,
    /// Respond-by deadline, ms since the epoch.
    pub respond_by: Option<i64>,
    pub instructions: String,
    /// `half-up`, `half-even`, `up` or `down`, to the currency's minor unit, per line.
    pub rounding: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OutsourceSent {
    #[serde(with = "crate::serde_bytes::ulid_id")]
    #[schemars(with = "String")]
    pub link: Ulid,
    pub lead: String,
    pub partner: String,
    pub terms: TermsV1,
    /// The ticket as the partner first sees it.
    pub title: String,
    pub description: String,
    pub customer: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TermsProposed {
    #[serde(with = "crate::serde_bytes::ulid_id")]
    #[schemars(with = "String")]
    pub link: Ulid,
    pub terms: TermsV1,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OutsourceAccepted {
    #[serde(with = "crate::serde_bytes::ulid_id")]
    #[schemars(with = "String")]
    pub link: Ulid,
    /// The terms version accepted (1-based).
    pub terms_version: u32,
    /// The partner's organization (billing account) the lead is mapped to.
    pub organization: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LinkReason {
    #[serde(with = "crate::serde_bytes::ulid_id")]
    #[schemars(with = "String")]
    pub link: Ulid,
    pub reason: String,
}

/// The service partner's invoice for a completed link, as the lead checks it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InvoiceIssued {
    #[serde(with = "crate::serde_bytes::ulid_id")]
    #[schemars(with = "String")]
    pub link: Ulid,
    /// The number in the partner's own invoice sequence (from 1).
    pub number: u64,
    /// The terms version the lines are priced at (1-based).
    pub terms_version: u32,
    /// ISO 4217 code.
    pub currency: String,
    /// How many priced lines.
    pub lines: u32,
    /// Decimal string.
    #[serde(with = "rust_decimal::serde::str")]
    #[schemars(with = "String")]
    pub subtotal: Decimal,
    /// SHA-256 of the canonical lines (see docs/cli.md, `invoice show`), lowercase hex in JSON.
    #[serde(with = "crate::serde_bytes::digest")]
    #[schemars(with = "String")]
    pub lines_digest: [u8; 32],
}

/// The lead's record of a portal company's per-acceptance transaction fee.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TransactionFeeRecorded {
    #[serde(with = "crate::serde_bytes::ulid_id")]
    #[schemars(with = "String")]
    pub link: Ulid,
    /// Decimal string.
    #[serde(with = "rust_decimal::serde::str")]
    #[schemars(with = "String")]
    pub amount: Decimal,
    /// ISO 4217 code.
    pub currency: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LinkOnly {
    #[serde(with = "crate::serde_bytes::ulid_id")]
    #[schemars(with = "String")]
    pub link: Ulid,
}

fn terms_v1(t: &d::Terms) -> TermsV1 {
    TermsV1 {
        rate: match t.rate {
            d::Rate::Hourly(r) => RateV1::Hourly(r),
            d::Rate::Flat(r) => RateV1::Flat(r),
        },
        currency: t.currency.code().to_string(),
        authorized_hours: t.authorized_hours,
        authorized_charge: t.authorized_charge,
        respond_by: t.respond_by.map(|r| r.0),
        instructions: t.instructions.clone(),
        rounding: t.rounding.name().to_string(),
    }
}

fn terms_domain(t: TermsV1) -> Result<d::Terms, String> {
    Ok(d::Terms {
        rate: match t.rate {
            RateV1::Hourly(r) => d::Rate::Hourly(r),
            RateV1::Flat(r) => d::Rate::Flat(r),
        },
        currency: d::Currency::parse(&t.currency).map_err(|e| e.to_string())?,
        authorized_hours: t.authorized_hours,
        authorized_charge: t.authorized_charge,
        respond_by: t.respond_by.map(d::Timestamp),
        instructions: t.instructions,
        rounding: d::Rounding::parse(&t.rounding).map_err(|e| e.to_string())?,
    })
}

fn instance(s: String) -> Result<d::InstanceId, String> {
    d::InstanceId::parse(&s).map_err(|e| e.to_string())
}

fn outsource_v1(link: &d::LinkId, c: &d::LinkChange) -> EventV1 {
    use d::LinkChange as C;
    let link = link.0;
    let only = LinkOnly { link };
    match c {
        C::Sent {
            lead,
            partner,
            terms,
            snapshot,
        } => EventV1::OutsourceSent(OutsourceSent {
            link,
            lead: lead.to_string(),
            partner: partner.to_string(),
            terms: terms_v1(terms),
            title: snapshot.title.clone(),
            description: snapshot.description.clone(),
            customer: snapshot.customer.clone(),
        }),
        C::TermsProposed { terms } => EventV1::TermsProposed(TermsProposed {
            link,
            terms: terms_v1(terms),
        }),
        C::Accepted {
            terms_version,
            organization,
        } => EventV1::OutsourceAccepted(OutsourceAccepted {
            link,
            terms_version: *terms_version,
            organization: organization.clone(),
        }),
        C::Declined { reason } => EventV1::OutsourceDeclined(LinkReason {
            link,
            reason: reason.clone(),
        }),
        C::Canceled => EventV1::OutsourceCanceled(only),
        C::Expired => EventV1::OutsourceExpired(only),
        C::Started => EventV1::OutsourceStarted(only),
        C::Completed => EventV1::InsourceCompleted(only),
        C::Rejected { reason } => EventV1::CompletionRejected(LinkReason {
            link,
            reason: reason.clone(),
        }),
        C::Approved => EventV1::CompletionApproved(only),
        C::ForceCompleted => EventV1::OutsourceForceCompleted(only),
        C::CompletedByStatus => EventV1::OutsourceCompletedByStatus(only),
    }
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
            E::Outsource { link, change } => outsource_v1(link, change),
            E::InvoiceIssued { link, invoice } => EventV1::InvoiceIssued(InvoiceIssued {
                link: link.0,
                number: invoice.number,
                terms_version: invoice.terms_version,
                currency: invoice.currency.code().to_string(),
                lines: invoice.lines,
                subtotal: invoice.subtotal,
                lines_digest: invoice.lines_digest.0,
            }),
            E::TransactionFeeRecorded { link, fee } => {
                EventV1::TransactionFeeRecorded(TransactionFeeRecorded {
                    link: link.0,
                    amount: fee.amount,
                    currency: fee.currency.code().to_string(),
                })
            }
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

impl TryFrom<EventV1> for d::Event {
    type Error = String;

    /// Fails only for values no encoder of this version writes (an unknown currency
    /// code, a malformed instance name).
    fn try_from(e: EventV1) -> Result<Self, String> {
        use d::Event as E;
        use d::LinkChange as C;
        let id = d::ItemId;
        let lk = d::LinkId;
        let o = |link: Ulid, change: C| E::Outsource {
            link: lk(link),
            change,
        };
        Ok(match e {
            EventV1::InvoiceIssued(x) => E::InvoiceIssued {
                link: lk(x.link),
                invoice: d::billing::IssuedInvoice {
                    number: x.number,
                    terms_version: x.terms_version,
                    currency: d::Currency::parse(&x.currency).map_err(|e| e.to_string())?,
                    lines: x.lines,
                    subtotal: x.subtotal,
                    lines_digest: d::Sha256Digest(x.lines_digest),
                },
            },
            EventV1::TransactionFeeRecorded(x) => E::TransactionFeeRecorded {
                link: lk(x.link),
                fee: d::billing::TransactionFee {
                    amount: x.amount,
                    currency: d::Currency::parse(&x.currency).map_err(|e| e.to_string())?,
                },
            },
            EventV1::OutsourceSent(x) => o(
                x.link,
                C::Sent {
                    lead: instance(x.lead)?,
                    partner: instance(x.partner)?,
                    terms: terms_domain(x.terms)?,
                    snapshot: d::Snapshot {
                        title: x.title,
                        description: x.description,
                        customer: x.customer,
                    },
                },
            ),
            EventV1::TermsProposed(x) => o(
                x.link,
                C::TermsProposed {
                    terms: terms_domain(x.terms)?,
                },
            ),
            EventV1::OutsourceAccepted(x) => o(
                x.link,
                C::Accepted {
                    terms_version: x.terms_version,
                    organization: x.organization,
                },
            ),
            EventV1::OutsourceDeclined(x) => o(x.link, C::Declined { reason: x.reason }),
            EventV1::OutsourceCanceled(x) => o(x.link, C::Canceled),
            EventV1::OutsourceExpired(x) => o(x.link, C::Expired),
            EventV1::OutsourceStarted(x) => o(x.link, C::Started),
            EventV1::InsourceCompleted(x) => o(x.link, C::Completed),
            EventV1::CompletionRejected(x) => o(x.link, C::Rejected { reason: x.reason }),
            EventV1::CompletionApproved(x) => o(x.link, C::Approved),
            EventV1::OutsourceForceCompleted(x) => o(x.link, C::ForceCompleted),
            EventV1::OutsourceCompletedByStatus(x) => o(x.link, C::CompletedByStatus),
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
        })
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
