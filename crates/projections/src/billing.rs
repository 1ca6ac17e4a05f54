//! Bills and invoices as shown and compared: the JSON form of `domain::billing::Bill` and
//! the digest of its lines that must be equal on the lead and the partner.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
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

/// SHA-256 over a canonical text of the lines and currency: one line per priced line,
/// fields separated by `|`, decimals normalized. Independent of JSON formatting, so both
/// instances (and any later version of the renderer) agree.
pub fn lines_digest(b: &Bill) -> [u8; 32] {
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
    h.finalize().into()
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
