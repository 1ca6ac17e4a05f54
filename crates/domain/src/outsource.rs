//! The outsourcing workflow: link statuses, who may move them, and the deterministic
//! resolution of concurrent transitions from both sides.
//!
//! Each transition event records `seq`, the number of transitions of the link its author
//! knew when deciding. The outsource status is the fold of every known transition sorted by
//! `(seq, side)` with the lead first, skipping any transition that is not allowed at that
//! point. Both instances eventually hold the same set of transitions, so both compute the
//! same status whatever order the events arrived in: when a lead's cancel and a partner's
//! accept race (both at the same `seq`), the cancel is applied first and the accept is
//! superseded; a force-complete racing a counter-offer likewise wins.

use std::fmt;

use crate::event::{EventMeta, LinkChange};
use crate::ids::{InstanceId, LinkId};
use crate::terms::Terms;

/// Which end of a link an instance is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    /// The instance that outsourced the ticket. Ordered first: it wins ties.
    Lead,
    /// The instance that works it.
    Partner,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Lead => "lead",
            Side::Partner => "partner",
        }
    }
    pub fn other(self) -> Side {
        match self {
            Side::Lead => Side::Partner,
            Side::Partner => Side::Lead,
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OutsourceStatus {
    Unsent,
    Assigned,
    Accepted,
    InProgress,
    WaitingApproval,
    Complete,
    Declined,
    Canceled,
    Expired,
}

impl OutsourceStatus {
    pub const ALL: [OutsourceStatus; 9] = [
        OutsourceStatus::Unsent,
        OutsourceStatus::Assigned,
        OutsourceStatus::Accepted,
        OutsourceStatus::InProgress,
        OutsourceStatus::WaitingApproval,
        OutsourceStatus::Complete,
        OutsourceStatus::Declined,
        OutsourceStatus::Canceled,
        OutsourceStatus::Expired,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OutsourceStatus::Unsent => "Unsent",
            OutsourceStatus::Assigned => "Assigned",
            OutsourceStatus::Accepted => "Accepted",
            OutsourceStatus::InProgress => "In Progress",
            OutsourceStatus::WaitingApproval => "Waiting Approval",
            OutsourceStatus::Complete => "Complete",
            OutsourceStatus::Declined => "Declined",
            OutsourceStatus::Canceled => "Canceled",
            OutsourceStatus::Expired => "Expired",
        }
    }

    /// Items sync only while the link is live.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            OutsourceStatus::Accepted | OutsourceStatus::InProgress
        )
    }

    /// An ended link can be followed by a new one (the ticket may be outsourced again).
    pub fn is_ended(self) -> bool {
        matches!(
            self,
            OutsourceStatus::Complete
                | OutsourceStatus::Declined
                | OutsourceStatus::Canceled
                | OutsourceStatus::Expired
        )
    }
}

impl fmt::Display for OutsourceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A move of the outsource status (what a transition event does, without its payload).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Move {
    /// Lead: send the ticket with terms (Unsent → Assigned).
    Send,
    /// Lead: revise the terms while Assigned.
    Revise,
    /// Partner: counter-offer terms while Assigned.
    Counter,
    Accept,
    Decline,
    /// Lead: take the offer back before acceptance.
    Cancel,
    /// Lead's instance: the respond-by deadline passed.
    Expire,
    /// Partner: first work on an accepted ticket.
    Start,
    /// Partner: "insource complete", asks the lead for approval.
    Complete,
    /// Lead: send completion back to the partner.
    Reject,
    /// Lead: accept the completed work; the link ends.
    Approve,
    /// Lead: end the link from any status before Complete.
    ForceComplete,
    /// Either side: the ticket's own status became Complete.
    CompleteByStatus,
}

impl Move {
    pub const ALL: [Move; 13] = [
        Move::Send,
        Move::Revise,
        Move::Counter,
        Move::Accept,
        Move::Decline,
        Move::Cancel,
        Move::Expire,
        Move::Start,
        Move::Complete,
        Move::Reject,
        Move::Approve,
        Move::ForceComplete,
        Move::CompleteByStatus,
    ];

    /// The CLI verb that performs this move, for error messages.
    pub fn verb(self) -> &'static str {
        match self {
            Move::Send => "send",
            Move::Revise => "revise",
            Move::Counter => "counter",
            Move::Accept => "accept",
            Move::Decline => "decline",
            Move::Cancel => "cancel",
            Move::Expire => "expire",
            Move::Start => "start",
            Move::Complete => "complete",
            Move::Reject => "reject",
            Move::Approve => "approve",
            Move::ForceComplete => "force-complete",
            Move::CompleteByStatus => "complete-by-status",
        }
    }

    /// The side that may make this move (`None`: either side).
    pub fn owner(self) -> Option<Side> {
        match self {
            Move::Send
            | Move::Revise
            | Move::Cancel
            | Move::Expire
            | Move::Reject
            | Move::Approve
            | Move::ForceComplete => Some(Side::Lead),
            Move::Counter | Move::Accept | Move::Decline | Move::Start | Move::Complete => {
                Some(Side::Partner)
            }
            Move::CompleteByStatus => None,
        }
    }

    /// The status this move leads to from `from`, if the table allows it at all.
    pub fn target(self, from: OutsourceStatus) -> Option<OutsourceStatus> {
        use OutsourceStatus as S;
        match (self, from) {
            (Move::Send, S::Unsent) => Some(S::Assigned),
            (Move::Revise | Move::Counter, S::Assigned) => Some(S::Assigned),
            (Move::Accept, S::Assigned) => Some(S::Accepted),
            (Move::Decline, S::Assigned) => Some(S::Declined),
            (Move::Cancel, S::Unsent | S::Assigned) => Some(S::Canceled),
            (Move::Expire, S::Assigned) => Some(S::Expired),
            (Move::Start, S::Accepted) => Some(S::InProgress),
            (Move::Complete, S::Accepted | S::InProgress) => Some(S::WaitingApproval),
            (Move::Reject, S::WaitingApproval) => Some(S::InProgress),
            (Move::Approve, S::WaitingApproval) => Some(S::Complete),
            (
                Move::ForceComplete,
                S::Assigned | S::Accepted | S::InProgress | S::WaitingApproval,
            ) => Some(S::Complete),
            (Move::CompleteByStatus, S::Accepted | S::InProgress | S::WaitingApproval) => {
                Some(S::Complete)
            }
            _ => None,
        }
    }

    /// True when `side` may make this move from `from`.
    pub fn allowed(self, side: Side, from: OutsourceStatus) -> bool {
        self.owner().is_none_or(|o| o == side) && self.target(from).is_some()
    }
}

/// The moves `side` may make from `from`, as CLI verbs, for "allowed: ..." in refusals.
pub fn allowed_moves(side: Side, from: OutsourceStatus) -> Vec<String> {
    let mut out: Vec<String> = Move::ALL
        .iter()
        .filter(|m| !matches!(m, Move::Expire | Move::Start | Move::CompleteByStatus))
        .filter(|m| m.allowed(side, from))
        .map(|m| format!("outsource {}", m.verb()))
        .collect();
    // After a link ends, the lead may send the ticket again (to anyone).
    if side == Side::Lead && from.is_ended() {
        out.push("outsource send".to_string());
    }
    out
}

/// One transition of a link as recorded: its move, who made it, and what it knew.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransitionRecord {
    pub mv: Move,
    pub side: Side,
    /// Transitions of the link its author knew when deciding (its ordering key).
    pub seq: u32,
    /// Terms carried by Send / Revise / Counter.
    pub terms: Option<Terms>,
    /// For Accept: the terms version accepted.
    pub accepts_version: Option<u32>,
    /// For Accept: the partner's organization the lead is mapped to.
    pub organization: Option<String>,
    /// For Decline and Reject: why.
    pub reason: Option<String>,
}

/// One outsourcing of a ticket from a lead to a partner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub id: LinkId,
    pub lead: InstanceId,
    pub partner: InstanceId,
    /// Every transition known, in arrival order.
    pub transitions: Vec<TransitionRecord>,
    /// Derived by [`Link::resolve`]: the current status.
    pub status: OutsourceStatus,
    /// Derived: the terms versions in force order (1-based index = version).
    pub terms: Vec<Terms>,
    /// Derived: the terms version bound by acceptance.
    pub accepted_version: Option<u32>,
    /// Derived: which transitions were applied (same order as `transitions`).
    pub effective: Vec<bool>,
    /// Derived: the organization named by the effective acceptance.
    pub organization: Option<String>,
    /// The invoice the partner issued for this link once it completed (recorded on both
    /// sides when the partner's `invoice_issued` arrives).
    pub invoice: Option<crate::billing::IssuedInvoice>,
    /// The transaction fee the lead recorded for this link's acceptance (portal companies).
    pub transaction_fee: Option<crate::billing::TransactionFee>,
}

impl Link {
    pub fn new(id: LinkId, lead: InstanceId, partner: InstanceId) -> Link {
        Link {
            id,
            lead,
            partner,
            transitions: vec![],
            status: OutsourceStatus::Unsent,
            terms: vec![],
            accepted_version: None,
            effective: vec![],
            organization: None,
            invoice: None,
            transaction_fee: None,
        }
    }

    /// Which side `instance` is on, if it is an end of this link.
    pub fn side_of(&self, instance: &InstanceId) -> Option<Side> {
        if *instance == self.lead {
            Some(Side::Lead)
        } else if *instance == self.partner {
            Some(Side::Partner)
        } else {
            None
        }
    }

    /// The instance at the other end from `side`.
    pub fn counterparty(&self, side: Side) -> &InstanceId {
        match side {
            Side::Lead => &self.partner,
            Side::Partner => &self.lead,
        }
    }

    /// The number of transitions known: the `seq` the next decided transition records.
    pub fn known(&self) -> u32 {
        self.transitions.len() as u32
    }

    /// Records a transition (idempotent for an identical record) and re-resolves.
    pub fn record(&mut self, t: TransitionRecord) {
        if !self.transitions.contains(&t) {
            self.transitions.push(t);
        }
        self.resolve();
    }

    /// Recomputes status, terms and acceptance from the transitions: sorted by
    /// `(seq, side)`, lead first, each applied only if allowed at that point.
    pub fn resolve(&mut self) {
        let all: Vec<&TransitionRecord> = self.transitions.iter().collect();
        let mut terms: Vec<Terms> = vec![];
        let mut accepted = None;
        let mut organization = None;
        let mut effective = vec![false; self.transitions.len()];
        let status = walk(&all, |i, t, versions| {
            if t.mv == Move::Accept {
                accepted = Some(versions);
                organization = t.organization.clone();
            }
            if let Some(tm) = &t.terms {
                terms.push(tm.clone());
            }
            effective[i] = true;
        });
        self.status = status;
        self.terms = terms;
        self.accepted_version = accepted;
        self.effective = effective;
        self.organization = organization;
    }

    /// The status the link had given only the transitions with `seq < known`, i.e. what
    /// an author who knew `known` transitions would, at best, have seen; used to decide
    /// whether an item authored then was shared. Folding a ticket asks this for every item
    /// event, so it walks borrowed transitions rather than resolving a copy of the link.
    pub fn status_with_known(&self, known: u32) -> OutsourceStatus {
        let prefix: Vec<&TransitionRecord> =
            self.transitions.iter().filter(|t| t.seq < known).collect();
        walk(&prefix, |_, _, _| {})
    }
}

/// The resolution rule: walks `transitions` sorted by `(seq, side)`, lead first (a stable
/// sort, so equal keys keep their order), skipping each one not allowed at that point
/// (a move the status does not take, a move owned by the other side, an acceptance of a
/// terms version other than the latest), and calls `effective(index, transition,
/// versions)` for each one applied, `versions` being the terms versions brought before
/// it. Returns the status reached.
fn walk<'a>(
    transitions: &[&'a TransitionRecord],
    mut effective: impl FnMut(usize, &'a TransitionRecord, u32),
) -> OutsourceStatus {
    let mut order: Vec<usize> = (0..transitions.len()).collect();
    order.sort_by_key(|&i| (transitions[i].seq, transitions[i].side));
    let mut status = OutsourceStatus::Unsent;
    let mut versions = 0u32;
    for i in order {
        let t = transitions[i];
        // The first transition (Send, or the draft's implicit start) may bring terms.
        let Some(next) =
            t.mv.target(status)
                .filter(|_| t.mv.owner().is_none_or(|o| o == t.side))
        else {
            continue;
        };
        // Acceptance binds the latest version; an accept of an older one is stale.
        if t.mv == Move::Accept && t.accepts_version.is_some_and(|v| v != versions) {
            continue;
        }
        effective(i, t, versions);
        if t.terms.is_some() {
            versions += 1;
        }
        status = next;
    }
    status
}

/// How an item stands towards the partner of the ticket's link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Sharing {
    /// Authored on this side (or received) while the link was live: both sides have it.
    Shared,
    /// Marked internal by its author: it never leaves the instance.
    Internal,
    /// Added while no link was live (never outsourced, Waiting Approval, after Complete).
    NotShared,
    /// Shared once, then changed on one side only (an edit of the other side's item, or an
    /// edit made while the link was not live).
    Diverged,
}

impl Sharing {
    pub fn name(self) -> &'static str {
        match self {
            Sharing::Shared => "shared",
            Sharing::Internal => "internal",
            Sharing::NotShared => "not shared",
            Sharing::Diverged => "diverged",
        }
    }
}

/// What sharing depends on, for one item.
#[derive(Clone, Copy, Debug)]
pub struct ItemFacts<'a> {
    pub author: &'a InstanceId,
    /// Transitions its author knew when adding it.
    pub link_seq: u32,
    pub internal: bool,
    /// Arrived from the counterparty.
    pub received: bool,
    pub diverged: bool,
}

/// The link in effect for something authored knowing `link_seq` transitions: the latest
/// link whose Send has a smaller seq.
pub fn link_at(links: &[Link], link_seq: u32) -> Option<&Link> {
    links.iter().rev().find(|l| {
        l.transitions
            .iter()
            .any(|t| t.seq < link_seq && t.mv == Move::Send)
    })
}

/// Whether something authored knowing `link_seq` transitions was authored on a live link:
/// the link in effect then, resolved over the transitions with a smaller seq (including any
/// the author had not seen yet), was Accepted or In Progress. Both sides compute the same
/// answer once they hold the same transitions.
pub fn live_at(links: &[Link], link_seq: u32) -> bool {
    link_at(links, link_seq).is_some_and(|l| l.status_with_known(link_seq).is_live())
}

/// How an item stands towards the link's counterparty.
pub fn sharing(links: &[Link], item: &ItemFacts<'_>) -> Sharing {
    if item.diverged {
        return Sharing::Diverged;
    }
    if item.internal && !item.received {
        return Sharing::Internal;
    }
    let Some(link) = link_at(links, item.link_seq) else {
        return Sharing::NotShared;
    };
    if link.side_of(item.author).is_none() {
        return Sharing::NotShared;
    }
    if live_at(links, item.link_seq) {
        Sharing::Shared
    } else {
        Sharing::NotShared
    }
}

/// Whether an item was changed on this side only: edited or deleted here by another
/// instance than its author's, or changed by its author after it was shared but while the
/// link was not live (or on a later link than the one it was shared on). Derived from the
/// resolved links, so both sides agree whatever order the transitions arrived in.
pub fn diverged(
    links: &[Link],
    item_link_seq: u32,
    internal_local: bool,
    foreign_change: bool,
    author_change_seqs: &[u32],
) -> bool {
    if foreign_change {
        return true;
    }
    if internal_local || !live_at(links, item_link_seq) {
        return false;
    }
    let shared_on = link_at(links, item_link_seq).map(|l| l.id);
    author_change_seqs
        .iter()
        .any(|s| !live_at(links, *s) || link_at(links, *s).map(|l| l.id) != shared_on)
}

/// Applies an outsourcing event to a ticket's links: a Send creates its link; every
/// change is recorded as a transition of the author's side and the link re-resolved.
/// Events from an instance that is not an end of the link change nothing.
pub fn apply_change(links: &mut Vec<Link>, link: LinkId, meta: &EventMeta, change: &LinkChange) {
    if let LinkChange::Sent { lead, partner, .. } = change {
        if !links.iter().any(|l| l.id == link) {
            links.push(Link::new(link, lead.clone(), partner.clone()));
        }
    }
    let Some(l) = links.iter_mut().find(|l| l.id == link) else {
        return;
    };
    let Some(side) = l.side_of(&meta.actor.instance) else {
        return;
    };
    let mut t = TransitionRecord {
        mv: change.mv(side),
        side,
        seq: meta.link_seq,
        terms: None,
        accepts_version: None,
        organization: None,
        reason: None,
    };
    match change {
        LinkChange::Sent { terms, .. } | LinkChange::TermsProposed { terms } => {
            t.terms = Some(terms.clone())
        }
        LinkChange::Accepted {
            terms_version,
            organization,
        } => {
            t.accepts_version = Some(*terms_version);
            t.organization = organization.clone();
        }
        LinkChange::Declined { reason } | LinkChange::Rejected { reason } => {
            t.reason = Some(reason.clone())
        }
        _ => {}
    }
    l.record(t);
}
