//! Deciding outsourcing commands, and the link moves other commands imply.

use crate::command::{Context, OutsourceCommand};
use crate::error::{invalid, refuse, DomainError};
use crate::event::{Event, LinkChange, Snapshot};
use crate::outsource::{allowed_moves, Link, Move, OutsourceStatus, Side};
use crate::policy::is_complete;
use crate::terms::Terms;
use crate::ticket::Ticket;
use crate::values;

/// The current link and the actor's side of it, or a refusal naming what is allowed.
fn my_link<'t>(
    t: &'t Ticket,
    ctx: Context<'_>,
    action: &str,
) -> Result<(&'t Link, Side), DomainError> {
    let Some(link) = t.current_link() else {
        return Err(refuse(
            action,
            format!("ticket {} is not outsourced", t.id),
            vec!["outsource send".into()],
        ));
    };
    let Some(side) = link.side_of(&ctx.actor.instance) else {
        return Err(refuse(
            action,
            format!(
                "instance {} is neither the lead nor the partner of this link",
                ctx.actor.instance
            ),
            vec![],
        ));
    };
    Ok((link, side))
}

/// Refuses `mv` unless `side` may make it from the link's status.
fn check_move(link: &Link, side: Side, mv: Move) -> Result<(), DomainError> {
    if mv.allowed(side, link.status) {
        return Ok(());
    }
    let state = match mv.owner() {
        Some(owner) if owner != side => format!(
            "only the {owner} may {} (outsource status is {}; you are the {side})",
            mv.verb(),
            link.status
        ),
        _ => format!("outsource status is {} (you are the {side})", link.status),
    };
    Err(refuse(
        format!("outsource {}", mv.verb()),
        state,
        allowed_moves(side, link.status),
    ))
}

fn reason(r: &str) -> Result<String, DomainError> {
    values::text("reason", r, true)
}

fn deadline_passed(link: &Link, ctx: Context<'_>) -> Option<i64> {
    let respond_by = link.terms.last()?.respond_by?;
    (ctx.now > respond_by).then_some(respond_by.0)
}

pub(crate) fn decide_outsource(
    t: &Ticket,
    ctx: Context<'_>,
    cmd: OutsourceCommand,
) -> Result<Vec<Event>, DomainError> {
    if let OutsourceCommand::Send {
        link,
        partner,
        terms,
    } = cmd
    {
        return send(t, ctx, link, partner, terms);
    }
    let (link, side) = my_link(t, ctx, "change the outsourcing")?;
    let (mv, change) = match cmd {
        OutsourceCommand::Send { .. } => unreachable_send(),
        OutsourceCommand::Counter { terms } => (Move::Counter, proposed(terms)?),
        OutsourceCommand::Revise { terms } => (Move::Revise, proposed(terms)?),
        OutsourceCommand::Accept { organization } => {
            let org = values::label("organization", organization.as_deref())?;
            (
                Move::Accept,
                LinkChange::Accepted {
                    terms_version: link.terms.len() as u32,
                    organization: org,
                },
            )
        }
        OutsourceCommand::Decline { reason: r } => (
            Move::Decline,
            LinkChange::Declined {
                reason: reason(&r)?,
            },
        ),
        OutsourceCommand::Cancel => (Move::Cancel, LinkChange::Canceled),
        OutsourceCommand::Expire => (Move::Expire, LinkChange::Expired),
        OutsourceCommand::Complete => (Move::Complete, LinkChange::Completed),
        OutsourceCommand::Approve => (Move::Approve, LinkChange::Approved),
        OutsourceCommand::Reject { reason: r } => (
            Move::Reject,
            LinkChange::Rejected {
                reason: reason(&r)?,
            },
        ),
        OutsourceCommand::ForceComplete => (Move::ForceComplete, LinkChange::ForceCompleted),
    };
    check_move(link, side, mv)?;
    match mv {
        Move::Accept => {
            if let Some(at) = deadline_passed(link, ctx) {
                return Err(refuse(
                    "outsource accept",
                    format!(
                        "outsource status is {} and the respond-by deadline passed at {}",
                        link.status,
                        crate::ids::Timestamp(at)
                    ),
                    vec!["outsource decline".into(), "outsource counter".into()],
                ));
            }
        }
        Move::Expire if deadline_passed(link, ctx).is_none() => {
            return Err(refuse(
                "outsource expire",
                format!(
                    "outsource status is {} and the respond-by deadline has not passed (or the terms set none)",
                    link.status
                ),
                allowed_moves(side, link.status),
            ));
        }
        _ => {}
    }
    Ok(vec![Event::Outsource {
        link: link.id,
        change,
    }])
}

fn unreachable_send() -> (Move, LinkChange) {
    // `decide_outsource` handles Send before taking the current link.
    (Move::Send, LinkChange::Canceled)
}

fn proposed(terms: Terms) -> Result<LinkChange, DomainError> {
    Ok(LinkChange::TermsProposed {
        terms: terms.validated()?,
    })
}

fn send(
    t: &Ticket,
    ctx: Context<'_>,
    link: crate::ids::LinkId,
    partner: crate::ids::InstanceId,
    terms: Terms,
) -> Result<Vec<Event>, DomainError> {
    let me = &ctx.actor.instance;
    if let Some(l) = t.links.iter().find(|l| l.lead != *me) {
        return Err(refuse(
            "outsource send",
            format!(
                "this ticket was outsourced to {me} by {}; only its lead can outsource it",
                l.lead
            ),
            vec![],
        ));
    }
    if let Some(cur) = t.current_link().filter(|l| !l.status.is_ended()) {
        return Err(refuse(
            "outsource send",
            format!(
                "the ticket is already outsourced to {} (outsource status {})",
                cur.partner, cur.status
            ),
            allowed_moves(Side::Lead, cur.status),
        ));
    }
    if partner == *me {
        return Err(invalid(
            "partner",
            "a ticket cannot be outsourced to its own instance",
        ));
    }
    let terms = terms.validated()?;
    if let Some(rb) = terms.respond_by {
        if rb <= ctx.now {
            return Err(invalid("respond by", "the deadline must be in the future"));
        }
    }
    let snapshot = Snapshot {
        title: t.title.clone(),
        description: t.description.clone(),
        customer: t.customer.clone(),
    };
    Ok(vec![Event::Outsource {
        link,
        change: LinkChange::Sent {
            lead: me.clone(),
            partner,
            terms,
            snapshot,
        },
    }])
}

/// Adds the link moves other commands imply: the partner's first work (an item or a
/// status change) on an Accepted link starts it; a ticket status of Complete completes a
/// link that is Accepted, In Progress or Waiting Approval.
pub(crate) fn with_implied_moves(
    t: &Ticket,
    ctx: Context<'_>,
    mut events: Vec<Event>,
) -> Vec<Event> {
    let Some(link) = t.current_link() else {
        return events;
    };
    let Some(side) = link.side_of(&ctx.actor.instance) else {
        return events;
    };
    if side == Side::Partner && link.status == OutsourceStatus::Accepted {
        let work = events.iter().any(|e| {
            matches!(
                e,
                Event::StatusChanged { .. }
                    | Event::NoteAdded { .. }
                    | Event::TimeAdded { .. }
                    | Event::ChargeAdded { .. }
                    | Event::AttachmentAdded { .. }
            )
        });
        if work {
            events.insert(
                0,
                Event::Outsource {
                    link: link.id,
                    change: LinkChange::Started,
                },
            );
        }
    }
    let completes = events
        .iter()
        .any(|e| matches!(e, Event::StatusChanged { to, .. } if is_complete(to)));
    let status_after_start = if events.first().is_some_and(|e| {
        matches!(
            e,
            Event::Outsource {
                change: LinkChange::Started,
                ..
            }
        )
    }) {
        OutsourceStatus::InProgress
    } else {
        link.status
    };
    if completes && Move::CompleteByStatus.allowed(side, status_after_start) {
        events.push(Event::Outsource {
            link: link.id,
            change: LinkChange::CompletedByStatus,
        });
    }
    events
}

/// The ids of the records a lead's ticket gets when a link completes: derived from the
/// link id, so both the command path and the inbound path add them at most once.
pub fn completion_item_ids(link: crate::ids::LinkId) -> (crate::ids::ItemId, crate::ids::ItemId) {
    let base = link.0 .0;
    (
        crate::ids::ItemId(ulid::Ulid(base ^ 0xC057)),
        crate::ids::ItemId(ulid::Ulid(base ^ 0x5077)),
    )
}

/// On the lead's side, when these events complete the current link: the partner's work as
/// one non-billable cost line (the bill's subtotal) and an internal summary note.
pub(crate) fn with_completion_records(
    t: &Ticket,
    ctx: Context<'_>,
    mut events: Vec<Event>,
) -> Vec<Event> {
    // Without a link event the links stay as they are, so unless the current link already
    // waits for its records here, these events cannot need them: skip folding a copy of
    // the ticket (which costs as much as the ticket is long) on every ordinary command.
    let links_change = events.iter().any(|e| matches!(e, Event::Outsource { .. }));
    if !links_change && !awaits_completion_records(t, &ctx.actor.instance) {
        return events;
    }
    let mut after = Some(t.clone());
    for e in &events {
        let meta = crate::event::EventMeta {
            actor: ctx.actor.clone(),
            at: ctx.now,
            link_seq: after.as_ref().map_or(0, Ticket::known),
        };
        after = crate::ticket::evolve(after, t.id, &meta, e);
    }
    if let Some(after) = after {
        events.extend(completion_records(&after, &ctx.actor.instance));
    }
    events
}

/// Whether `me` leads the ticket's current link, it is Complete and the ticket lacks its
/// completion cost line: the precondition of `completion_records` that events other than
/// link events cannot change.
fn awaits_completion_records(t: &Ticket, me: &crate::ids::InstanceId) -> bool {
    t.current_link().is_some_and(|link| {
        link.lead == *me
            && link.status == OutsourceStatus::Complete
            && !t.items.contains_key(&completion_item_ids(link.id).0)
    })
}

/// The cost line and summary note for `me` (when it is the lead of the ticket's current,
/// Complete link), unless the ticket already has them.
pub fn completion_records(after: &Ticket, me: &crate::ids::InstanceId) -> Vec<Event> {
    let Some(link) = after.current_link() else {
        return vec![];
    };
    if link.lead != *me || link.status != OutsourceStatus::Complete {
        return vec![];
    }
    let (cost_id, note_id) = completion_item_ids(link.id);
    if after.items.contains_key(&cost_id) {
        return vec![];
    }
    let Some(bill) = crate::billing::bill(after, link.id) else {
        return vec![];
    };
    let worked: rust_decimal::Decimal = bill.lines.iter().map(|l| l.hours).sum();
    let offset: rust_decimal::Decimal = bill.lines.iter().map(|l| l.offset_hours).sum();
    let entries = bill
        .lines
        .iter()
        .filter(|l| l.kind == crate::billing::LineKind::Time)
        .count();
    let mut summary = format!(
        "Outsourced work by {} is complete: {entries} time entries, {} h worked",
        link.partner,
        worked.normalize()
    );
    if !offset.is_zero() {
        summary.push_str(&format!(", {} h offset", offset.normalize()));
    }
    summary.push_str(&format!(
        ", {} h billable; charges {} {}; total {} {} (terms version {}).",
        bill.billable_hours.normalize(),
        bill.charges,
        bill.currency,
        bill.subtotal,
        bill.currency,
        bill.terms_version
    ));
    if bill.over_authorized_hours || bill.over_authorized_charge {
        summary.push_str(" Over the authorized amount.");
    }
    vec![
        Event::ChargeAdded {
            item: cost_id,
            charge: crate::values::Charge {
                description: format!("Outsourced to {} ({})", link.partner, bill.currency),
                quantity: rust_decimal::Decimal::ONE,
                unit_cost: bill.subtotal,
                unit_price: rust_decimal::Decimal::ZERO,
                billable: false,
            },
        },
        Event::NoteAdded {
            item: note_id,
            text: summary,
            internal: true,
        },
    ]
}

/// Link `link` of `t`, or a refusal of `action` naming the ticket.
fn link_of<'t>(
    t: &'t Ticket,
    link: crate::ids::LinkId,
    action: &str,
) -> Result<&'t Link, DomainError> {
    t.link(link).ok_or_else(|| {
        refuse(
            action.to_string(),
            format!("ticket {} has no link {link}", t.id),
            vec![],
        )
    })
}

/// Service partner: the invoice of a completed link, numbered `number`. Issuing the same
/// number again is a no-op (the caller retries after a crash); another number is refused,
/// as is an invoice from the lead or for a link that did not complete after acceptance.
pub fn issue_invoice(
    t: &Ticket,
    ctx: Context<'_>,
    link: crate::ids::LinkId,
    number: u64,
) -> Result<Vec<Event>, DomainError> {
    let action = format!("issue invoice {number}");
    let l = link_of(t, link, &action)?;
    if ctx.actor.instance != l.partner {
        return Err(refuse(
            action,
            format!(
                "only the service partner ({}) issues the invoice of link {link}",
                l.partner
            ),
            vec![],
        ));
    }
    if number == 0 {
        return Err(invalid("invoice number", "invoice numbers start at 1"));
    }
    if let Some(i) = &l.invoice {
        if i.number == number {
            return Ok(vec![]);
        }
        return Err(refuse(
            action,
            format!("link {link} was already invoiced as number {}", i.number),
            vec![],
        ));
    }
    let bill = match crate::billing::bill(t, link) {
        Some(b) if l.status == OutsourceStatus::Complete => b,
        _ => {
            return Err(refuse(
                action,
                format!(
                    "outsource status is {}{}",
                    l.status,
                    if l.accepted_version.is_none() {
                        ", never accepted"
                    } else {
                        ""
                    }
                ),
                vec!["issue the invoice once the link is Complete after acceptance".into()],
            ))
        }
    };
    Ok(vec![Event::InvoiceIssued {
        link,
        invoice: crate::billing::IssuedInvoice::of(&bill, number),
    }])
}

/// Lead: the transaction fee of the acceptance of `link` (by a portal company; which
/// partners are portal companies, and their fee, is the caller's configuration). Once per
/// link, since a link is accepted at most once: the same fee again is a no-op, another is
/// refused, as is a fee before acceptance or from the partner.
pub fn record_transaction_fee(
    t: &Ticket,
    ctx: Context<'_>,
    link: crate::ids::LinkId,
    amount: rust_decimal::Decimal,
    currency: crate::terms::Currency,
) -> Result<Vec<Event>, DomainError> {
    let action = format!("record a transaction fee of {amount} {currency}");
    let l = link_of(t, link, &action)?;
    if ctx.actor.instance != l.lead {
        return Err(refuse(
            action,
            format!("only the lead ({}) records transaction fees", l.lead),
            vec![],
        ));
    }
    let amount = values::money("transaction fee", amount)?;
    if amount.scale() > currency.minor_units() {
        return Err(invalid(
            "transaction fee",
            format!(
                "{amount} has more decimal places than {currency} has ({})",
                currency.minor_units()
            ),
        ));
    }
    let fee = crate::billing::TransactionFee { amount, currency };
    if let Some(had) = &l.transaction_fee {
        if *had == fee {
            return Ok(vec![]);
        }
        return Err(refuse(
            action,
            format!(
                "the acceptance of link {link} already carries a fee of {} {}",
                had.amount, had.currency
            ),
            vec![],
        ));
    }
    if l.accepted_version.is_none() {
        return Err(refuse(
            action,
            format!("outsource status is {}, never accepted", l.status),
            vec!["record the fee once the partner has accepted".into()],
        ));
    }
    Ok(vec![Event::TransactionFeeRecorded { link, fee }])
}
