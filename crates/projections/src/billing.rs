//! Bills and invoices as shown and compared: the JSON form of `domain::billing::Bill` and
//! the digest of its lines that must be equal on the lead and the partner.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use ticketsync_domain::billing::Bill;

/// One priced line as shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineView {
    /// `time`, `flat` or `charge`.
    pub kind: String,
    pub item: Option<String>,
    pub description: String,
    pub hours: Decimal,
    pub offset_hours: Decimal,
    pub billable_hours: Decimal,
    pub quantity: Decimal,
    pub unit_price: Decimal,
    pub amount: Decimal,
    pub over_authorized_hours: bool,
    pub over_authorized_charge: bool,
}

/// A link's bill as shown by `invoice show --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillView {
    pub link_id: String,
    pub terms_version: u32,
    pub currency: String,
    pub lines: Vec<LineView>,
    pub subtotal: Decimal,
    pub total: Decimal,
    pub billable_hours: Decimal,
    pub charges: Decimal,
    pub authorized_hours: Option<Decimal>,
    pub authorized_charge: Option<Decimal>,
    pub over_authorized_hours: bool,
    pub over_authorized_charge: bool,
    /// SHA-256 of the lines (see [`lines_digest`]); equal on both instances.
    pub digest: String,
}

/// SHA-256 of the canonical lines (see `domain::billing::lines_digest`).
pub fn lines_digest(b: &Bill) -> [u8; 32] {
    ticketsync_domain::billing::lines_digest(b).0
}

pub fn bill_view(b: &Bill) -> BillView {
    BillView {
        link_id: b.link.to_string(),
        terms_version: b.terms_version,
        currency: b.currency.code().to_string(),
        lines: b
            .lines
            .iter()
            .map(|l| LineView {
                kind: l.kind.name().to_string(),
                item: l.item.map(|i| i.to_string()),
                description: l.description.clone(),
                hours: l.hours,
                offset_hours: l.offset_hours,
                billable_hours: l.billable_hours,
                quantity: l.quantity,
                unit_price: l.unit_price,
                amount: l.amount,
                over_authorized_hours: l.over_authorized_hours,
                over_authorized_charge: l.over_authorized_charge,
            })
            .collect(),
        subtotal: b.subtotal,
        total: b.subtotal,
        billable_hours: b.billable_hours,
        charges: b.charges,
        authorized_hours: b.authorized_hours,
        authorized_charge: b.authorized_charge,
        over_authorized_hours: b.over_authorized_hours,
        over_authorized_charge: b.over_authorized_charge,
        digest: hex::encode(lines_digest(b)),
    }
}
