//! Portal companies: subcontractors without an instance of their own, whose users work in
//! this (the lead's) instance. Owns their registry and the per-acceptance transaction fee
//! the lead records when one of them accepts a ticket.
//!
//! For the outsourcing workflow a portal company is a partner like any other: its users'
//! commands are decided as the partner's side (the actor's instance is the company), so the
//! same rules apply. Nothing is replicated to it: its tickets live in this instance's log.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use ticketsync_domain::{self as domain, Actor, Command, Currency, InstanceId, TicketId};

use crate::{now_ms, Failure, Instance};

/// The instance setting that holds the registry (a JSON object by company name).
pub const PORTALS_META: &str = "portal_companies";

/// One portal company as registered on the lead's instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortalCompany {
    pub name: String,
    /// Recorded for the lead each time the company accepts a ticket (`None`: no fee).
    pub transaction_fee: Option<Decimal>,
    /// ISO 4217 code of the fee.
    pub currency: Option<String>,
    /// When it was registered (ms since the epoch).
    pub added_at: i64,
}

impl PortalCompany {
    /// The fee as the domain takes it, if the company has one.
    pub fn fee(&self) -> Result<Option<(Decimal, Currency)>> {
        match (&self.transaction_fee, &self.currency) {
            (Some(a), Some(c)) => Ok(Some((*a, Currency::parse(c)?))),
            _ => Ok(None),
        }
    }
}

impl Instance {
    /// Every registered portal company, by name.
    pub async fn portal_companies(&self) -> Result<BTreeMap<String, PortalCompany>> {
        match self.store.get_meta(PORTALS_META).await? {
            None => Ok(BTreeMap::new()),
            Some(s) => serde_json::from_str(&s)
                .with_context(|| format!("the instance setting {PORTALS_META} is not valid")),
        }
    }

    /// Registers a portal company, optionally with a per-acceptance transaction fee.
    /// Refused when the name is this instance's or another partner's, or already taken.
    pub async fn add_portal_company(
        &self,
        name: &str,
        fee: Option<(Decimal, Currency)>,
    ) -> Result<PortalCompany> {
        let id = InstanceId::parse(name)
            .map_err(|e| Failure::Usage(format!("bad portal company name {name:?}: {e}")))?;
        if id == *self.name() {
            return Err(Failure::Usage(format!("{name} is this instance's own name")).into());
        }
        if self.store.get_partner(name).await?.is_some() {
            return Err(Failure::Refused(format!(
                "{name} is already a partner instance of this one"
            ))
            .into());
        }
        let mut all = self.portal_companies().await?;
        if all.contains_key(name) {
            return Err(Failure::Refused(format!("portal company {name} already exists")).into());
        }
        if let Some((amount, currency)) = fee {
            let amount = domain::values::money("transaction fee", amount)?;
            if amount.scale() > currency.minor_units() {
                return Err(Failure::Usage(format!(
                    "transaction fee {amount} has more decimal places than {currency} has ({})",
                    currency.minor_units()
                ))
                .into());
            }
        }
        let company = PortalCompany {
            name: name.to_string(),
            transaction_fee: fee.map(|(a, _)| a.normalize()),
            currency: fee.map(|(_, c)| c.code().to_string()),
            added_at: now_ms(),
        };
        all.insert(name.to_string(), company.clone());
        self.store
            .set_meta(PORTALS_META, &serde_json::to_string(&all)?)
            .await?;
        Ok(company)
    }

    /// From now on, commands are made by `self.actor.user` of portal company `company`.
    pub async fn act_for_portal(&mut self, company: &str) -> Result<()> {
        if !self.portal_companies().await?.contains_key(company) {
            return Err(Failure::Refused(format!(
                "{company} is not a portal company of this instance; register it with `ticketsync partner add-portal {company}`"
            ))
            .into());
        }
        self.portal = Some(InstanceId::parse(company)?);
        Ok(())
    }

    /// Who commands are made by: this instance's user, or a portal company's.
    pub fn command_actor(&self) -> Actor {
        match &self.portal {
            Some(company) => Actor {
                instance: company.clone(),
                user: self.actor.user.clone(),
            },
            None => self.actor.clone(),
        }
    }

    /// Lead: records the transaction fee of every accepted link of ticket `id` whose
    /// partner is a portal company with a fee and that has none yet. Returns how many.
    pub(crate) async fn record_transaction_fees(&self, id: TicketId) -> Result<usize> {
        let portals = self.portal_companies().await?;
        let (Some(t), _) = self.load(id).await? else {
            return Ok(0);
        };
        let system = Actor {
            instance: self.name().clone(),
            user: domain::sync::SYSTEM_USER.into(),
        };
        let mut recorded = 0;
        for l in &t.links {
            let fee = match portals.get(l.partner.as_str()) {
                Some(p) => p.fee()?,
                None => None,
            };
            let Some((amount, currency)) = fee else {
                continue;
            };
            if l.lead != *self.name() || l.accepted_version.is_none() || l.transaction_fee.is_some()
            {
                continue;
            }
            let cmd = Command::RecordTransactionFee {
                link: l.id,
                amount,
                currency,
            };
            if !self.execute_once(&system, id, cmd).await?.is_empty() {
                tracing::info!(ticket = %id, partner = %l.partner, "transaction fee recorded");
                recorded += 1;
            }
        }
        Ok(recorded)
    }
}
