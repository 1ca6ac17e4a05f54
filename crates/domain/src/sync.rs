//! The sync rules: which locally decided events go to the link's counterparty, and how
//! an event received from a partner is checked (or refused, to be quarantined) and
//! turned into the events this instance records.

use std::fmt;

use crate::event::{Event, EventMeta, LinkChange};
use crate::ids::{Actor, InstanceId};
use crate::outsource::Side;
use crate::policy::Policy;
use crate::ticket::{ItemKind, Sharing, Ticket};
use crate::values::TimeEntry;

/// The user recorded for events an instance authors by itself (insourcing, expiry).
pub const SYSTEM_USER: &str = "ticketsync";

/// Which instance, if any, an event goes to. `before` is the ticket as its author saw it
/// just before the event (after any earlier events of the same command); the event's
/// `link_seq` is `before.known()`.
pub fn route(before: &Ticket, author: &InstanceId, ev: &Event) -> Option<InstanceId> {
    if let Event::Outsource { link, change } = ev {
        if let LinkChange::Sent { partner, .. } = change {
            return Some(partner.clone());
        }
        let l = before.link(*link)?;
        let side = l.side_of(author)?;
        return Some(l.counterparty(side).clone());
    }
    if let Event::InvoiceIssued { link, .. } = ev {
        // The invoice goes to the lead after the link has ended: it is the one thing
        // that crosses once sync is over.
        let l = before.link(*link)?;
        return (l.partner == *author).then(|| l.lead.clone());
    }
    let link = before.current_link()?;
    let side = link.side_of(author)?;
    let to = link.counterparty(side).clone();
    let live = before.live_at(before.known());
    match ev {
        Event::TicketCreated { .. }
        | Event::StatusChanged { .. }
        | Event::Outsource { .. }
        | Event::InvoiceIssued { .. }
        | Event::TransactionFeeRecorded { .. } => None,
        Event::NoteAdded { internal, .. } => (live && !internal).then_some(to),
        Event::AttachmentAdded { attachment, .. } => (live && !attachment.internal).then_some(to),
        Event::TimeAdded { .. } | Event::ChargeAdded { .. } => live.then_some(to),
        Event::NoteEdited { internal: true, .. } => None,
        Event::NoteEdited { item, .. }
        | Event::TimeEdited { item, .. }
        | Event::ChargeEdited { item, .. }
        | Event::ItemDeleted { item, .. } => {
            let i = before.items.get(item)?;
            // Only items shared on this very link: an item shared with an earlier partner
            // must not reach the current one.
            let same_link = before.link_at(i.link_seq).is_some_and(|l| l.id == link.id);
            (live
                && same_link
                && i.author.instance == *author
                && before.sharing(i) == Sharing::Shared)
                .then_some(to)
        }
    }
}

/// Why a received event is refused. Every refusal is quarantined: recorded with its
/// reason, counted, acknowledged, and never applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quarantine {
    pub kind: QuarantineKind,
    pub detail: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QuarantineKind {
    /// Authored by another instance than the channel's sender.
    WrongSender,
    /// Meant for another instance.
    WrongReceiver,
    /// About a ticket not linked to the sender.
    NotLinked,
    /// A move the sender's side may not make (a partner approving, a lead accepting).
    RoleForbidden,
    /// An internal item: it should never have left its instance.
    Internal,
    /// An edit or delete of an item the sender did not author.
    NotAuthor,
    /// An edit or delete of an item this instance does not have.
    UnknownItem,
    /// An event type that never crosses between instances (ticket creation, status).
    NotReplicable,
    /// A second, different invoice for a link that already has one.
    InvoiceConflict,
}

impl QuarantineKind {
    /// A stable snake_case name, used by `sync quarantine`.
    pub fn name(self) -> &'static str {
        match self {
            QuarantineKind::WrongSender => "wrong_sender",
            QuarantineKind::WrongReceiver => "wrong_receiver",
            QuarantineKind::NotLinked => "not_linked",
            QuarantineKind::RoleForbidden => "role_forbidden",
            QuarantineKind::Internal => "internal_item",
            QuarantineKind::NotAuthor => "not_author",
            QuarantineKind::UnknownItem => "unknown_item",
            QuarantineKind::NotReplicable => "not_replicable",
            QuarantineKind::InvoiceConflict => "invoice_conflict",
        }
    }
}

impl fmt::Display for Quarantine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.name(), self.detail)
    }
}

fn q(kind: QuarantineKind, detail: impl Into<String>) -> Quarantine {
    Quarantine {
        kind,
        detail: detail.into(),
    }
}

/// One event to record for a received one: the remote event itself (possibly turned into
/// its local form, keeping its id and author), or an event this instance authors itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    Remote(Event),
    Local(Event),
}

/// Checks an event that `from` sent about ticket `t` and returns what to record. The
/// lead's time arrives at the partner as a note (it is not the partner's to bill), and the
/// partner's notes arrive at the lead internal-only (never shown to the lead's customer).
pub fn receive(
    state: Option<&Ticket>,
    me: &InstanceId,
    from: &InstanceId,
    meta: &EventMeta,
    ev: Event,
    policy: &Policy,
) -> Result<Vec<Incoming>, Quarantine> {
    if meta.actor.instance != *from {
        return Err(q(
            QuarantineKind::WrongSender,
            format!("authored by {} but sent by {from}", meta.actor.instance),
        ));
    }
    if let Event::Outsource {
        link,
        change:
            LinkChange::Sent {
                lead,
                partner,
                snapshot,
                ..
            },
    } = &ev
    {
        if partner != me {
            return Err(q(
                QuarantineKind::WrongReceiver,
                format!("sent to {partner}, received by {me}"),
            ));
        }
        if lead != from {
            return Err(q(
                QuarantineKind::WrongSender,
                format!("names {lead} as lead but sent by {from}"),
            ));
        }
        return match state {
            None => Ok(vec![
                Incoming::Local(Event::TicketCreated {
                    title: snapshot.title.clone(),
                    description: snapshot.description.clone(),
                    customer: snapshot.customer.clone(),
                    status: policy.statuses.initial().to_string(),
                }),
                Incoming::Remote(ev),
            ]),
            Some(t) if t.link(*link).is_some() => Ok(vec![Incoming::Remote(ev)]),
            Some(t)
                if t.links
                    .iter()
                    .all(|l| l.lead == *from && l.partner == *me && l.status.is_ended())
                    && !t.links.is_empty() =>
            {
                Ok(vec![Incoming::Remote(ev)])
            }
            Some(t) => Err(q(
                QuarantineKind::NotLinked,
                format!(
                    "ticket {} exists here and is not an ended link from {from}",
                    t.id
                ),
            )),
        };
    }
    let Some(t) = state else {
        return Err(q(
            QuarantineKind::NotLinked,
            "the ticket does not exist here",
        ));
    };
    if let Event::Outsource { link, change } = &ev {
        let Some(l) = t.link(*link) else {
            return Err(q(
                QuarantineKind::NotLinked,
                format!("link {link} does not exist on ticket {}", t.id),
            ));
        };
        let (Some(their), Some(_)) = (l.side_of(from), l.side_of(me)) else {
            return Err(q(
                QuarantineKind::NotLinked,
                format!("link {link} is not between {from} and {me}"),
            ));
        };
        let mv = change.mv(their);
        if mv.owner().is_some_and(|o| o != their) {
            return Err(q(
                QuarantineKind::RoleForbidden,
                format!(
                    "the {their} ({from}) may not {} (only the {})",
                    mv.verb(),
                    their.other()
                ),
            ));
        }
        // A completion arriving from the partner: the lead records the partner's work.
        let after = crate::ticket::evolve(Some(t.clone()), t.id, meta, &ev);
        let mut out = vec![Incoming::Remote(ev)];
        if let Some(after) = after {
            out.extend(
                crate::workflow::completion_records(&after, me)
                    .into_iter()
                    .map(Incoming::Local),
            );
        }
        return Ok(out);
    }
    if let Event::InvoiceIssued { link, invoice } = &ev {
        let Some(l) = t.link(*link) else {
            return Err(q(
                QuarantineKind::NotLinked,
                format!("link {link} does not exist on ticket {}", t.id),
            ));
        };
        if l.side_of(me).is_none() || l.side_of(from).is_none() {
            return Err(q(
                QuarantineKind::NotLinked,
                format!("link {link} is not between {from} and {me}"),
            ));
        }
        if l.partner != *from {
            return Err(q(
                QuarantineKind::RoleForbidden,
                format!("the lead ({from}) may not issue the partner's invoice"),
            ));
        }
        if let Some(had) = &l.invoice {
            if had != invoice {
                return Err(q(
                    QuarantineKind::InvoiceConflict,
                    format!(
                        "link {link} was already invoiced as number {}, now number {}",
                        had.number, invoice.number
                    ),
                ));
            }
        }
        // Recorded as stated, even when it disagrees with this instance's own bill:
        // `verify` and `invoice show` report the difference; dropping it would hide it.
        return Ok(vec![Incoming::Remote(ev)]);
    }
    let Some(link) = t.current_link() else {
        return Err(q(
            QuarantineKind::NotLinked,
            format!("ticket {} is not outsourced", t.id),
        ));
    };
    let (Some(their), Some(_)) = (link.side_of(from), link.side_of(me)) else {
        return Err(q(
            QuarantineKind::NotLinked,
            format!("ticket {} is not linked to {from}", t.id),
        ));
    };
    let check_author = |item: &crate::ids::ItemId| -> Result<ItemKind, Quarantine> {
        let i = t.items.get(item).ok_or_else(|| {
            q(
                QuarantineKind::UnknownItem,
                format!("item {item} is unknown here"),
            )
        })?;
        if i.author.instance != *from {
            return Err(q(
                QuarantineKind::NotAuthor,
                format!("item {item} was authored by {}", i.author.instance),
            ));
        }
        Ok(i.body.kind())
    };
    let lead_time_as_note = their == Side::Lead;
    let out = match ev {
        Event::TicketCreated { .. }
        | Event::StatusChanged { .. }
        | Event::TransactionFeeRecorded { .. } => {
            return Err(q(
                QuarantineKind::NotReplicable,
                format!("{} never crosses instances", ev.type_name()),
            ))
        }
        Event::NoteAdded { internal: true, .. } | Event::AttachmentAdded { .. }
            if is_internal(&ev) =>
        {
            return Err(q(
                QuarantineKind::Internal,
                "an internal item left its instance",
            ));
        }
        Event::NoteEdited { internal: true, .. } => {
            return Err(q(
                QuarantineKind::Internal,
                "an internal item left its instance",
            ));
        }
        Event::NoteAdded { item, text, .. } => Event::NoteAdded {
            item,
            text,
            internal: their == Side::Partner,
        },
        Event::NoteEdited { item, text, .. } => {
            check_author(&item)?;
            Event::NoteEdited {
                item,
                text,
                internal: their == Side::Partner,
            }
        }
        Event::TimeAdded { item, entry } if lead_time_as_note => Event::NoteAdded {
            item,
            text: time_as_note(&meta.actor, &entry),
            internal: false,
        },
        Event::TimeEdited { item, entry } if lead_time_as_note => {
            check_author(&item)?;
            Event::NoteEdited {
                item,
                text: time_as_note(&meta.actor, &entry),
                internal: false,
            }
        }
        Event::TimeEdited { item, entry } => {
            check_author(&item)?;
            Event::TimeEdited { item, entry }
        }
        Event::ChargeEdited { item, charge } => {
            check_author(&item)?;
            Event::ChargeEdited { item, charge }
        }
        Event::ItemDeleted { item, .. } => {
            let kind = check_author(&item)?;
            Event::ItemDeleted { item, kind }
        }
        other => other,
    };
    Ok(vec![Incoming::Remote(out)])
}

fn is_internal(ev: &Event) -> bool {
    match ev {
        Event::NoteAdded { internal, .. } | Event::NoteEdited { internal, .. } => *internal,
        Event::AttachmentAdded { attachment, .. } => attachment.internal,
        _ => false,
    }
}

/// The note a lead's time entry becomes on the partner's side.
pub fn time_as_note(author: &Actor, e: &TimeEntry) -> String {
    let mut s = format!("Time logged by {author}: {} h on {}", e.hours, e.date);
    if let Some(r) = &e.role {
        s.push_str(&format!(" ({r})"));
    }
    if !e.summary.is_empty() {
        s.push_str(": ");
        s.push_str(&e.summary);
    }
    s
}
