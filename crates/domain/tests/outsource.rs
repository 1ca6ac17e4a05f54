//! Given / when / then tests of the outsourcing workflow (product brief §2): every move of
//! the outsource status table from every status, by each side, decided on one instance and
//! replicated to the other through `sync::route` and `sync::receive`.
//!
//! State is always built by deciding commands and folding their events through `evolve`
//! (see `common`); nothing is constructed by hand. The expected outcomes come from the
//! table in this file, written from the brief, not from the code's own move table.

mod common;

use std::collections::BTreeSet;

use common::*;
use ticketsync_domain::outsource::TransitionRecord;
use ticketsync_domain::{
    Command, DomainError, Event, LinkChange, Move, OutsourceCommand, OutsourceStatus, Sharing,
    Side, Snapshot,
};

use OutsourceStatus as S;

/// Every observable outsource status (Unsent is transient: Send goes straight to Assigned).
const OBSERVABLE: [OutsourceStatus; 8] = [
    S::Assigned,
    S::Accepted,
    S::InProgress,
    S::WaitingApproval,
    S::Complete,
    S::Declined,
    S::Canceled,
    S::Expired,
];

const ENDED: [OutsourceStatus; 4] = [S::Complete, S::Declined, S::Canceled, S::Expired];

/// The workflow commands a user can try on an existing link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Try {
    Counter,
    Revise,
    Accept,
    Decline,
    Cancel,
    Expire,
    Complete,
    Approve,
    Reject,
    ForceComplete,
}

const TRIES: [Try; 10] = [
    Try::Counter,
    Try::Revise,
    Try::Accept,
    Try::Decline,
    Try::Cancel,
    Try::Expire,
    Try::Complete,
    Try::Approve,
    Try::Reject,
    Try::ForceComplete,
];

fn verb(t: Try) -> &'static str {
    match t {
        Try::Counter => "counter",
        Try::Revise => "revise",
        Try::Accept => "accept",
        Try::Decline => "decline",
        Try::Cancel => "cancel",
        Try::Expire => "expire",
        Try::Complete => "complete",
        Try::Approve => "approve",
        Try::Reject => "reject",
        Try::ForceComplete => "force-complete",
    }
}

fn command(t: Try) -> Command {
    out(match t {
        Try::Counter => OutsourceCommand::Counter {
            terms: terms_other("120"),
        },
        Try::Revise => OutsourceCommand::Revise {
            terms: terms_other("110"),
        },
        Try::Accept => OutsourceCommand::Accept {
            organization: Some(" Acme Corp ".into()),
        },
        Try::Decline => OutsourceCommand::Decline {
            reason: " too far away ".into(),
        },
        Try::Cancel => OutsourceCommand::Cancel,
        Try::Expire => OutsourceCommand::Expire,
        Try::Complete => OutsourceCommand::Complete,
        Try::Approve => OutsourceCommand::Approve,
        Try::Reject => OutsourceCommand::Reject {
            reason: " the fan is still loud ".into(),
        },
        Try::ForceComplete => OutsourceCommand::ForceComplete,
    })
}

/// The brief's table: what `t` by `side` records, and the status it leads to, from `from`
/// (on the first link, whose only terms version is `terms_v1`). `None`: refused.
fn table(side: Side, from: OutsourceStatus, t: Try) -> Option<(LinkChange, OutsourceStatus)> {
    use Side::{Lead, Partner};
    match (side, t, from) {
        (Lead, Try::Revise, S::Assigned) => Some((
            LinkChange::TermsProposed {
                terms: terms_other("110"),
            },
            S::Assigned,
        )),
        (Partner, Try::Counter, S::Assigned) => Some((
            LinkChange::TermsProposed {
                terms: terms_other("120"),
            },
            S::Assigned,
        )),
        (Partner, Try::Accept, S::Assigned) => Some((
            LinkChange::Accepted {
                terms_version: 1,
                organization: Some("Acme Corp".into()),
            },
            S::Accepted,
        )),
        (Partner, Try::Decline, S::Assigned) => Some((
            LinkChange::Declined {
                reason: "too far away".into(),
            },
            S::Declined,
        )),
        (Lead, Try::Cancel, S::Assigned) => Some((LinkChange::Canceled, S::Canceled)),
        (Lead, Try::Expire, S::Assigned) => Some((LinkChange::Expired, S::Expired)),
        (Partner, Try::Complete, S::Accepted | S::InProgress) => {
            Some((LinkChange::Completed, S::WaitingApproval))
        }
        (Lead, Try::Reject, S::WaitingApproval) => Some((
            LinkChange::Rejected {
                reason: "the fan is still loud".into(),
            },
            S::InProgress,
        )),
        (Lead, Try::Approve, S::WaitingApproval) => Some((LinkChange::Approved, S::Complete)),
        (
            Lead,
            Try::ForceComplete,
            S::Assigned | S::Accepted | S::InProgress | S::WaitingApproval,
        ) => Some((LinkChange::ForceCompleted, S::Complete)),
        _ => None,
    }
}

/// What a refusal must offer `side` at `from` (the brief's table again). A lead whose link
/// has ended may send the ticket again.
fn allowed(side: Side, from: OutsourceStatus) -> BTreeSet<String> {
    let v: &[&str] = match (side, from) {
        (Side::Lead, S::Assigned) => &[
            "outsource revise",
            "outsource cancel",
            "outsource force-complete",
        ],
        (Side::Lead, S::Accepted | S::InProgress) => &["outsource force-complete"],
        (Side::Lead, S::WaitingApproval) => &[
            "outsource reject",
            "outsource approve",
            "outsource force-complete",
        ],
        (Side::Lead, _) => &["outsource send"],
        (Side::Partner, S::Assigned) => {
            &["outsource counter", "outsource accept", "outsource decline"]
        }
        (Side::Partner, S::Accepted | S::InProgress) => &["outsource complete"],
        (Side::Partner, _) => &[],
    };
    v.iter().map(|s| s.to_string()).collect()
}

/// The moves a refusal's text lists after "allowed: " ("nothing" is the empty list).
#[track_caller]
fn listed(text: &str) -> BTreeSet<String> {
    let (_, list) = text
        .rsplit_once("; allowed: ")
        .unwrap_or_else(|| panic!("no allowed list in {text:?}"));
    if list == "nothing" {
        return BTreeSet::new();
    }
    list.split(", ").map(str::to_string).collect()
}

fn records(net: &Net, name: &str) -> BTreeSet<String> {
    net.link(name)
        .transitions
        .iter()
        .map(|t| format!("{t:?}"))
        .collect()
}

/// Every command by each side from `from`: the table's moves are recorded and replicated,
/// every other one is refused with the status and the allowed moves, and changes nothing.
fn every_move_from(from: OutsourceStatus) {
    for side in [Side::Lead, Side::Partner] {
        for t in TRIES {
            // given
            let mut net = Net::at(from);
            let me = name(side);
            let other = name(side.other());
            let lead_before = net.ticket(LEAD).clone();
            let partner_before = net.ticket(PARTNER).clone();
            let sent_before = net.sent();
            // the lead's instance expires an offer only once the deadline has passed
            let now = if t == Try::Expire {
                RESPOND_BY + 1
            } else {
                net.now
            };
            let case = format!("{} {} from {from}", side, verb(t));
            // when
            let r = net.when_at(&user(side), now, command(t));
            // then
            match table(side, from, t) {
                Some((change, to)) => {
                    let expected = Event::Outsource {
                        link: link1(),
                        change,
                    };
                    let evs = r.clone().unwrap_or_else(|e| panic!("{case}: refused: {e}"));
                    assert_eq!(evs.first(), Some(&expected), "{case}");
                    if side == Side::Lead
                        && to == OutsourceStatus::Complete
                        && from != OutsourceStatus::Assigned
                    {
                        // the lead records the partner's work: a cost line and a note
                        assert!(
                            matches!(
                                &evs[1..],
                                [
                                    Event::ChargeAdded { charge, .. },
                                    Event::NoteAdded { internal: true, .. }
                                ] if !charge.billable
                            ),
                            "{case}: {evs:?}"
                        );
                    } else {
                        assert_eq!(evs.len(), 1, "{case}: {evs:?}");
                    }
                    assert_eq!(net.status(me), to, "{case}: own side");
                    assert_eq!(
                        net.sent_since(sent_before),
                        vec![(me.to_string(), other.to_string(), expected)],
                        "{case}: routed to the other side"
                    );
                    net.flush();
                    assert_eq!(net.status(LEAD), to, "{case}: lead after replication");
                    assert_eq!(net.status(PARTNER), to, "{case}: partner after replication");
                    assert_eq!(records(&net, LEAD), records(&net, PARTNER), "{case}");
                    for n in [LEAD, PARTNER] {
                        let l = net.link(n);
                        let last = l.transitions.len() - 1;
                        assert_eq!(l.transitions[last].side, side, "{case}");
                        assert!(l.effective[last], "{case}: the move is effective on {n}");
                    }
                }
                None => {
                    let text = match r {
                        Err(e @ DomainError::Refused(_)) => e.to_string(),
                        other => panic!("{case}: expected a refusal, got {other:?}"),
                    };
                    assert!(
                        text.starts_with(&format!("cannot outsource {}", verb(t))),
                        "{case}: {text}"
                    );
                    assert!(
                        text.contains(&format!("status is {}", from.name())),
                        "{case}: the refusal names the status: {text}"
                    );
                    // (the lead's "send again" on an ended link is checked on its own below)
                    if !(side == Side::Lead && from.is_ended()) {
                        assert_eq!(listed(&text), allowed(side, from), "{case}: {text}");
                    }
                    assert_eq!(net.ticket(LEAD), &lead_before, "{case}");
                    assert_eq!(net.ticket(PARTNER), &partner_before, "{case}");
                    assert_eq!(net.sent(), sent_before, "{case}: nothing routed");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The table, status by status
// ---------------------------------------------------------------------------------------------

#[test]
fn given_assigned_when_each_side_tries_every_move_then_the_table_decides() {
    every_move_from(S::Assigned);
}

#[test]
fn given_accepted_when_each_side_tries_every_move_then_the_table_decides() {
    every_move_from(S::Accepted);
}

#[test]
fn given_in_progress_when_each_side_tries_every_move_then_the_table_decides() {
    every_move_from(S::InProgress);
}

#[test]
fn given_waiting_approval_when_each_side_tries_every_move_then_the_table_decides() {
    every_move_from(S::WaitingApproval);
}

#[test]
fn given_complete_when_each_side_tries_every_move_then_all_are_refused() {
    every_move_from(S::Complete);
}

#[test]
fn given_declined_when_each_side_tries_every_move_then_all_are_refused() {
    every_move_from(S::Declined);
}

#[test]
fn given_canceled_when_each_side_tries_every_move_then_all_are_refused() {
    every_move_from(S::Canceled);
}

#[test]
fn given_expired_when_each_side_tries_every_move_then_all_are_refused() {
    every_move_from(S::Expired);
}

#[test]
fn the_table_is_not_vacuous() {
    // Every status is reachable, and every move of the brief's table appears in it.
    let mut moves = 0;
    for from in OBSERVABLE {
        for side in [Side::Lead, Side::Partner] {
            for t in TRIES {
                moves += usize::from(table(side, from, t).is_some());
            }
        }
    }
    // revise, counter, accept, decline, cancel, expire (Assigned), complete x2, reject,
    // approve, force-complete x4
    assert_eq!(moves, 14);
}

#[test]
fn given_ended_link_when_lead_tries_a_move_then_the_refusal_offers_sending_again() {
    for from in ENDED {
        // given
        let mut net = Net::at(from);
        // when
        let r = net.when(&alice(), out(OutsourceCommand::Cancel));
        // then
        let text = refusal_text(r);
        assert!(text.contains(from.name()), "{text}");
        assert_eq!(
            listed(&text),
            allowed(Side::Lead, from),
            "a lead may send an ended ticket again (§1, §2 \"lead may send again\"): {text}"
        );
        // and sending again is indeed accepted
        let later = net.now;
        assert!(net
            .when(
                &alice(),
                send_to(
                    link_id(2),
                    PARTNER,
                    terms_at("95", Some(later + DAY), "again")
                )
            )
            .is_ok());
    }
}

#[test]
fn given_a_move_of_the_other_side_when_tried_then_the_refusal_says_whose_move_it_is() {
    // given
    let mut net = Net::at(S::WaitingApproval);
    // when the partner approves its own work
    let text = refusal_text(net.when(&carol(), out(OutsourceCommand::Approve)));
    // then
    assert!(text.contains("only the lead may approve"), "{text}");
    assert!(text.contains("you are the partner"), "{text}");
    assert!(text.ends_with("allowed: nothing"), "{text}");
    // given
    let mut net = Net::assigned();
    // when the lead accepts its own offer
    let text = refusal_text(net.when(&alice(), accept()));
    // then
    assert!(text.contains("only the partner may accept"), "{text}");
    assert!(text.contains("outsource status is Assigned"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// Send
// ---------------------------------------------------------------------------------------------

#[test]
fn given_new_ticket_when_lead_sends_then_sent_with_snapshot_and_partner_gets_an_assigned_copy() {
    // given
    let mut net = Net::created();
    // when
    let r = net.when(&alice(), send_to(link1(), PARTNER, terms_v1()));
    // then
    let sent = Event::Outsource {
        link: link1(),
        change: LinkChange::Sent {
            lead: inst(LEAD),
            partner: inst(PARTNER),
            terms: terms_v1(),
            snapshot: Snapshot {
                title: "Printer on fire".into(),
                description: "Third floor".into(),
                customer: Some("Initech".into()),
            },
        },
    };
    assert_eq!(r, Ok(vec![sent.clone()]));
    assert_eq!(net.status(LEAD), S::Assigned);
    assert_eq!(
        net.sent_since(0),
        vec![(LEAD.to_string(), PARTNER.to_string(), sent)]
    );
    net.flush();
    let copy = net.ticket(PARTNER);
    assert_eq!(copy.id, net.ticket(LEAD).id, "the copy keeps the lead's id");
    assert_eq!(copy.created_by, system(PARTNER));
    assert_eq!(copy.title, "Printer on fire");
    assert_eq!(copy.customer.as_deref(), Some("Initech"));
    assert_eq!(copy.status, "New");
    let l = net.link(PARTNER);
    assert_eq!((l.lead.as_str(), l.partner.as_str()), (LEAD, PARTNER));
    assert_eq!(l.status, S::Assigned);
    assert_eq!(l.terms, vec![terms_v1()]);
    assert_eq!(net.link(LEAD), l);
}

#[test]
fn given_ticket_when_sent_to_own_instance_then_invalid_partner() {
    // given
    let mut net = Net::created();
    // when
    let r = net.when(&alice(), send_to(link1(), LEAD, terms_v1()));
    // then
    assert_eq!(invalid_field(r), "partner");
    assert!(net.ticket(LEAD).links.is_empty());
    assert_eq!(net.sent(), 0);
}

#[test]
fn given_ticket_when_sent_with_respond_by_not_in_the_future_then_invalid_respond_by() {
    for respond_by in [T0 - DAY, T0 - 1, T0] {
        // given
        let mut net = Net::created();
        // when
        let r = net.when(
            &alice(),
            send_to(link1(), PARTNER, terms_at("95", Some(respond_by), "")),
        );
        // then
        assert_eq!(invalid_field(r), "respond by", "respond by {respond_by}");
        assert!(net.ticket(LEAD).links.is_empty());
        assert_eq!(net.sent(), 0);
    }
    // and a deadline one millisecond ahead, or none at all, is fine
    for respond_by in [Some(T0 + 1), None] {
        let mut net = Net::created();
        let r = net.when(
            &alice(),
            send_to(link1(), PARTNER, terms_at("95", respond_by, "")),
        );
        assert!(r.is_ok(), "{respond_by:?}: {r:?}");
    }
}

#[test]
fn given_ticket_when_sent_with_invalid_terms_then_invalid_and_nothing_sent() {
    // given
    let mut net = Net::created();
    let mut bad = terms_v1();
    bad.rate = ticketsync_domain::Rate::Hourly(d("-1"));
    // when
    let r = net.when(&alice(), send_to(link1(), PARTNER, bad));
    // then
    assert_eq!(invalid_field(r), "hourly rate");
    assert_eq!(net.sent(), 0);
}

#[test]
fn given_link_not_ended_when_lead_sends_again_then_refused_naming_the_status() {
    for from in [S::Assigned, S::Accepted, S::InProgress, S::WaitingApproval] {
        // given
        let mut net = Net::at(from);
        let before = net.ticket(LEAD).clone();
        // when (to the same partner, and to another)
        for partner in [PARTNER, OTHER] {
            let r = net.when(&alice(), send_to(link_id(2), partner, terms_other("99")));
            // then
            let text = refusal_text(r);
            assert!(text.starts_with("cannot outsource send"), "{text}");
            assert!(text.contains(from.name()), "{from}: {text}");
            assert!(text.contains("already outsourced to bolt"), "{text}");
            assert_eq!(listed(&text), allowed(Side::Lead, from), "{from}: {text}");
            assert_eq!(net.ticket(LEAD), &before);
        }
    }
}

#[test]
fn given_ended_link_when_lead_sends_again_then_a_new_link_works_on_both_sides() {
    for from in ENDED {
        // given
        let mut net = Net::at(from);
        let later = net.now;
        // when
        let r = net.when(
            &alice(),
            send_to(
                link_id(2),
                PARTNER,
                terms_at("105", Some(later + DAY), "second try"),
            ),
        );
        // then
        let events = r.unwrap_or_else(|e| panic!("{from}: {e}"));
        assert!(
            matches!(&events[..], [Event::Outsource { link, change: LinkChange::Sent { .. } }] if *link == link_id(2)),
            "{from}: {events:?}"
        );
        net.flush();
        for n in [LEAD, PARTNER] {
            let t = net.ticket(n);
            assert_eq!(t.links.len(), 2, "{from}: {n}");
            assert_eq!(
                t.links[0].status, from,
                "{from}: the old link keeps its end"
            );
            assert_eq!(t.links[1].id, link_id(2));
            assert_eq!(t.links[1].status, S::Assigned, "{from}: {n}");
        }
        // and the partner can accept and work the new link, which syncs again
        net.given(&carol(), accept());
        net.given(&carol(), note(item(1), "second visit", false));
        net.flush();
        for n in [LEAD, PARTNER] {
            assert_eq!(net.status(n), S::InProgress, "{from}: {n}");
            assert_eq!(net.link(n).accepted_version, Some(1), "{from}: {n}");
            let i = net.item(n, item(1));
            assert_eq!(net.ticket(n).sharing(i), Sharing::Shared, "{from}: {n}");
        }
    }
}

#[test]
fn given_link_declined_by_one_partner_when_sent_to_another_who_accepts_then_accepted_on_both() {
    // given: bolt declined acme's offer
    let mut net = Net::new(&[LEAD, PARTNER, OTHER]);
    net.given(&alice(), create());
    net.given(&alice(), send_to(link1(), PARTNER, terms_v1()));
    net.flush();
    net.given(&carol(), decline("too far away"));
    net.flush();
    // and acme sent the ticket to cobra instead ("lead may send again, to anyone")
    net.given(&alice(), send_to(link_id(2), OTHER, terms_v1()));
    net.flush();
    assert_eq!(net.status(OTHER), S::Assigned);
    // when cobra accepts
    let r = net.when(&dave(), accept());
    // then
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(
        net.status(OTHER),
        S::Accepted,
        "cobra's own acceptance must take effect on cobra (its link_seq {} counts only the \
         links it knows, the Send it follows has seq {})",
        net.ticket(OTHER).known() - 1,
        net.link(OTHER).transitions[0].seq
    );
    net.flush();
    assert_eq!(net.status(LEAD), S::Accepted);
    assert_eq!(net.link(LEAD).accepted_version, Some(1));
}

#[test]
fn given_insourced_ticket_when_partner_sends_it_on_then_refused() {
    for from in [S::Assigned, S::Accepted, S::Complete, S::Declined] {
        // given
        let mut net = Net::at(from);
        let before = net.ticket(PARTNER).clone();
        for to in [OTHER, LEAD] {
            // when
            let r = net.when(&carol(), send_to(link_id(2), to, terms_v1()));
            // then
            let text = refusal_text(r);
            assert!(text.starts_with("cannot outsource send"), "{text}");
            assert!(text.contains("only its lead"), "{text}");
            assert!(text.contains(LEAD), "names the lead: {text}");
            assert_eq!(net.ticket(PARTNER), &before);
            assert_eq!(net.pending().len(), 0);
        }
    }
}

#[test]
fn given_no_ticket_when_outsourcing_then_ticket_not_found() {
    // given
    let mut net = Net::new(&[LEAD, PARTNER]);
    // when
    let r = net.when(&alice(), send_to(link1(), PARTNER, terms_v1()));
    // then
    assert_eq!(r, Err(DomainError::TicketNotFound(ticket_id())));
    let r = net.when(&alice(), out(OutsourceCommand::Cancel));
    assert_eq!(r, Err(DomainError::TicketNotFound(ticket_id())));
}

#[test]
fn given_ticket_never_outsourced_when_a_workflow_move_is_tried_then_refused_offering_send() {
    // given
    let mut net = Net::created();
    // when
    let r = net.when(&alice(), out(OutsourceCommand::ForceComplete));
    // then
    let text = refusal_text(r);
    assert!(text.contains("not outsourced"), "{text}");
    assert_eq!(
        listed(&text),
        BTreeSet::from(["outsource send".to_string()])
    );
}

// ---------------------------------------------------------------------------------------------
// Terms: counter-offer, revision, acceptance of the latest version
// ---------------------------------------------------------------------------------------------

#[test]
fn given_assigned_when_partner_counters_and_lead_revises_then_acceptance_binds_the_latest() {
    // given
    let mut net = Net::assigned();
    // when the partner counters
    let r = net.when(&carol(), counter(terms_other("120")));
    // then
    assert_eq!(
        r,
        Ok(vec![Event::Outsource {
            link: link1(),
            change: LinkChange::TermsProposed {
                terms: terms_other("120")
            }
        }])
    );
    net.flush();
    for n in [LEAD, PARTNER] {
        assert_eq!(net.link(n).terms, vec![terms_v1(), terms_other("120")]);
        assert_eq!(net.status(n), S::Assigned);
    }
    // when the lead revises
    net.given(&alice(), revise(terms_other("110")));
    net.flush();
    // and the partner accepts
    let r = net.when(&carol(), accept());
    // then it accepts version 3
    assert_eq!(
        r,
        Ok(vec![Event::Outsource {
            link: link1(),
            change: LinkChange::Accepted {
                terms_version: 3,
                organization: None
            }
        }])
    );
    net.flush();
    let expected_terms = vec![terms_v1(), terms_other("120"), terms_other("110")];
    for n in [LEAD, PARTNER] {
        let l = net.link(n);
        assert_eq!(l.status, S::Accepted, "{n}");
        assert_eq!(l.terms, expected_terms, "{n}");
        assert_eq!(l.accepted_version, Some(3), "{n}");
        assert_eq!(l.terms[2].rate, ticketsync_domain::Rate::Hourly(d("110")));
    }
}

#[test]
fn given_assigned_when_lead_counters_or_partner_revises_then_refused_naming_the_owner() {
    // given
    let mut net = Net::assigned();
    // when
    let by_lead = refusal_text(net.when(&alice(), counter(terms_other("1"))));
    let by_partner = refusal_text(net.when(&carol(), revise(terms_other("1"))));
    // then
    assert!(
        by_lead.contains("only the partner may counter"),
        "{by_lead}"
    );
    assert!(
        by_partner.contains("only the lead may revise"),
        "{by_partner}"
    );
    for n in [LEAD, PARTNER] {
        assert_eq!(net.link(n).terms, vec![terms_v1()]);
    }
}

#[test]
fn given_assigned_when_counter_offer_has_invalid_terms_then_invalid() {
    // given
    let mut net = Net::assigned();
    let mut bad = terms_other("120");
    bad.authorized_hours = Some(d("100001"));
    // when
    let r = net.when(&carol(), counter(bad));
    // then
    assert_eq!(invalid_field(r), "authorized hours");
    assert_eq!(net.sent(), 1, "only the Send is on the wire");
}

#[test]
fn given_accepted_when_partner_accepts_with_organization_then_both_sides_record_it() {
    // given
    let mut net = Net::assigned();
    // when
    net.given(
        &carol(),
        out(OutsourceCommand::Accept {
            organization: Some("  Acme Corp  ".into()),
        }),
    );
    net.flush();
    // then
    for n in [LEAD, PARTNER] {
        assert_eq!(
            net.link(n).organization.as_deref(),
            Some("Acme Corp"),
            "{n}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Deadlines
// ---------------------------------------------------------------------------------------------

#[test]
fn given_assigned_when_partner_accepts_at_the_deadline_then_accepted() {
    // given
    let mut net = Net::assigned();
    // when
    let r = net.when_at(&carol(), RESPOND_BY, accept());
    // then
    assert!(r.is_ok(), "{r:?}");
    net.flush();
    assert_eq!(net.status(LEAD), S::Accepted);
}

#[test]
fn given_assigned_when_partner_accepts_after_the_deadline_then_refused() {
    // given
    let mut net = Net::assigned();
    // when
    let r = net.when_at(&carol(), RESPOND_BY + 1, accept());
    // then
    let text = refusal_text(r);
    assert!(text.starts_with("cannot outsource accept"), "{text}");
    assert!(text.contains("respond-by deadline passed"), "{text}");
    assert!(listed(&text).contains("outsource decline"), "{text}");
    assert!(!listed(&text).contains("outsource accept"), "{text}");
    assert_eq!(net.status(PARTNER), S::Assigned);
    assert_eq!(net.pending().len(), 0);
    assert!(
        text.contains("Assigned"),
        "every refused transition names the current status (brief §2): {text}"
    );
}

#[test]
fn given_counter_offer_with_later_deadline_when_accepted_after_the_first_deadline_then_accepted() {
    // given
    let mut net = Net::assigned();
    net.given(&carol(), counter(terms_other("120")));
    net.flush();
    // when (the latest version's deadline is RESPOND_BY + DAY)
    let r = net.when_at(&carol(), RESPOND_BY + HOUR, accept());
    // then
    assert!(r.is_ok(), "{r:?}");
    net.flush();
    assert_eq!(net.status(LEAD), S::Accepted);
    assert_eq!(net.link(LEAD).accepted_version, Some(2));
    // and the lead cannot expire it any more, even after the latest deadline
    let r = net.when_at(
        &alice(),
        RESPOND_BY + 2 * DAY,
        out(OutsourceCommand::Expire),
    );
    assert!(refusal_text(r).contains("Accepted"));
}

#[test]
fn given_assigned_when_lead_expires_before_or_at_the_deadline_then_refused() {
    let mut texts = vec![];
    for now in [T0, RESPOND_BY] {
        // given
        let mut net = Net::assigned();
        // when
        let r = net.when_at(&alice(), now, out(OutsourceCommand::Expire));
        // then
        let text = refusal_text(r);
        assert!(text.starts_with("cannot outsource expire"), "{text}");
        assert!(text.contains("deadline has not passed"), "{text}");
        assert_eq!(listed(&text), allowed(Side::Lead, S::Assigned), "{text}");
        assert_eq!(net.status(LEAD), S::Assigned);
        assert_eq!(net.sent(), 1);
        texts.push(text);
    }
    for text in texts {
        assert!(
            text.contains("Assigned"),
            "every refused transition names the current status (brief §2): {text}"
        );
    }
}

#[test]
fn given_assigned_past_the_deadline_when_lead_expires_then_expired_on_both_sides() {
    // given
    let mut net = Net::assigned();
    // when
    let r = net.when_at(&alice(), RESPOND_BY + 1, out(OutsourceCommand::Expire));
    // then
    assert_eq!(
        r,
        Ok(vec![Event::Outsource {
            link: link1(),
            change: LinkChange::Expired
        }])
    );
    net.flush();
    assert_eq!(net.status(LEAD), S::Expired);
    assert_eq!(net.status(PARTNER), S::Expired);
}

#[test]
fn given_assigned_past_the_deadline_when_partner_expires_then_refused() {
    // given
    let mut net = Net::assigned();
    // when
    let r = net.when_at(&carol(), RESPOND_BY + DAY, out(OutsourceCommand::Expire));
    // then
    let text = refusal_text(r);
    assert!(text.contains("only the lead may expire"), "{text}");
    assert_eq!(net.status(PARTNER), S::Assigned);
}

#[test]
fn given_terms_without_deadline_when_lead_expires_then_refused() {
    // given
    let mut net = Net::created();
    net.given(
        &alice(),
        send_to(link1(), PARTNER, terms_at("95", None, "")),
    );
    net.flush();
    // when
    let r = net.when_at(&alice(), T0 + 1000 * DAY, out(OutsourceCommand::Expire));
    // then
    assert!(refusal_text(r).contains("deadline"));
    // and the partner may still accept, however late
    assert!(net.when_at(&carol(), T0 + 1000 * DAY, accept()).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Reasons
// ---------------------------------------------------------------------------------------------

#[test]
fn given_assigned_when_partner_declines_without_a_reason_then_invalid_reason() {
    for reason in ["", "   ", " \n\t "] {
        // given
        let mut net = Net::assigned();
        // when
        let r = net.when(&carol(), decline(reason));
        // then
        assert_eq!(invalid_field(r), "reason", "{reason:?}");
        assert_eq!(net.status(PARTNER), S::Assigned);
        assert_eq!(net.pending().len(), 0);
    }
}

#[test]
fn given_waiting_approval_when_lead_rejects_without_a_reason_then_invalid_reason() {
    for reason in ["", "   "] {
        // given
        let mut net = Net::at(S::WaitingApproval);
        // when
        let r = net.when(&alice(), reject(reason));
        // then
        assert_eq!(invalid_field(r), "reason", "{reason:?}");
        assert_eq!(net.status(LEAD), S::WaitingApproval);
        assert_eq!(net.pending().len(), 0);
    }
}

#[test]
fn given_decline_and_reject_with_reasons_then_both_sides_record_the_reason() {
    // given
    let mut net = Net::assigned();
    // when
    net.given(&carol(), decline("  no engineer free this week "));
    net.flush();
    // then
    let reason_of = |net: &Net, n: &str, mv: Move| -> Option<String> {
        net.link(n)
            .transitions
            .iter()
            .find(|t: &&TransitionRecord| t.mv == mv)
            .and_then(|t| t.reason.clone())
    };
    for n in [LEAD, PARTNER] {
        assert_eq!(
            reason_of(&net, n, Move::Decline).as_deref(),
            Some("no engineer free this week")
        );
    }
    // given
    let mut net = Net::at(S::WaitingApproval);
    // when
    net.given(&alice(), reject("the fan is still loud"));
    net.flush();
    // then
    for n in [LEAD, PARTNER] {
        assert_eq!(net.status(n), S::InProgress);
        assert_eq!(
            reason_of(&net, n, Move::Reject).as_deref(),
            Some("the fan is still loud")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Implied moves: the partner's first work starts the link
// ---------------------------------------------------------------------------------------------

/// The partner's kinds of work, and whether the item it adds is shared.
fn works() -> Vec<(&'static str, Command, Option<bool>)> {
    vec![
        ("note", note(item(1), "looking at it", false), Some(true)),
        (
            "internal note",
            note(item(1), "own notes", true),
            Some(false),
        ),
        ("time", time(item(1), "1.5"), Some(true)),
        ("charge", add_charge(item(1), "2"), Some(true)),
        ("attachment", add_attachment(item(1), false), Some(true)),
        ("status change", status("In Progress"), None),
    ]
}

#[test]
fn given_accepted_when_partner_does_its_first_work_then_started_is_prepended() {
    for (what, cmd, shared) in works() {
        // given
        let mut net = Net::at(S::Accepted);
        let known = net.ticket(PARTNER).known();
        // when
        let r = net.when(&carol(), cmd);
        // then
        let events = r.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(events.len(), 2, "{what}: {events:?}");
        assert_eq!(
            events[0],
            Event::Outsource {
                link: link1(),
                change: LinkChange::Started
            },
            "{what}"
        );
        assert_eq!(change_of(&events[1]), None, "{what}: the work follows");
        assert_eq!(net.status(PARTNER), S::InProgress, "{what}");
        // the work is authored knowing the Start
        let work_seq = net.node(PARTNER).log.last().expect("work").0.link_seq;
        assert_eq!(work_seq, known + 1, "{what}");
        net.flush();
        assert_eq!(net.status(LEAD), S::InProgress, "{what}");
        let start = net
            .link(LEAD)
            .transitions
            .iter()
            .position(|t| t.mv == Move::Start)
            .unwrap_or_else(|| panic!("{what}: no Start on the lead"));
        assert_eq!(net.link(LEAD).transitions[start].side, Side::Partner);
        assert!(net.link(LEAD).effective[start], "{what}");
        if let Some(shared) = shared {
            let on_lead = net.ticket(LEAD).items.get(&item(1));
            assert_eq!(on_lead.is_some(), shared, "{what}: reached the lead");
            let mine = net.item(PARTNER, item(1));
            let expected = if shared {
                Sharing::Shared
            } else {
                Sharing::Internal
            };
            assert_eq!(net.ticket(PARTNER).sharing(mine), expected, "{what}");
            if let Some(i) = on_lead {
                assert_eq!(net.ticket(LEAD).sharing(i), Sharing::Shared, "{what}");
            }
        }
    }
}

#[test]
fn given_accepted_when_lead_works_then_no_start_and_still_accepted() {
    for (what, cmd, _) in works() {
        // given
        let mut net = Net::at(S::Accepted);
        // when
        let events = net.when(&alice(), cmd).expect("accepted");
        // then
        assert!(
            events.iter().all(|e| change_of(e).is_none()),
            "{what}: {events:?}"
        );
        net.flush();
        assert_eq!(net.status(LEAD), S::Accepted, "{what}");
        assert_eq!(net.status(PARTNER), S::Accepted, "{what}");
    }
}

#[test]
fn given_other_statuses_when_partner_works_then_no_start() {
    for from in [S::Assigned, S::InProgress, S::WaitingApproval, S::Declined] {
        for (what, cmd, _) in works() {
            // given
            let mut net = Net::at(from);
            // when
            let events = net.when(&carol(), cmd).expect("accepted");
            // then
            assert!(
                events.iter().all(|e| change_of(e).is_none()),
                "{from} {what}: {events:?}"
            );
            net.flush();
            assert_eq!(net.status(LEAD), from, "{from} {what}");
            assert_eq!(net.status(PARTNER), from, "{from} {what}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Implied moves: a ticket status of Complete completes the link
// ---------------------------------------------------------------------------------------------

#[test]
fn given_live_or_waiting_link_when_either_side_sets_ticket_complete_then_link_complete_on_both() {
    for from in [S::Accepted, S::InProgress, S::WaitingApproval] {
        for side in [Side::Lead, Side::Partner] {
            // given
            let mut net = Net::at(from);
            let me = name(side);
            let was = net.ticket(me).status.clone();
            let sent_before = net.sent();
            let case = format!("{side} from {from}");
            // when
            let events = net
                .when(&user(side), status("complete"))
                .unwrap_or_else(|e| panic!("{case}: {e}"));
            // then
            let changed = Event::StatusChanged {
                from: was,
                to: "Complete".into(),
            };
            let by_status = Event::Outsource {
                link: link1(),
                change: LinkChange::CompletedByStatus,
            };
            let expected = if side == Side::Partner && from == S::Accepted {
                let started = Event::Outsource {
                    link: link1(),
                    change: LinkChange::Started,
                };
                vec![started, changed, by_status.clone()]
            } else {
                vec![changed, by_status.clone()]
            };
            // the lead also records the partner's work (a cost line and a note), kept local
            let events = if side == Side::Lead {
                assert!(
                    matches!(
                        &events[events.len() - 2..],
                        [
                            Event::ChargeAdded { charge, .. },
                            Event::NoteAdded { internal: true, .. }
                        ] if !charge.billable
                    ),
                    "{case}: {events:?}"
                );
                events[..events.len() - 2].to_vec()
            } else {
                events
            };
            assert_eq!(events, expected, "{case}");
            assert_eq!(net.ticket(me).status, "Complete", "{case}");
            assert_eq!(net.status(me), S::Complete, "{case}");
            // only the link moves cross, not the ticket status
            let routed: Vec<Event> = net
                .sent_since(sent_before)
                .into_iter()
                .map(|(_, _, e)| e)
                .collect();
            assert!(routed.contains(&by_status), "{case}: {routed:?}");
            assert!(routed.iter().all(|e| change_of(e).is_some()), "{case}");
            net.flush();
            assert_eq!(net.status(LEAD), S::Complete, "{case}");
            assert_eq!(net.status(PARTNER), S::Complete, "{case}");
        }
    }
}

#[test]
fn given_assigned_or_ended_link_when_ticket_set_complete_then_link_unchanged() {
    for from in [S::Assigned, S::Declined, S::Canceled, S::Complete] {
        for side in [Side::Lead, Side::Partner] {
            // given
            let mut net = Net::at(from);
            // when
            let events = net
                .when(&user(side), status("Complete"))
                .unwrap_or_else(|e| panic!("{side} {from}: {e}"));
            // then
            assert!(
                matches!(&events[..], [Event::StatusChanged { .. }]),
                "{side} {from}: {events:?}"
            );
            net.flush();
            assert_eq!(net.status(LEAD), from);
            assert_eq!(net.status(PARTNER), from);
        }
    }
}

#[test]
fn given_waiting_approval_when_lead_rejects_then_sync_resumes() {
    // given
    let mut net = Net::at(S::WaitingApproval);
    net.given(&carol(), note(item(1), "while waiting", false));
    assert_eq!(
        net.pending().len(),
        0,
        "nothing syncs while Waiting Approval"
    );
    // when
    net.given(&alice(), reject("not done"));
    net.flush();
    net.given(&carol(), note(item(2), "after the rejection", false));
    net.flush();
    // then
    assert!(!net.ticket(LEAD).items.contains_key(&item(1)));
    let i = net.item(LEAD, item(2));
    assert_eq!(net.ticket(LEAD).sharing(i), Sharing::Shared);
    assert_eq!(
        net.ticket(PARTNER).sharing(net.item(PARTNER, item(1))),
        Sharing::NotShared
    );
}
