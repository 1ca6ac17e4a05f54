//! The billing projector's rules: a link's partner work priced at the link's accepted
//! terms. The same pure function runs on both instances over the same events, so the lead
//! and the partner compute the same lines, line for line.
//!
//! - Partner time entries: billable hours = hours - offset, times the hourly rate, rounded
//!   per line to the currency's minor unit by the terms' rounding rule. Non-billable
//!   entries are listed with amount 0.
//! - A flat rate is one line for the whole job; time entries are then listed at 0.
//! - Partner charges are passed through at quantity x unit price, rounded per line.
//! - Lines are flagged when the running billable hours exceed the authorized hours, or the
//!   running amount exceeds the authorized charge.
//! - The lead's own time is never billed by the partner.
//! - Only what both sides hold counts: each item at the version shared while the link was
//!   live ([`Ticket::shared_version`]); items kept local are not billed.

use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use crate::ids::{ItemId, LinkId};
use crate::outsource::Link;
use crate::terms::{Currency, Rate, Terms};
use crate::ticket::{ItemBody, Ticket};
use crate::values::Sha256Digest;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LineKind {
    Time,
    Flat,
    Charge,
}

impl LineKind {
    pub fn name(self) -> &'static str {
        match self {
            LineKind::Time => "time",
            LineKind::Flat => "flat",
            LineKind::Charge => "charge",
        }
    }
}

/// One priced line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub kind: LineKind,
    /// The time entry or charge; `None` for the flat-rate line.
    pub item: Option<ItemId>,
    pub description: String,
    /// Hours worked, offset and billable hours (time lines; 0 otherwise).
    pub hours: Decimal,
    pub offset_hours: Decimal,
    pub billable_hours: Decimal,
    /// Quantity and unit price (charges; hours and rate for time; 1 and the flat rate).
    pub quantity: Decimal,
    pub unit_price: Decimal,
    pub amount: Decimal,
    pub over_authorized_hours: bool,
    pub over_authorized_charge: bool,
}

/// A link's bill: what the partner invoices the lead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bill {
    pub link: LinkId,
    /// The accepted terms version (1-based) the lines are priced at.
    pub terms_version: u32,
    pub currency: Currency,
    pub lines: Vec<Line>,
    pub subtotal: Decimal,
    pub billable_hours: Decimal,
    pub charges: Decimal,
    pub authorized_hours: Option<Decimal>,
    pub authorized_charge: Option<Decimal>,
    pub over_authorized_hours: bool,
    pub over_authorized_charge: bool,
}

/// The terms a link bills at: the version its acceptance bound.
pub fn billing_terms(link: &Link) -> Option<(u32, &Terms)> {
    let v = link.accepted_version?;
    link.terms.get(v.checked_sub(1)? as usize).map(|t| (v, t))
}

/// Prices the partner's work on link `link` of ticket `t`. `None` when the link does not
/// exist or was never accepted.
pub fn bill(t: &Ticket, link: LinkId) -> Option<Bill> {
    let l = t.link(link)?;
    let (terms_version, terms) = billing_terms(l)?;
    let currency = terms.currency;
    let round = |x: Decimal| terms.rounding.apply(x, currency);
    let mut lines = Vec::new();
    let mut hours_so_far = Decimal::ZERO;
    let mut amount_so_far = Decimal::ZERO;
    if let Rate::Flat(f) = terms.rate {
        let amount = round(f);
        amount_so_far += amount;
        lines.push(Line {
            kind: LineKind::Flat,
            item: None,
            description: "Flat rate".into(),
            hours: Decimal::ZERO,
            offset_hours: Decimal::ZERO,
            billable_hours: Decimal::ZERO,
            quantity: Decimal::ONE,
            unit_price: f,
            amount,
            over_authorized_hours: false,
            over_authorized_charge: terms.authorized_charge.is_some_and(|c| amount_so_far > c),
        });
    }
    // Items in the order they were added (ULIDs of one instance sort by creation time;
    // ties cannot differ between the two sides, which hold the same ids).
    for i in t.items.values() {
        if i.author.instance != l.partner || t.link_at(i.link_seq).map(|x| x.id) != Some(link) {
            continue;
        }
        let Some(body) = t.shared_version(i) else {
            continue;
        };
        let line = match body {
            ItemBody::Time(e) => {
                let billable = if e.billable {
                    e.hours - e.offset_hours
                } else {
                    Decimal::ZERO
                };
                let (rate, amount) = match terms.rate {
                    Rate::Hourly(r) => (r, round(billable * r)),
                    Rate::Flat(_) => (Decimal::ZERO, Decimal::ZERO),
                };
                hours_so_far += billable;
                amount_so_far += amount;
                let mut description = format!("{} {}", e.date, e.resource);
                if !e.summary.is_empty() {
                    description.push_str(": ");
                    description.push_str(&e.summary);
                }
                Line {
                    kind: LineKind::Time,
                    item: Some(i.id),
                    description,
                    hours: e.hours,
                    offset_hours: e.offset_hours,
                    billable_hours: billable,
                    quantity: billable,
                    unit_price: rate,
                    amount,
                    over_authorized_hours: terms.authorized_hours.is_some_and(|h| hours_so_far > h),
                    over_authorized_charge: terms
                        .authorized_charge
                        .is_some_and(|c| amount_so_far > c),
                }
            }
            ItemBody::Charge(c) => {
                let amount = if c.billable {
                    round(c.quantity * c.unit_price)
                } else {
                    Decimal::ZERO
                };
                amount_so_far += amount;
                Line {
                    kind: LineKind::Charge,
                    item: Some(i.id),
                    description: c.description.clone(),
                    hours: Decimal::ZERO,
                    offset_hours: Decimal::ZERO,
                    billable_hours: Decimal::ZERO,
                    quantity: c.quantity,
                    unit_price: c.unit_price,
                    amount,
                    over_authorized_hours: false,
                    over_authorized_charge: terms
                        .authorized_charge
                        .is_some_and(|x| amount_so_far > x),
                }
            }
            ItemBody::Note { .. } | ItemBody::Attachment(_) => continue,
        };
        lines.push(line);
    }
    let subtotal: Decimal = lines.iter().map(|l| l.amount).sum();
    let billable_hours: Decimal = lines.iter().map(|l| l.billable_hours).sum();
    let charges: Decimal = lines
        .iter()
        .filter(|l| l.kind == LineKind::Charge)
        .map(|l| l.amount)
        .sum();
    Some(Bill {
        link,
        terms_version,
        currency,
        over_authorized_hours: lines.iter().any(|l| l.over_authorized_hours),
        over_authorized_charge: lines.iter().any(|l| l.over_authorized_charge),
        lines,
        subtotal,
        billable_hours,
        charges,
        authorized_hours: terms.authorized_hours,
        authorized_charge: terms.authorized_charge,
    })
}

/// SHA-256 over a canonical text of the lines, the currency and the terms version: one row
/// per priced line, fields separated by `|`, decimals normalized. Independent of any JSON
/// or display formatting, so both instances (and any later renderer) agree on it.
pub fn lines_digest(b: &Bill) -> Sha256Digest {
    let mut h = Sha256::new();
    h.update(format!("currency|{}|terms|{}\n", b.currency, b.terms_version).as_bytes());
    for l in &b.lines {
        let row = format!(
            "{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}\n",
            l.kind.name(),
            l.item.map(|i| i.to_string()).unwrap_or_default(),
            l.description.replace(['|', '\n'], " "),
            l.hours.normalize(),
            l.offset_hours.normalize(),
            l.billable_hours.normalize(),
            l.quantity.normalize(),
            l.unit_price.normalize(),
            l.amount.normalize(),
            l.over_authorized_hours,
            l.over_authorized_charge
        );
        h.update(row.as_bytes());
    }
    Sha256Digest(h.finalize().into())
}

/// What the service partner's instance states when it issues the invoice of a link: its
/// number in the partner's own sequence and what the lead checks its own bill against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedInvoice {
    pub number: u64,
    pub terms_version: u32,
    pub currency: Currency,
    /// How many priced lines the invoice has.
    pub lines: u32,
    pub subtotal: Decimal,
    /// [`lines_digest`] of the partner's bill.
    pub lines_digest: Sha256Digest,
}

impl IssuedInvoice {
    /// The statement of `bill` under invoice number `number`.
    pub fn of(bill: &Bill, number: u64) -> IssuedInvoice {
        IssuedInvoice {
            number,
            terms_version: bill.terms_version,
            currency: bill.currency,
            lines: u32::try_from(bill.lines.len()).unwrap_or(u32::MAX),
            subtotal: bill.subtotal,
            lines_digest: lines_digest(bill),
        }
    }
}

/// How an invoice the partner issued compares with the bill this instance computes from
/// its own log for the same link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvoiceCheck {
    /// Same lines digest, subtotal, currency and terms version.
    Agrees,
    /// This instance's bill differs: what was stated, and what was computed here.
    Differs {
        stated: IssuedInvoice,
        computed: IssuedInvoice,
    },
    /// This instance cannot bill the link at all (it never saw the acceptance).
    NoBill,
}

/// Compares the invoice stated for `link` (if any) with the bill computed from `t`.
pub fn check_invoice(t: &Ticket, link: LinkId) -> Option<InvoiceCheck> {
    let stated = t.link(link)?.invoice.clone()?;
    let Some(b) = bill(t, link) else {
        return Some(InvoiceCheck::NoBill);
    };
    let computed = IssuedInvoice::of(&b, stated.number);
    Some(if computed == stated {
        InvoiceCheck::Agrees
    } else {
        InvoiceCheck::Differs { stated, computed }
    })
}

/// The per-acceptance transaction fee recorded for the lead when a portal company (a
/// subcontractor working in the lead's own instance) accepts a link. It is the lead's cost,
/// not part of the partner's invoice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionFee {
    pub amount: Decimal,
    pub currency: Currency,
}
