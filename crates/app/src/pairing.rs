//! Pairing with partners: the lead's invitation (a code with the pair's secret and an
//! expiry), the partner's join (which queues a hello on its channel to the lead), and the
//! lead completing the pairing when that hello arrives.

use anyhow::Result;
use rand::RngCore;
use ticketsync_domain::InstanceId;
use ticketsync_store::{Outgoing, Partner, PartnerState};
use ticketsync_wire::channel::{ChannelBody, Invitation};

use crate::{now_ms, Failure, Instance};

/// Default lifetime of an invitation: 7 days.
pub const DEFAULT_INVITE_TTL_MS: i64 = 7 * 24 * 3600 * 1000;
/// Longest lifetime an invitation may be given: 90 days.
pub const MAX_INVITE_TTL_MS: i64 = 90 * 24 * 3600 * 1000;

/// Parses a duration such as `30m`, `12h`, `7d`, `90s` into milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<i64, Failure> {
    let t = s.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| Failure::Usage(format!("bad duration {s:?}; use e.g. 30m, 12h, 7d")))?;
    let ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(Failure::Usage(format!(
                "bad duration {s:?}; the unit is s, m, h or d"
            )))
        }
    };
    if n <= 0 {
        return Err(Failure::Usage(format!("duration {s:?} must be positive")));
    }
    n.checked_mul(ms)
        .ok_or_else(|| Failure::Usage(format!("duration {s:?} is too long")))
}

impl Instance {
    /// Lead: invites `name` to pair; returns the invitation code. Inviting again replaces
    /// an unused invitation; a paired partner cannot be invited again.
    pub async fn invite(&self, name: &str, ttl_ms: i64) -> Result<String> {
        let partner = InstanceId::parse(name)?;
        if partner == *self.name() {
            return Err(Failure::Usage("an instance cannot partner with itself".into()).into());
        }
        if ttl_ms > MAX_INVITE_TTL_MS {
            return Err(Failure::Usage("an invitation may last at most 90d".into()).into());
        }
        if let Some(p) = self.store.get_partner(name).await? {
            if p.state == PartnerState::Paired {
                return Err(Failure::Refused(format!(
                    "{name} is already paired with this instance"
                ))
                .into());
            }
        }
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let now = now_ms();
        let inv = Invitation {
            lead: self.name().to_string(),
            partner: partner.to_string(),
            secret,
            expires_at: now + ttl_ms,
        };
        self.store
            .put_partner(&Partner {
                name: partner.to_string(),
                state: PartnerState::Invited,
                secret,
                created_at: now,
                expires_at: Some(inv.expires_at),
                paired_at: None,
                organization: None,
            })
            .await?;
        Ok(inv.code())
    }

    /// Partner: joins with a lead's invitation code. Records the lead as paired and queues
    /// a hello on the channel to it; the lead's daemon completes the pairing on receipt.
    pub async fn join(&self, code: &str, organization: Option<String>) -> Result<String> {
        let inv = Invitation::parse(code).map_err(Failure::Usage)?;
        if inv.partner != self.name().as_str() {
            return Err(Failure::Refused(format!(
                "this invitation is for instance {:?}; this is {:?}",
                inv.partner,
                self.name().as_str()
            ))
            .into());
        }
        let lead = InstanceId::parse(&inv.lead).map_err(|e| Failure::Usage(e.to_string()))?;
        let now = now_ms();
        if now > inv.expires_at {
            return Err(Failure::Refused(format!(
                "the invitation from {lead} expired at {}; ask for a new one",
                ticketsync_domain::Timestamp(inv.expires_at)
            ))
            .into());
        }
        if let Some(p) = self.store.get_partner(lead.as_str()).await? {
            if p.state == PartnerState::Paired && p.secret == inv.secret {
                return Ok(lead.to_string());
            }
            if p.state == PartnerState::Paired {
                return Err(Failure::Refused(format!(
                    "already paired with {lead} (with another invitation)"
                ))
                .into());
            }
        }
        let organization = organization
            .map(|o| o.trim().to_string())
            .filter(|o| !o.is_empty());
        self.store
            .put_partner(&Partner {
                name: lead.to_string(),
                state: PartnerState::Paired,
                secret: inv.secret,
                created_at: now,
                expires_at: None,
                paired_at: Some(now),
                organization: organization.clone(),
            })
            .await?;
        let hello = Outgoing {
            from: self.name().to_string(),
            to: lead.to_string(),
            event_id: None,
            body: ChannelBody::Hello { organization }.encode(),
        };
        self.store.append_routed(now, vec![], vec![hello]).await?;
        Ok(lead.to_string())
    }
}
