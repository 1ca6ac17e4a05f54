//! The outsourcing part of the ticket projection: links with their transitions as stored
//! JSON, converted to and from the domain's `Link` so the projection resolves concurrent
//! transitions and item sharing with exactly the domain's rules.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use ticketsync_domain::outsource::{Link, Move, Side, TransitionRecord};
use ticketsync_domain::{Currency, InstanceId, LinkId, Rate, Rounding, Terms, Timestamp};
use ticketsync_wire::replay::rfc3339_ms;
use ulid::Ulid;

use crate::runner::ProjectionError;

/// One link as stored in the projection document: enough to rebuild the domain `Link`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkDoc {
    pub id: String,
    pub lead: String,
    pub partner: String,
    /// Every transition known, in arrival order.
    pub transitions: Vec<TransitionDoc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionDoc {
    /// `send`, `revise`, `counter`, `accept`, `decline`, `cancel`, `expire`, `start`,
    /// `complete`, `reject`, `approve`, `force-complete`, `complete-by-status`.
    #[serde(rename = "move")]
    pub mv: String,
    /// `lead` or `partner`.
    pub side: String,
    /// Transitions its author knew: the ordering key of concurrent transitions.
    pub seq: u32,
    /// Applied (true) or superseded by a concurrent transition that won (false).
    pub effective: bool,
    pub terms: Option<TermsView>,
    pub accepts_version: Option<u32>,
    pub organization: Option<String>,
    pub reason: Option<String>,
}

/// Terms as shown and stored. Amounts are exact decimals (strings in JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermsView {
    /// `hourly` or `flat`.
    pub rate_type: String,
    pub rate: Decimal,
    pub currency: String,
    pub authorized_hours: Option<Decimal>,
    pub authorized_charge: Option<Decimal>,
    /// RFC 3339; `respond_by_ms` holds the exact value.
    pub respond_by: Option<String>,
    pub respond_by_ms: Option<i64>,
    pub instructions: String,
    /// `half-up`, `half-even`, `up` or `down`.
    #[serde(default = "default_rounding")]
    pub rounding: String,
}

fn default_rounding() -> String {
    Rounding::HalfUp.name().to_string()
}

/// The current link as `ticket show --json` presents it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutsourceView {
    pub link_id: String,
    /// This instance's side: `lead` or `partner`.
    pub role: String,
    pub lead: String,
    pub partner: String,
    /// The instance at the other end.
    pub counterparty: String,
    pub status: String,
    /// The latest terms version (1-based) and its terms.
    pub terms_version: u32,
    pub terms: Option<TermsView>,
    pub accepted_terms_version: Option<u32>,
    pub organization: Option<String>,
}

fn bad(what: &str, v: &str) -> ProjectionError {
    ProjectionError::BadDoc {
        key: "links".into(),
        reason: format!("bad {what} {v:?}"),
    }
}

pub fn terms_view(t: &Terms) -> TermsView {
    let (rate_type, rate) = match t.rate {
        Rate::Hourly(r) => ("hourly", r),
        Rate::Flat(r) => ("flat", r),
    };
    TermsView {
        rate_type: rate_type.into(),
        rate,
        currency: t.currency.code().into(),
        authorized_hours: t.authorized_hours,
        authorized_charge: t.authorized_charge,
        respond_by: t.respond_by.map(|r| rfc3339_ms(r.0)),
        respond_by_ms: t.respond_by.map(|r| r.0),
        instructions: t.instructions.clone(),
        rounding: t.rounding.name().to_string(),
    }
}

fn terms_of(v: &TermsView) -> Result<Terms, ProjectionError> {
    Ok(Terms {
        rate: match v.rate_type.as_str() {
            "hourly" => Rate::Hourly(v.rate),
            "flat" => Rate::Flat(v.rate),
            other => return Err(bad("rate type", other)),
        },
        currency: Currency::parse(&v.currency).map_err(|_| bad("currency", &v.currency))?,
        authorized_hours: v.authorized_hours,
        authorized_charge: v.authorized_charge,
        respond_by: v.respond_by_ms.map(Timestamp),
        instructions: v.instructions.clone(),
        rounding: Rounding::parse(&v.rounding).map_err(|_| bad("rounding", &v.rounding))?,
    })
}

fn move_of(name: &str) -> Result<Move, ProjectionError> {
    Move::ALL
        .iter()
        .copied()
        .find(|m| m.verb() == name)
        .ok_or_else(|| bad("move", name))
}

fn side_of(name: &str) -> Result<Side, ProjectionError> {
    match name {
        "lead" => Ok(Side::Lead),
        "partner" => Ok(Side::Partner),
        other => Err(bad("side", other)),
    }
}

/// Rebuilds the domain links (and resolves them) from stored documents.
pub fn to_domain(docs: &[LinkDoc]) -> Result<Vec<Link>, ProjectionError> {
    docs.iter()
        .map(|d| {
            let id = Ulid::from_string(&d.id).map_err(|_| bad("link id", &d.id))?;
            let lead = InstanceId::parse(&d.lead).map_err(|_| bad("instance", &d.lead))?;
            let partner = InstanceId::parse(&d.partner).map_err(|_| bad("instance", &d.partner))?;
            let mut l = Link::new(LinkId(id), lead, partner);
            for t in &d.transitions {
                l.transitions.push(TransitionRecord {
                    mv: move_of(&t.mv)?,
                    side: side_of(&t.side)?,
                    seq: t.seq,
                    terms: t.terms.as_ref().map(terms_of).transpose()?,
                    accepts_version: t.accepts_version,
                    organization: t.organization.clone(),
                    reason: t.reason.clone(),
                });
            }
            l.resolve();
            Ok(l)
        })
        .collect()
}

/// Renders resolved domain links as stored documents.
pub fn to_docs(links: &[Link]) -> Vec<LinkDoc> {
    links
        .iter()
        .map(|l| LinkDoc {
            id: l.id.to_string(),
            lead: l.lead.to_string(),
            partner: l.partner.to_string(),
            transitions: l
                .transitions
                .iter()
                .zip(&l.effective)
                .map(|(t, eff)| TransitionDoc {
                    mv: t.mv.verb().into(),
                    side: t.side.name().into(),
                    seq: t.seq,
                    effective: *eff,
                    terms: t.terms.as_ref().map(terms_view),
                    accepts_version: t.accepts_version,
                    organization: t.organization.clone(),
                    reason: t.reason.clone(),
                })
                .collect(),
        })
        .collect()
}

/// The current link as seen from `home` (this instance).
pub fn current_view(links: &[Link], home: &str) -> Option<OutsourceView> {
    let l = links.last()?;
    let role = if l.lead.as_str() == home {
        Side::Lead
    } else {
        Side::Partner
    };
    Some(OutsourceView {
        link_id: l.id.to_string(),
        role: role.name().into(),
        lead: l.lead.to_string(),
        partner: l.partner.to_string(),
        counterparty: l.counterparty(role).to_string(),
        status: l.status.name().into(),
        terms_version: l.terms.len() as u32,
        terms: l.terms.last().map(terms_view),
        accepted_terms_version: l.accepted_version,
        organization: l.organization.clone(),
    })
}
