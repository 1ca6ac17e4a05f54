//! The sync rules of the product brief (§3, §5), one by one, through `sync::route` (what an
//! instance sends) and `sync::receive` (what it accepts, converts or quarantines).
//!
//! Items and links are made by deciding commands on an in-memory two-instance network (see
//! `common`); events that a misbehaving sender might put on the wire are injected as wire
//! messages and must be quarantined, never applied.

mod common;

use common::*;
use ticketsync_domain::sync::{self, time_as_note, Incoming, QuarantineKind};
use ticketsync_domain::DomainError;
use ticketsync_domain::{
    Command, Event, EventMeta, Item, ItemBody, ItemId, ItemKind, LinkChange, OutsourceCommand,
    OutsourceStatus, Sharing, Side, Snapshot, Timestamp,
};

use OutsourceStatus as S;

const KINDS: [ItemKind; 4] = [
    ItemKind::Note,
    ItemKind::Time,
    ItemKind::Charge,
    ItemKind::Attachment,
];

/// The command that adds a (non-internal) item of `kind`.
fn add(kind: ItemKind, id: ItemId) -> Command {
    match kind {
        ItemKind::Note => note(id, "a note", false),
        ItemKind::Time => time(id, "1.5"),
        ItemKind::Charge => add_charge(id, "2"),
        ItemKind::Attachment => add_attachment(id, false),
    }
}

fn sharing(net: &Net, n: &str, id: ItemId) -> Sharing {
    net.ticket(n).sharing(net.item(n, id))
}

/// The routed non-link events since wire position `from`.
fn items_sent_since(net: &Net, from: usize) -> Vec<(String, String, Event)> {
    net.sent_since(from)
        .into_iter()
        .filter(|(_, _, e)| change_of(e).is_none())
        .collect()
}

fn meta_of(net: &Net, who: &ticketsync_domain::Actor) -> EventMeta {
    EventMeta {
        actor: who.clone(),
        at: Timestamp(net.now),
        link_seq: net
            .node(who.instance.as_str())
            .state
            .as_ref()
            .map_or(0, |t| t.known()),
    }
}

/// Puts `event` on the wire from `from` to `to` with `meta` and delivers it; returns the
/// quarantine kind, after checking the receiver's ticket did not change.
#[track_caller]
fn quarantined(
    net: &mut Net,
    from: &str,
    to: &str,
    meta: EventMeta,
    event: Event,
) -> QuarantineKind {
    let before = net.node(to).state.clone();
    let log_len = net.node(to).log.len();
    let id = 1_000_000 + net.wire.len() as u64;
    net.wire.push(Msg {
        id,
        from: inst(from),
        to: inst(to),
        meta,
        event: event.clone(),
    });
    let idx = net.wire.len() - 1;
    match net.deliver(idx) {
        Err(q) => {
            assert_eq!(net.node(to).state, before, "{event:?} was applied");
            assert_eq!(net.node(to).log.len(), log_len);
            assert_eq!(net.node(to).quarantined.last().map(|(_, q)| q), Some(&q));
            assert!(!q.detail.is_empty());
            q.kind
        }
        Ok(applied) => panic!("{event:?} from {from} to {to} was accepted (applied: {applied})"),
    }
}

/// InProgress, with shared items by both sides: the lead's note 1, time 2, charge 3, and
/// the partner's note 11, time 12, charge 13.
fn in_progress_with_items() -> Net {
    let mut net = Net::at(S::InProgress);
    net.given(&alice(), note(item(1), "lead note", false));
    net.given(&alice(), time(item(2), "1.5"));
    net.given(&alice(), add_charge(item(3), "2"));
    net.given(&carol(), note(item(11), "partner note", false));
    net.given(&carol(), time(item(12), "2"));
    net.given(&carol(), add_charge(item(13), "1"));
    net.flush();
    for id in [1, 2, 3, 11, 12, 13] {
        for n in [LEAD, PARTNER] {
            assert_eq!(sharing(&net, n, item(id)), Sharing::Shared, "{n} item {id}");
        }
    }
    net
}

// ---------------------------------------------------------------------------------------------
// When items sync
// ---------------------------------------------------------------------------------------------

#[test]
fn given_ticket_never_outsourced_when_items_added_then_nothing_routes_and_not_shared() {
    for kind in KINDS {
        // given
        let mut net = Net::created();
        // when
        net.given(&alice(), add(kind, item(1)));
        // then
        assert_eq!(net.sent(), 0, "{kind}");
        assert_eq!(sharing(&net, LEAD, item(1)), Sharing::NotShared, "{kind}");
        // and outsourcing it later does not share it
        net.given(&alice(), send_to(link1(), PARTNER, terms_v1()));
        net.flush();
        net.given(&carol(), accept());
        net.flush();
        assert_eq!(sharing(&net, LEAD, item(1)), Sharing::NotShared, "{kind}");
        assert!(!net.ticket(PARTNER).items.contains_key(&item(1)));
    }
}

#[test]
fn given_link_not_live_when_either_side_adds_items_then_nothing_routes_and_items_are_not_shared() {
    for from in [
        S::Assigned,
        S::WaitingApproval,
        S::Complete,
        S::Declined,
        S::Canceled,
        S::Expired,
    ] {
        for side in [Side::Lead, Side::Partner] {
            for kind in KINDS {
                // given
                let mut net = Net::at(from);
                let (me, other) = (name(side), name(side.other()));
                let sent = net.sent();
                let before = net.ticket(me).clone();
                let case = format!("{kind} by the {side} at {from}");
                // when
                let events = net.given(&user(side), add(kind, item(1)));
                // then
                assert_eq!(events.len(), 1, "{case}: {events:?}");
                assert_eq!(net.sent(), sent, "{case}: nothing routes");
                assert_eq!(sync::route(&before, &inst(me), &events[0]), None, "{case}");
                assert_eq!(sharing(&net, me, item(1)), Sharing::NotShared, "{case}");
                assert!(!net.ticket(other).items.contains_key(&item(1)), "{case}");
            }
        }
    }
}

#[test]
fn given_live_link_when_either_side_adds_items_then_they_route_and_are_shared_on_both() {
    for from in [S::Accepted, S::InProgress] {
        for side in [Side::Lead, Side::Partner] {
            for kind in KINDS {
                // given
                let mut net = Net::at(from);
                let (me, other) = (name(side), name(side.other()));
                let sent = net.sent();
                let case = format!("{kind} by the {side} at {from}");
                // when
                net.given(&user(side), add(kind, item(1)));
                // then
                let routed = items_sent_since(&net, sent);
                assert_eq!(routed.len(), 1, "{case}: {routed:?}");
                assert_eq!((routed[0].0.as_str(), routed[0].1.as_str()), (me, other));
                net.flush();
                for n in [LEAD, PARTNER] {
                    assert_eq!(sharing(&net, n, item(1)), Sharing::Shared, "{case}: {n}");
                }
                assert_eq!(net.item(other, item(1)).author, user(side), "{case}");
                assert!(net.item(other, item(1)).received, "{case}");
                assert!(!net.item(me, item(1)).received, "{case}");
            }
        }
    }
}

#[test]
fn not_shared_is_the_mark_the_brief_asks_for() {
    assert_eq!(Sharing::NotShared.name(), "not shared");
    assert_eq!(Sharing::Diverged.name(), "diverged");
}

#[test]
fn given_items_shared_when_link_goes_to_waiting_approval_then_they_stay_shared() {
    // given
    let mut net = in_progress_with_items();
    // when
    net.given(&carol(), out(OutsourceCommand::Complete));
    net.flush();
    net.given(&alice(), out(OutsourceCommand::Approve));
    net.flush();
    // then what was shared stays shared on both sides
    for id in [1, 2, 3, 11, 12, 13] {
        for n in [LEAD, PARTNER] {
            assert_eq!(sharing(&net, n, item(id)), Sharing::Shared, "{n} item {id}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Internal items
// ---------------------------------------------------------------------------------------------

#[test]
fn given_live_link_when_internal_note_or_attachment_added_then_nothing_routes() {
    for side in [Side::Lead, Side::Partner] {
        // given
        let mut net = Net::at(S::InProgress);
        let me = name(side);
        let sent = net.sent();
        // when
        net.given(&user(side), note(item(1), "between us", true));
        net.given(&user(side), add_attachment(item(2), true));
        net.given(
            &user(side),
            Command::EditNote {
                item: item(1),
                text: Some("still between us".into()),
                internal: None,
            },
        );
        // then
        assert_eq!(net.sent(), sent, "{side}: nothing routes");
        for id in [item(1), item(2)] {
            assert_eq!(sharing(&net, me, id), Sharing::Internal, "{side}");
            assert!(!net.ticket(name(side.other())).items.contains_key(&id));
        }
    }
}

#[test]
fn given_shared_note_when_author_makes_it_internal_then_refused_and_nothing_sent() {
    // given
    let mut net = in_progress_with_items();
    let sent = net.sent();
    // when
    let r = net.when(
        &alice(),
        Command::EditNote {
            item: item(1),
            text: Some("secret now".into()),
            internal: Some(true),
        },
    );
    // then: flipping the flag would leave the sides disagreeing on what is shared
    let Err(DomainError::Refused(refusal)) = r else {
        panic!("expected a refusal, got {r:?}");
    };
    assert!(
        refusal.state.contains("internal flag is fixed"),
        "{refusal}"
    );
    assert_eq!(net.sent(), sent);
    let ItemBody::Note { text, .. } = &net.item(PARTNER, item(1)).body else {
        panic!("note expected");
    };
    assert_eq!(text, "lead note");
}

#[test]
fn given_internal_items_on_the_wire_when_received_then_quarantined_as_internal() {
    for (from, to, who) in [(PARTNER, LEAD, carol()), (LEAD, PARTNER, alice())] {
        // given
        let mut net = in_progress_with_items();
        let own_note = if from == LEAD { item(1) } else { item(11) };
        let internal_ones = [
            Event::NoteAdded {
                item: item(50),
                text: "between us".into(),
                internal: true,
            },
            Event::AttachmentAdded {
                item: item(51),
                attachment: attachment(true),
            },
            Event::NoteEdited {
                item: own_note,
                text: "secret".into(),
                internal: true,
            },
        ];
        for ev in internal_ones {
            // when
            let meta = meta_of(&net, &who);
            let kind = quarantined(&mut net, from, to, meta, ev.clone());
            // then
            assert_eq!(kind, QuarantineKind::Internal, "{from} → {to}: {ev:?}");
        }
        assert_eq!(QuarantineKind::Internal.name(), "internal_item");
    }
}

// ---------------------------------------------------------------------------------------------
// Edits and deletes
// ---------------------------------------------------------------------------------------------

#[test]
fn given_shared_items_when_their_authors_edit_and_delete_them_then_the_changes_sync() {
    // given
    let mut net = in_progress_with_items();
    let sent = net.sent();
    // when the lead edits its note and charge and deletes its time entry
    net.given(&alice(), edit_note(item(1), "lead note, corrected"));
    net.given(
        &alice(),
        Command::EditCharge {
            item: item(3),
            patch: ticketsync_domain::command::ChargePatch {
                quantity: Some(d("5")),
                ..Default::default()
            },
        },
    );
    net.given(
        &alice(),
        Command::DeleteItem {
            item: item(2),
            kind: ItemKind::Time,
        },
    );
    // and the partner edits its time entry and deletes its note
    net.given(
        &carol(),
        Command::EditTime {
            item: item(12),
            patch: ticketsync_domain::command::TimePatch {
                hours: Some(d("3.25")),
                ..Default::default()
            },
        },
    );
    net.given(
        &carol(),
        Command::DeleteItem {
            item: item(11),
            kind: ItemKind::Note,
        },
    );
    // then every change routes to the other side
    let routed = items_sent_since(&net, sent);
    assert_eq!(routed.len(), 5, "{routed:?}");
    net.flush();
    let lead_note = &net.item(PARTNER, item(1)).body;
    assert_eq!(
        lead_note,
        &ItemBody::Note {
            text: "lead note, corrected".into(),
            internal: false
        }
    );
    assert_eq!(
        net.item(PARTNER, item(3)).body,
        ItemBody::Charge(charge("5").validated().expect("charge"))
    );
    assert!(net.item(PARTNER, item(2)).deleted);
    assert!(net.item(LEAD, item(11)).deleted);
    let ItemBody::Time(e) = &net.item(LEAD, item(12)).body else {
        panic!("time expected");
    };
    assert_eq!(e.hours, d("3.25"));
    for id in [1, 2, 3, 11, 12] {
        for n in [LEAD, PARTNER] {
            let i = net.item(n, item(id));
            assert!(!i.diverged, "{n} item {id}");
            assert_eq!(net.ticket(n).sharing(i), Sharing::Shared, "{n} item {id}");
        }
    }
}

#[test]
fn given_shared_items_when_the_other_side_edits_or_deletes_them_then_local_and_diverged() {
    // (editor, item authored by the other side, command)
    let cases: Vec<(Side, ItemId, Command)> = vec![
        (Side::Lead, item(11), edit_note(item(11), "lead's view")),
        (
            Side::Lead,
            item(12),
            Command::EditTime {
                item: item(12),
                patch: ticketsync_domain::command::TimePatch {
                    billable: Some(false),
                    ..Default::default()
                },
            },
        ),
        (
            Side::Lead,
            item(13),
            Command::DeleteItem {
                item: item(13),
                kind: ItemKind::Charge,
            },
        ),
        (
            Side::Partner,
            item(3),
            Command::EditCharge {
                item: item(3),
                patch: ticketsync_domain::command::ChargePatch {
                    quantity: Some(d("9")),
                    ..Default::default()
                },
            },
        ),
        // the lead's time entry is a note on the partner's side
        (Side::Partner, item(2), edit_note(item(2), "partner's view")),
        (
            Side::Partner,
            item(1),
            Command::DeleteItem {
                item: item(1),
                kind: ItemKind::Note,
            },
        ),
    ];
    for (side, id, cmd) in cases {
        // given
        let mut net = in_progress_with_items();
        let (me, other) = (name(side), name(side.other()));
        let theirs = net.item(other, id).clone();
        let sent = net.sent();
        let case = format!("{cmd:?} by the {side}");
        // when
        net.given(&user(side), cmd);
        // then
        assert_eq!(net.sent(), sent, "{case}: stays local");
        net.flush();
        let mine = net.item(me, id);
        assert!(mine.diverged, "{case}");
        assert_eq!(net.ticket(me).sharing(mine), Sharing::Diverged, "{case}");
        assert_eq!(net.item(other, id), &theirs, "{case}: untouched over there");
        assert_eq!(sharing(&net, other, id), Sharing::Shared, "{case}");
    }
}

// ---------------------------------------------------------------------------------------------
// Conversions
// ---------------------------------------------------------------------------------------------

#[test]
fn given_live_link_when_lead_logs_time_then_partner_gets_a_note_and_its_edits_and_delete() {
    // given
    let mut net = Net::at(S::InProgress);
    // when
    net.given(&alice(), time(item(1), "1.5"));
    net.flush();
    // then
    let entry1 = entry("1.5").validated().expect("entry");
    let text1 = time_as_note(&alice(), &entry1);
    assert!(text1.contains("alice@acme"), "{text1}");
    assert!(text1.contains("1.5 h"), "{text1}");
    assert!(text1.contains("replaced the fan"), "{text1}");
    let on_partner = net.item(PARTNER, item(1));
    assert_eq!(
        on_partner.body,
        ItemBody::Note {
            text: text1,
            internal: false
        },
        "the lead's time is not the partner's to bill"
    );
    assert_eq!(on_partner.author, alice());
    assert_eq!(sharing(&net, PARTNER, item(1)), Sharing::Shared);
    assert_eq!(net.item(LEAD, item(1)).body, ItemBody::Time(entry1));
    // when the lead edits the entry
    net.given(
        &alice(),
        Command::EditTime {
            item: item(1),
            patch: ticketsync_domain::command::TimePatch {
                hours: Some(d("2")),
                summary: Some("replaced the fan and the PSU".into()),
                ..Default::default()
            },
        },
    );
    net.flush();
    // then the partner's note follows
    let ItemBody::Time(entry2) = net.item(LEAD, item(1)).body.clone() else {
        panic!("time expected");
    };
    assert_eq!(
        net.item(PARTNER, item(1)).body,
        ItemBody::Note {
            text: time_as_note(&alice(), &entry2),
            internal: false
        }
    );
    assert!(!net.item(PARTNER, item(1)).diverged);
    // when the lead deletes it
    net.given(
        &alice(),
        Command::DeleteItem {
            item: item(1),
            kind: ItemKind::Time,
        },
    );
    net.flush();
    // then so is the partner's note
    assert!(net.item(PARTNER, item(1)).deleted);
    assert!(!net.item(PARTNER, item(1)).diverged);
}

#[test]
fn given_time_as_note_then_text_names_author_hours_date_role_and_summary() {
    let e = entry("1.5").validated().expect("entry");
    assert_eq!(
        time_as_note(&alice(), &e),
        "Time logged by alice@acme: 1.5 h on 2025-03-14 (Engineer): replaced the fan"
    );
    let bare = ticketsync_domain::TimeEntry {
        role: None,
        summary: String::new(),
        ..e
    };
    assert_eq!(
        time_as_note(&alice(), &bare),
        "Time logged by alice@acme: 1.5 h on 2025-03-14"
    );
}

#[test]
fn given_live_link_when_partner_logs_time_and_charges_then_lead_gets_time_and_charges() {
    // given
    let mut net = Net::at(S::InProgress);
    // when
    net.given(&carol(), time(item(1), "2.5"));
    net.given(&carol(), add_charge(item(2), "3"));
    net.flush();
    // then
    assert_eq!(
        net.item(LEAD, item(1)).body,
        ItemBody::Time(entry("2.5").validated().expect("entry"))
    );
    assert_eq!(
        net.item(LEAD, item(2)).body,
        ItemBody::Charge(charge("3").validated().expect("charge"))
    );
    // and the lead's charges reach the partner as charges
    net.given(&alice(), add_charge(item(3), "1"));
    net.flush();
    assert_eq!(net.item(PARTNER, item(3)).body.kind(), ItemKind::Charge);
}

#[test]
fn given_live_link_when_partner_adds_a_note_then_lead_stores_it_internal_yet_shared() {
    // given
    let mut net = Net::at(S::InProgress);
    // when
    net.given(&carol(), note(item(1), "the fan was dusty", false));
    net.flush();
    // then
    let on_lead: &Item = net.item(LEAD, item(1));
    assert_eq!(
        on_lead.body,
        ItemBody::Note {
            text: "the fan was dusty".into(),
            internal: true
        },
        "never shown to the lead's customer"
    );
    assert!(on_lead.internal() && on_lead.received);
    assert_eq!(sharing(&net, LEAD, item(1)), Sharing::Shared);
    assert_eq!(sharing(&net, PARTNER, item(1)), Sharing::Shared);
    // when the partner edits it
    net.given(&carol(), edit_note(item(1), "the fan was very dusty"));
    net.flush();
    // then the lead's copy follows and stays internal
    assert_eq!(
        net.item(LEAD, item(1)).body,
        ItemBody::Note {
            text: "the fan was very dusty".into(),
            internal: true
        }
    );
    assert_eq!(sharing(&net, LEAD, item(1)), Sharing::Shared);
    // and the lead's notes arrive at the partner as they are
    net.given(&alice(), note(item(2), "thanks", false));
    net.flush();
    assert_eq!(
        net.item(PARTNER, item(2)).body,
        ItemBody::Note {
            text: "thanks".into(),
            internal: false
        }
    );
}

#[test]
fn given_shared_item_when_its_author_edits_it_while_not_live_then_the_edit_stays_local() {
    // given
    let mut net = in_progress_with_items();
    net.given(&carol(), out(OutsourceCommand::Complete));
    net.flush();
    let sent = net.sent();
    // when the partner edits its shared note during review
    net.given(&carol(), edit_note(item(11), "changed during review"));
    // then the change is kept and marked on the partner's side, and not sent
    assert_eq!(net.sent(), sent);
    assert_eq!(sharing(&net, PARTNER, item(11)), Sharing::Diverged);
    let ItemBody::Note { text, .. } = &net.item(LEAD, item(11)).body else {
        panic!("note expected");
    };
    assert_eq!(text, "partner note");
}

// ---------------------------------------------------------------------------------------------
// What a receiver refuses
// ---------------------------------------------------------------------------------------------

#[test]
fn given_event_authored_by_another_instance_than_the_sender_then_wrong_sender() {
    // given
    let mut net = Net::new(&[LEAD, PARTNER, OTHER]);
    net.given(&alice(), create());
    net.given(&alice(), send_to(link1(), PARTNER, terms_v1()));
    net.flush();
    net.given(&carol(), accept());
    net.flush();
    // when bolt relays an event authored on cobra
    let meta = EventMeta {
        actor: dave(),
        at: Timestamp(T0),
        link_seq: 2,
    };
    let kind = quarantined(
        &mut net,
        PARTNER,
        LEAD,
        meta,
        Event::NoteAdded {
            item: item(1),
            text: "hi".into(),
            internal: false,
        },
    );
    // then
    assert_eq!(kind, QuarantineKind::WrongSender);
    // when cobra sends bolt an offer that names acme as the lead
    let offer = Event::Outsource {
        link: link_id(7),
        change: LinkChange::Sent {
            lead: inst(LEAD),
            partner: inst(PARTNER),
            terms: terms_v1(),
            snapshot: Snapshot {
                title: "t".into(),
                description: String::new(),
                customer: None,
            },
        },
    };
    let mut fresh = Net::new(&[LEAD, PARTNER, OTHER]);
    let meta = EventMeta {
        actor: dave(),
        at: Timestamp(T0),
        link_seq: 0,
    };
    let kind = quarantined(&mut fresh, OTHER, PARTNER, meta.clone(), offer.clone());
    // then
    assert_eq!(kind, QuarantineKind::WrongSender);
    // and an offer authored by acme but sent by cobra
    let meta = EventMeta {
        actor: alice(),
        ..meta
    };
    assert_eq!(
        quarantined(&mut fresh, OTHER, PARTNER, meta, offer),
        QuarantineKind::WrongSender
    );
    assert!(fresh.node(PARTNER).state.is_none());
}

#[test]
fn given_offer_for_another_partner_when_received_then_wrong_receiver() {
    // given
    let mut net = Net::new(&[LEAD, PARTNER, OTHER]);
    net.given(&alice(), create());
    let events = net.given(&alice(), send_to(link1(), OTHER, terms_v1()));
    let meta = net.node(LEAD).log.last().expect("sent").0.clone();
    // when the offer meant for cobra reaches bolt
    let kind = quarantined(&mut net, LEAD, PARTNER, meta, events[0].clone());
    // then
    assert_eq!(kind, QuarantineKind::WrongReceiver);
    assert!(net.node(PARTNER).state.is_none());
    // and cobra itself takes it
    net.flush();
    assert_eq!(net.status(OTHER), S::Assigned);
}

#[test]
fn given_events_about_tickets_or_links_not_linked_to_the_sender_then_not_linked() {
    // given acme's ticket, outsourced to bolt and accepted
    let mut net = Net::new(&[LEAD, PARTNER, OTHER]);
    net.given(&alice(), create());
    net.given(&alice(), send_to(link1(), PARTNER, terms_v1()));
    net.flush();
    net.given(&carol(), accept());
    net.flush();
    let a_note = Event::NoteAdded {
        item: item(1),
        text: "hi".into(),
        internal: false,
    };
    let dave_meta = EventMeta {
        actor: dave(),
        at: Timestamp(T0),
        link_seq: 2,
    };
    // when cobra (not on the link) sends acme a note and an acceptance about it
    let k1 = quarantined(&mut net, OTHER, LEAD, dave_meta.clone(), a_note.clone());
    let k2 = quarantined(
        &mut net,
        OTHER,
        LEAD,
        dave_meta.clone(),
        Event::Outsource {
            link: link1(),
            change: LinkChange::Accepted {
                terms_version: 1,
                organization: None,
            },
        },
    );
    // when bolt sends a move of a link that does not exist
    let carol_meta = meta_of(&net, &carol());
    let alice_meta = meta_of(&net, &alice());
    let k3 = quarantined(
        &mut net,
        PARTNER,
        LEAD,
        carol_meta,
        Event::Outsource {
            link: link_id(99),
            change: LinkChange::Completed,
        },
    );
    // when acme sends cobra a note about a ticket cobra does not have
    let k4 = quarantined(&mut net, LEAD, OTHER, alice_meta.clone(), a_note.clone());
    // when acme sends bolt a second offer of the ticket while the first link is live
    let second = Event::Outsource {
        link: link_id(2),
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
    let k5 = quarantined(&mut net, LEAD, PARTNER, alice_meta, second);
    // then
    assert_eq!(
        [k1, k2, k3, k4, k5],
        [QuarantineKind::NotLinked; 5],
        "cobra note, cobra accept, unknown link, unknown ticket, second live offer"
    );
    // and on a ticket that was never outsourced
    let mut plain = Net::new(&[LEAD, PARTNER]);
    plain.given(&alice(), create());
    let k6 = quarantined(
        &mut plain,
        PARTNER,
        LEAD,
        EventMeta {
            actor: carol(),
            at: Timestamp(T0),
            link_seq: 0,
        },
        a_note,
    );
    assert_eq!(k6, QuarantineKind::NotLinked);
}

#[test]
fn given_link_when_a_side_sends_the_other_sides_move_then_role_forbidden() {
    // given
    let mut net = Net::at(S::WaitingApproval);
    // when the partner sends lead-only moves
    let lead_only = [
        LinkChange::Approved,
        LinkChange::Rejected {
            reason: "no".into(),
        },
        LinkChange::Canceled,
        LinkChange::Expired,
        LinkChange::ForceCompleted,
    ];
    for change in lead_only {
        let ev = Event::Outsource {
            link: link1(),
            change: change.clone(),
        };
        let meta = meta_of(&net, &carol());
        // then
        assert_eq!(
            quarantined(&mut net, PARTNER, LEAD, meta, ev),
            QuarantineKind::RoleForbidden,
            "partner sent {change:?}"
        );
    }
    // when the lead sends partner-only moves
    let partner_only = [
        LinkChange::Accepted {
            terms_version: 1,
            organization: None,
        },
        LinkChange::Declined {
            reason: "no".into(),
        },
        LinkChange::Started,
        LinkChange::Completed,
    ];
    for change in partner_only {
        let ev = Event::Outsource {
            link: link1(),
            change: change.clone(),
        };
        let meta = meta_of(&net, &alice());
        // then
        assert_eq!(
            quarantined(&mut net, LEAD, PARTNER, meta, ev),
            QuarantineKind::RoleForbidden,
            "lead sent {change:?}"
        );
    }
    assert_eq!(net.status(LEAD), S::WaitingApproval);
    assert_eq!(net.status(PARTNER), S::WaitingApproval);
}

#[test]
fn given_link_when_either_side_sends_its_own_moves_then_they_are_received() {
    // The counterpart of RoleForbidden: receive accepts each side's own moves.
    let net = Net::at(S::Assigned);
    let lead = net.ticket(LEAD).clone();
    let partner = net.ticket(PARTNER).clone();
    let proposal = LinkChange::TermsProposed {
        terms: terms_other("1"),
    };
    for change in [
        LinkChange::Canceled,
        LinkChange::ForceCompleted,
        proposal.clone(),
    ] {
        let ev = Event::Outsource {
            link: link1(),
            change,
        };
        let r = sync::receive(
            Some(&partner),
            &inst(PARTNER),
            &inst(LEAD),
            &meta_of(&net, &alice()),
            ev.clone(),
            &net.policy,
        );
        assert_eq!(r, Ok(vec![Incoming::Remote(ev)]));
    }
    for change in [
        LinkChange::Accepted {
            terms_version: 1,
            organization: None,
        },
        LinkChange::CompletedByStatus,
        proposal,
    ] {
        let ev = Event::Outsource {
            link: link1(),
            change,
        };
        let r = sync::receive(
            Some(&lead),
            &inst(LEAD),
            &inst(PARTNER),
            &meta_of(&net, &carol()),
            ev.clone(),
            &net.policy,
        );
        assert_eq!(r, Ok(vec![Incoming::Remote(ev)]));
    }
}

#[test]
fn given_shared_items_when_a_side_sends_changes_of_items_it_did_not_author_then_not_author() {
    // given
    let mut net = in_progress_with_items();
    let cases = [
        // the lead sends an edit and a delete of the partner's note and time
        (
            LEAD,
            PARTNER,
            alice(),
            Event::NoteEdited {
                item: item(11),
                text: "mine now".into(),
                internal: false,
            },
        ),
        (
            LEAD,
            PARTNER,
            alice(),
            Event::ItemDeleted {
                item: item(12),
                kind: ItemKind::Time,
            },
        ),
        // the partner sends edits and a delete of the lead's items
        (
            PARTNER,
            LEAD,
            carol(),
            Event::ChargeEdited {
                item: item(3),
                charge: charge("7").validated().expect("charge"),
            },
        ),
        (
            PARTNER,
            LEAD,
            carol(),
            Event::TimeEdited {
                item: item(2),
                entry: entry("4").validated().expect("entry"),
            },
        ),
        (
            PARTNER,
            LEAD,
            carol(),
            Event::ItemDeleted {
                item: item(1),
                kind: ItemKind::Note,
            },
        ),
    ];
    for (from, to, who, ev) in cases {
        // when
        let meta = meta_of(&net, &who);
        let kind = quarantined(&mut net, from, to, meta, ev.clone());
        // then
        assert_eq!(kind, QuarantineKind::NotAuthor, "{from} → {to}: {ev:?}");
    }
}

#[test]
fn given_live_link_when_changes_of_unknown_items_arrive_then_unknown_item() {
    // given
    let mut net = Net::at(S::InProgress);
    let cases = [
        (
            LEAD,
            PARTNER,
            alice(),
            Event::NoteEdited {
                item: item(77),
                text: "?".into(),
                internal: false,
            },
        ),
        (
            LEAD,
            PARTNER,
            alice(),
            Event::TimeEdited {
                item: item(77),
                entry: entry("1").validated().expect("entry"),
            },
        ),
        (
            PARTNER,
            LEAD,
            carol(),
            Event::ChargeEdited {
                item: item(77),
                charge: charge("1").validated().expect("charge"),
            },
        ),
        (
            PARTNER,
            LEAD,
            carol(),
            Event::ItemDeleted {
                item: item(77),
                kind: ItemKind::Attachment,
            },
        ),
    ];
    for (from, to, who, ev) in cases {
        // when
        let meta = meta_of(&net, &who);
        let kind = quarantined(&mut net, from, to, meta, ev.clone());
        // then
        assert_eq!(kind, QuarantineKind::UnknownItem, "{from} → {to}: {ev:?}");
    }
}

#[test]
fn given_linked_ticket_when_creation_or_status_arrives_then_not_replicable() {
    // given
    let mut net = Net::at(S::InProgress);
    let created = Event::TicketCreated {
        title: "again".into(),
        description: String::new(),
        customer: None,
        status: "New".into(),
    };
    let status_changed = Event::StatusChanged {
        from: "New".into(),
        to: "Complete".into(),
    };
    for (from, to, who) in [(LEAD, PARTNER, alice()), (PARTNER, LEAD, carol())] {
        for ev in [created.clone(), status_changed.clone()] {
            // when
            let meta = meta_of(&net, &who);
            let kind = quarantined(&mut net, from, to, meta, ev.clone());
            // then
            assert_eq!(kind, QuarantineKind::NotReplicable, "{from} → {to}: {ev:?}");
        }
    }
    // and a ticket status change is never routed in the first place
    let before = net.ticket(LEAD).clone();
    assert_eq!(sync::route(&before, &inst(LEAD), &status_changed), None);
    assert_eq!(sync::route(&before, &inst(LEAD), &created), None);
}
