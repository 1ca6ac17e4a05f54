//! Commands and `decide`: the rules that turn an intent into events, or refuse it.

use chrono::NaiveDate;
use rust_decimal::Decimal;

use crate::error::{refuse, DomainError};
use crate::event::Event;
use crate::ids::{Actor, InstanceId, ItemId, LinkId, TicketId, Timestamp};
use crate::policy::Policy;
use crate::terms::Terms;
use crate::ticket::{Item, ItemBody, ItemKind, Ticket};
use crate::values::{self, Attachment, Charge, TimeEntry};

/// What a user asks for. New ids (ticket, item) are chosen by the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    CreateTicket {
        title: String,
        description: String,
        customer: Option<String>,
    },
    ChangeStatus {
        status: String,
    },
    AddNote {
        item: ItemId,
        text: String,
        internal: bool,
    },
    EditNote {
        item: ItemId,
        text: Option<String>,
        internal: Option<bool>,
    },
    AddTime {
        item: ItemId,
        entry: TimeEntry,
    },
    EditTime {
        item: ItemId,
        patch: TimePatch,
    },
    AddCharge {
        item: ItemId,
        charge: Charge,
    },
    EditCharge {
        item: ItemId,
        patch: ChargePatch,
    },
    AddAttachment {
        item: ItemId,
        attachment: Attachment,
    },
    /// A move of the outsourcing workflow.
    Outsource(OutsourceCommand),
    DeleteItem {
        item: ItemId,
        kind: ItemKind,
    },
    /// Service partner: issue the invoice of completed link `link` under `number`, the
    /// next number of the partner's own sequence (assigned by its caller, which keeps
    /// the sequence across tickets).
    IssueInvoice {
        link: LinkId,
        number: u64,
    },
    /// Lead: record the transaction fee of a portal company's acceptance of `link`.
    RecordTransactionFee {
        link: LinkId,
        amount: Decimal,
        currency: crate::terms::Currency,
    },
}

/// The outsourcing workflow's commands; each is allowed only to the side that owns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutsourceCommand {
    /// Lead: send the ticket to `partner` with terms.
    Send {
        link: LinkId,
        partner: InstanceId,
        terms: Terms,
    },
    /// Partner: counter-offer terms while Assigned.
    Counter {
        terms: Terms,
    },
    /// Lead: revise the terms while Assigned.
    Revise {
        terms: Terms,
    },
    /// Partner: accept the latest terms.
    Accept {
        organization: Option<String>,
    },
    Decline {
        reason: String,
    },
    Cancel,
    /// Lead's instance: the respond-by deadline passed unanswered.
    Expire,
    /// Partner: insource complete.
    Complete,
    Approve,
    Reject {
        reason: String,
    },
    ForceComplete,
}

/// The fields of a time entry to change; `None` keeps the current value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimePatch {
    pub hours: Option<Decimal>,
    pub offset_hours: Option<Decimal>,
    pub resource: Option<String>,
    /// `Some(None)` clears the role.
    pub role: Option<Option<String>>,
    pub summary: Option<String>,
    pub date: Option<NaiveDate>,
    pub billable: Option<bool>,
}

/// The fields of a charge to change; `None` keeps the current value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChargePatch {
    pub description: Option<String>,
    pub quantity: Option<Decimal>,
    pub unit_cost: Option<Decimal>,
    pub unit_price: Option<Decimal>,
    pub billable: Option<bool>,
}

/// Who is asking and under which instance policy.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    pub actor: &'a Actor,
    pub policy: &'a Policy,
    /// The caller's clock, for deadlines (the domain never reads one).
    pub now: Timestamp,
}

/// Decides a command against the current state of ticket `id` (`None`: it does not exist yet).
/// Returns the events to append (possibly none, for an edit that changes nothing) or why not.
/// Besides the command's own events this adds the link moves the workflow implies: a
/// partner's first work on an accepted ticket starts it, and a ticket status of Complete
/// completes its live link.
pub fn decide(
    state: Option<&Ticket>,
    id: TicketId,
    ctx: Context<'_>,
    cmd: Command,
) -> Result<Vec<Event>, DomainError> {
    if let Command::IssueInvoice { link, number } = cmd {
        let t = state.ok_or(DomainError::TicketNotFound(id))?;
        return crate::workflow::issue_invoice(t, ctx, link, number);
    }
    if let Command::RecordTransactionFee {
        link,
        amount,
        currency,
    } = cmd
    {
        let t = state.ok_or(DomainError::TicketNotFound(id))?;
        return crate::workflow::record_transaction_fee(t, ctx, link, amount, currency);
    }
    if let Command::Outsource(oc) = cmd {
        let t = state.ok_or(DomainError::TicketNotFound(id))?;
        let events = crate::workflow::decide_outsource(t, ctx, oc)?;
        return Ok(crate::workflow::with_completion_records(t, ctx, events));
    }
    let events = decide_ticket(state, id, ctx, cmd)?;
    Ok(match state {
        Some(t) if !events.is_empty() => {
            let events = crate::workflow::with_implied_moves(t, ctx, events);
            crate::workflow::with_completion_records(t, ctx, events)
        }
        _ => events,
    })
}

fn decide_ticket(
    state: Option<&Ticket>,
    id: TicketId,
    ctx: Context<'_>,
    cmd: Command,
) -> Result<Vec<Event>, DomainError> {
    let Some(t) = state else {
        return match cmd {
            Command::CreateTicket {
                title,
                description,
                customer,
            } => Ok(vec![Event::TicketCreated {
                title: values::title("title", &title)?,
                description: values::text("description", &description, false)?,
                customer: values::label("customer", customer.as_deref())?,
                status: ctx.policy.statuses.initial().to_string(),
            }]),
            _ => Err(DomainError::TicketNotFound(id)),
        };
    };
    match cmd {
        Command::CreateTicket { .. } => Err(refuse(
            "create ticket",
            format!("ticket {id} already exists"),
            vec![],
        )),
        // Answered by `decide` before it gets here.
        Command::Outsource(oc) => crate::workflow::decide_outsource(t, ctx, oc),
        Command::IssueInvoice { link, number } => {
            crate::workflow::issue_invoice(t, ctx, link, number)
        }
        Command::RecordTransactionFee {
            link,
            amount,
            currency,
        } => crate::workflow::record_transaction_fee(t, ctx, link, amount, currency),
        Command::ChangeStatus { status } => change_status(t, ctx.policy, &status),
        Command::AddNote {
            item,
            text,
            internal,
        } => {
            fresh_item(t, item)?;
            Ok(vec![Event::NoteAdded {
                item,
                text: values::text("note", &text, true)?,
                internal,
            }])
        }
        Command::AddTime { item, entry } => {
            fresh_item(t, item)?;
            Ok(vec![Event::TimeAdded {
                item,
                entry: entry.validated()?,
            }])
        }
        Command::AddCharge { item, charge } => {
            fresh_item(t, item)?;
            Ok(vec![Event::ChargeAdded {
                item,
                charge: charge.validated()?,
            }])
        }
        Command::AddAttachment { item, attachment } => {
            fresh_item(t, item)?;
            let attachment = attachment.validated(ctx.policy.max_attachment_bytes)?;
            Ok(vec![Event::AttachmentAdded { item, attachment }])
        }
        Command::EditNote {
            item,
            text,
            internal,
        } => {
            let i = editable(t, ctx.actor, item, ItemKind::Note, "edit")?;
            let ItemBody::Note {
                text: cur_text,
                internal: cur_internal,
            } = &i.body
            else {
                return Err(wrong_kind(i, ItemKind::Note, "edit"));
            };
            let (cur_text, cur_internal) = (cur_text.clone(), *cur_internal);
            let text = match text {
                Some(s) => values::text("note", &s, true)?,
                None => cur_text.clone(),
            };
            let internal = internal.unwrap_or(cur_internal);
            if internal != cur_internal && !t.links.is_empty() {
                // Flipping the flag would make one side hold as shared what the other never
                // got (or keep what should have been withdrawn).
                return Err(refuse(
                    format!(
                        "make note {item} {}",
                        if internal { "internal" } else { "shared" }
                    ),
                    format!(
                        "the ticket is outsourced and the note is {}; its internal flag is fixed",
                        t.sharing(i).name()
                    ),
                    vec!["note edit --text".into(), "note delete".into()],
                ));
            }
            if text == cur_text && internal == cur_internal {
                return Ok(vec![]);
            }
            Ok(vec![Event::NoteEdited {
                item,
                text,
                internal,
            }])
        }
        Command::EditTime { item, patch } => {
            let i = editable(t, ctx.actor, item, ItemKind::Time, "edit")?;
            let ItemBody::Time(cur) = &i.body else {
                return Err(wrong_kind(i, ItemKind::Time, "edit"));
            };
            let cur = cur.clone();
            let entry = TimeEntry {
                hours: patch.hours.unwrap_or(cur.hours),
                offset_hours: patch.offset_hours.unwrap_or(cur.offset_hours),
                resource: patch.resource.unwrap_or_else(|| cur.resource.clone()),
                role: patch.role.unwrap_or_else(|| cur.role.clone()),
                summary: patch.summary.unwrap_or_else(|| cur.summary.clone()),
                date: patch.date.unwrap_or(cur.date),
                billable: patch.billable.unwrap_or(cur.billable),
            }
            .validated()?;
            if entry == cur {
                return Ok(vec![]);
            }
            Ok(vec![Event::TimeEdited { item, entry }])
        }
        Command::EditCharge { item, patch } => {
            let i = editable(t, ctx.actor, item, ItemKind::Charge, "edit")?;
            let ItemBody::Charge(cur) = &i.body else {
                return Err(wrong_kind(i, ItemKind::Charge, "edit"));
            };
            let cur = cur.clone();
            let charge = Charge {
                description: patch.description.unwrap_or_else(|| cur.description.clone()),
                quantity: patch.quantity.unwrap_or(cur.quantity),
                unit_cost: patch.unit_cost.unwrap_or(cur.unit_cost),
                unit_price: patch.unit_price.unwrap_or(cur.unit_price),
                billable: patch.billable.unwrap_or(cur.billable),
            }
            .validated()?;
            if charge == cur {
                return Ok(vec![]);
            }
            Ok(vec![Event::ChargeEdited { item, charge }])
        }
        Command::DeleteItem { item, kind } => {
            editable(t, ctx.actor, item, kind, "delete")?;
            Ok(vec![Event::ItemDeleted { item, kind }])
        }
    }
}

fn change_status(t: &Ticket, policy: &Policy, wanted: &str) -> Result<Vec<Event>, DomainError> {
    let others: Vec<String> = policy
        .statuses
        .names()
        .iter()
        .filter(|s| **s != t.status)
        .cloned()
        .collect();
    let Some(to) = policy.statuses.find(wanted) else {
        return Err(refuse(
            format!("change status to {wanted:?}"),
            format!(
                "{wanted:?} is not a configured status (ticket status is {})",
                t.status
            ),
            others,
        ));
    };
    if to == t.status {
        return Err(refuse(
            format!("change status to {to}"),
            format!("ticket status is already {to}"),
            others,
        ));
    }
    Ok(vec![Event::StatusChanged {
        from: t.status.clone(),
        to: to.to_string(),
    }])
}

fn fresh_item(t: &Ticket, item: ItemId) -> Result<(), DomainError> {
    match t.items.get(&item) {
        None => Ok(()),
        Some(i) => Err(refuse(
            format!("add item {item}"),
            format!("{} {item} already exists on ticket {}", i.body.kind(), t.id),
            vec![],
        )),
    }
}

/// Finds an item the actor may edit or delete. Items authored on this instance may be
/// changed only by their author; items from another instance may be changed locally
/// (the change stays on this side and marks the item diverged).
fn editable<'t>(
    t: &'t Ticket,
    actor: &Actor,
    item: ItemId,
    kind: ItemKind,
    verb: &str,
) -> Result<&'t Item, DomainError> {
    let i = t
        .items
        .get(&item)
        .ok_or(DomainError::ItemNotFound { ticket: t.id, item })?;
    let action = format!("{verb} {kind} {item}");
    if i.body.kind() != kind {
        return Err(wrong_kind(i, kind, verb));
    }
    if i.deleted {
        return Err(refuse(action, format!("{kind} {item} is deleted"), vec![]));
    }
    if i.author.instance == actor.instance && i.author.user != actor.user {
        return Err(refuse(
            action,
            format!(
                "{kind} {item} was added by {}, and only its author may change it",
                i.author
            ),
            vec![format!("{verb} by {}", i.author)],
        ));
    }
    Ok(i)
}

fn wrong_kind(i: &Item, wanted: ItemKind, verb: &str) -> DomainError {
    let k = i.body.kind().name().split(' ').next().unwrap_or("item");
    refuse(
        format!("{verb} {wanted} {}", i.id),
        format!("item {} is a {}, not a {wanted}", i.id, i.body.kind()),
        vec![format!("{k} edit"), format!("{k} delete")],
    )
}
