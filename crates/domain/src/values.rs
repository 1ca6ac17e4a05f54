//! Validated values carried by items: time entries, charges, attachments, and the text limits.

use std::fmt;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use crate::error::{invalid, DomainError};

/// Longest ticket title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest free text (description, note, summary, instructions), in characters.
pub const MAX_TEXT_CHARS: usize = 64 * 1024;
/// Longest short label (customer, resource, role, file name, charge description), in characters.
pub const MAX_LABEL_CHARS: usize = 200;
/// Most hours one time entry may carry.
pub const MAX_ENTRY_HOURS: Decimal = Decimal::from_parts(24, 0, 0, false, 0);
/// Most decimal places in an hours value (0.01 h = 36 s).
pub const MAX_HOURS_SCALE: u32 = 2;
/// Most decimal places in a money value or quantity.
pub const MAX_MONEY_SCALE: u32 = 4;
/// Largest money value or quantity accepted (one trillion).
pub const MAX_MONEY: Decimal = Decimal::from_parts(0xD4A5_1000, 0xE8, 0, false, 0);

/// Checks a required single-line title: trimmed, non-empty, bounded.
pub fn title(field: &'static str, s: &str) -> Result<String, DomainError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    label_rules(field, t, MAX_TITLE_CHARS)?;
    Ok(t.to_string())
}

/// Checks an optional short label; empty means absent.
pub fn label(field: &'static str, s: Option<&str>) -> Result<Option<String>, DomainError> {
    match s.map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) => label_rules(field, t, MAX_LABEL_CHARS).map(|_| Some(t.to_string())),
    }
}

fn label_rules(field: &'static str, t: &str, max: usize) -> Result<(), DomainError> {
    if t.chars().count() > max {
        return Err(invalid(field, format!("is longer than {max} characters")));
    }
    if t.chars().any(char::is_control) {
        return Err(invalid(
            field,
            "must be one line without control characters",
        ));
    }
    Ok(())
}

/// Checks free text that may span lines; `required` refuses an empty one.
pub fn text(field: &'static str, s: &str, required: bool) -> Result<String, DomainError> {
    let t = s.trim();
    if required && t.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if t.chars().count() > MAX_TEXT_CHARS {
        return Err(invalid(
            field,
            format!("is longer than {MAX_TEXT_CHARS} characters"),
        ));
    }
    if t.chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(invalid(field, "contains control characters"));
    }
    Ok(t.to_string())
}

/// Checks an hours value: `0 <= h <= 24`, at most two decimal places; `positive` also refuses 0.
pub fn hours(field: &'static str, h: Decimal, positive: bool) -> Result<Decimal, DomainError> {
    if h.is_sign_negative() && !h.is_zero() {
        return Err(invalid(field, format!("{h} is negative")));
    }
    if positive && h.is_zero() {
        return Err(invalid(field, "must be more than 0"));
    }
    if h > MAX_ENTRY_HOURS {
        return Err(invalid(
            field,
            format!("{h} is more than {MAX_ENTRY_HOURS} hours"),
        ));
    }
    if h.normalize().scale() > MAX_HOURS_SCALE {
        return Err(invalid(
            field,
            format!("{h} has more than {MAX_HOURS_SCALE} decimal places"),
        ));
    }
    Ok(h.normalize())
}

/// Checks a money value or quantity: `0 <= m <= 10^12`, at most four decimal places.
pub fn money(field: &'static str, m: Decimal) -> Result<Decimal, DomainError> {
    if m.is_sign_negative() && !m.is_zero() {
        return Err(invalid(field, format!("{m} is negative")));
    }
    if m > MAX_MONEY {
        return Err(invalid(field, format!("{m} is more than {MAX_MONEY}")));
    }
    if m.normalize().scale() > MAX_MONEY_SCALE {
        return Err(invalid(
            field,
            format!("{m} has more than {MAX_MONEY_SCALE} decimal places"),
        ));
    }
    Ok(m.normalize())
}

/// One time entry: who worked how long on what, and how much of it is billable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeEntry {
    /// Hours worked, `0 < hours <= 24`.
    pub hours: Decimal,
    /// Hours deducted from what is billed (`0 <= offset <= hours`).
    pub offset_hours: Decimal,
    /// The person who did the work.
    pub resource: String,
    pub role: Option<String>,
    pub summary: String,
    /// The day the work was done.
    pub date: NaiveDate,
    pub billable: bool,
}

impl TimeEntry {
    /// Validates every field and returns the normalized entry.
    pub fn validated(self) -> Result<Self, DomainError> {
        let hours = hours("hours", self.hours, true)?;
        let offset_hours = hours_offset(self.offset_hours, hours)?;
        let resource = title("resource", &self.resource)?;
        let role = label("role", self.role.as_deref())?;
        let summary = text("summary", &self.summary, false)?;
        Ok(TimeEntry {
            hours,
            offset_hours,
            resource,
            role,
            summary,
            ..self
        })
    }
}

fn hours_offset(offset: Decimal, worked: Decimal) -> Result<Decimal, DomainError> {
    let offset = hours("offset hours", offset, false)?;
    if offset > worked {
        return Err(invalid(
            "offset hours",
            format!("{offset} is more than the {worked} hours worked"),
        ));
    }
    Ok(offset)
}

/// A cost item: materials, travel, licences.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Charge {
    pub description: String,
    pub quantity: Decimal,
    pub unit_cost: Decimal,
    /// What the customer is charged per unit.
    pub unit_price: Decimal,
    pub billable: bool,
}

impl Charge {
    pub fn validated(self) -> Result<Self, DomainError> {
        let description = title("description", &self.description)?;
        let quantity = money("quantity", self.quantity)?;
        if quantity.is_zero() {
            return Err(invalid("quantity", "must be more than 0"));
        }
        let unit_cost = money("unit cost", self.unit_cost)?;
        let unit_price = money("unit price", self.unit_price)?;
        Ok(Charge {
            description,
            quantity,
            unit_cost,
            unit_price,
            billable: self.billable,
        })
    }
}

/// A SHA-256 digest: the content address of an attachment.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.to_hex())
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A file attached to a ticket. The bytes live in the instance's content-addressed blob store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub sha256: Sha256Digest,
    pub filename: String,
    pub size: u64,
    pub media_type: String,
    pub internal: bool,
}

impl Attachment {
    /// Validates the metadata against the instance's size limit.
    pub fn validated(self, max_bytes: u64) -> Result<Self, DomainError> {
        let filename = title("file name", &self.filename)?;
        if filename.contains('/') || filename.contains('\\') {
            return Err(invalid("file name", "must not contain a path separator"));
        }
        if self.size > max_bytes {
            return Err(invalid(
                "attachment",
                format!(
                    "{} bytes is more than the limit of {max_bytes} bytes",
                    self.size
                ),
            ));
        }
        let media_type = title("media type", &self.media_type)?;
        Ok(Attachment {
            filename,
            media_type,
            ..self
        })
    }
}
