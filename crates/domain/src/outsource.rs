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
    Move::ALL
        .iter()
        .filter(|m| !matches!(m, Move::Expire | Move::Start | Move::CompleteByStatus))
        .filter(|m| m.allowed(side, from))
        .map(|m| format!("outsource {}", m.verb()))
        .collect()
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
        let mut order: Vec<usize> = (0..self.transitions.len()).collect();
        order.sort_by_key(|&i| (self.transitions[i].seq, self.transitions[i].side));
        let mut status = OutsourceStatus::Unsent;
        let mut terms: Vec<Terms> = vec![];
        let mut accepted = None;
        let mut effective = vec![false; self.transitions.len()];
        for i in order {
            let t = &self.transitions[i];
            // The first transition (Send, or the draft's implicit start) may bring terms.
            let Some(next) =
                t.mv.target(status)
                    .filter(|_| t.mv.owner().is_none_or(|o| o == t.side))
            else {
                continue;
            };
            if t.mv == Move::Accept {
                // Acceptance binds the latest version; an accept of an older one is stale.
                let latest = terms.len() as u32;
                if t.accepts_version.is_some_and(|v| v != latest) {
                    continue;
                }
                accepted = Some(latest);
            }
            if let Some(tm) = &t.terms {
                terms.push(tm.clone());
            }
            status = next;
            effective[i] = true;
        }
        self.status = status;
        self.terms = terms;
        self.accepted_version = accepted;
        self.effective = effective;
    }

    /// The status the link had given only the transitions with `seq < known`, i.e. what
    /// an author who knew `known` transitions would, at best, have seen; used to decide
    /// whether an item authored then was shared.
    pub fn status_with_known(&self, known: u32) -> OutsourceStatus {
        let mut prefix = Link::new(self.id, self.lead.clone(), self.partner.clone());
        prefix.transitions = self
            .transitions
            .iter()
            .filter(|t| t.seq < known)
            .cloned()
            .collect();
        prefix.resolve();
        prefix.status
    }
}
