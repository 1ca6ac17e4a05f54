//! End-to-end tests of the outsourcing workflow between two real instances (`acme`, the
//! lead, and `bolt`, the service partner) over a real nats-server: the whole flow from
//! pairing to approval, and every transition over the wire with the refusals of the wrong
//! side. The synchronisation step is `sync run --once` on each side in turn.

mod common;
#[path = "common/two.rs"]
mod two;

use common::{GENESIS, REFUSED, USAGE};
use serde_json::Value;
use ticketsync_testkit::wait_until;
use two::*;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// The transitions of the ticket's links as (move, side, effective), in arrival order.
fn moves(v: &Value) -> Vec<(String, String, bool)> {
    v["links"]
        .as_array()
        .expect("links")
        .iter()
        .flat_map(|l| l["transitions"].as_array().expect("transitions").clone())
        .map(|t| {
            (
                t["move"].as_str().expect("move").to_string(),
                t["side"].as_str().expect("side").to_string(),
                t["effective"].as_bool().expect("effective"),
            )
        })
        .collect()
}

/// The links with their transitions, sorted so that arrival order does not matter.
fn link_set(v: &Value) -> Vec<(String, Vec<String>)> {
    v["links"]
        .as_array()
        .expect("links")
        .iter()
        .map(|l| {
            let mut ts: Vec<String> = l["transitions"]
                .as_array()
                .expect("transitions")
                .iter()
                .map(|t| t.to_string())
                .collect();
            ts.sort();
            (l["id"].as_str().expect("link id").to_string(), ts)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// the whole flow
// ---------------------------------------------------------------------------------------

#[test]
fn given_paired_instances_when_a_ticket_is_sent_accepted_worked_completed_and_approved_then_both_sides_agree_at_every_step(
) {
    let (_net, acme, bolt) = acme_and_bolt();
    whole_flow(&acme, &bolt);
}

#[test]
fn given_the_partner_on_postgresql_when_the_whole_flow_runs_then_both_sides_agree_at_every_step() {
    let (_net, acme, bolt) = acme_and_bolt_on(true);
    assert!(
        !bolt.dir.join("ticketsync.db").exists(),
        "bolt should have no SQLite file"
    );
    whole_flow(&acme, &bolt);
    // Every command ran against PostgreSQL: its log verifies there, and holds what
    // bolt's `verify` counted.
    let v = common::json(&bolt.ok(&["verify", "--json"]));
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["checked"].as_u64().expect("checked") > 0, "{v}");
}

/// Pairing to approval between two paired instances, checking both sides at each step.
fn whole_flow(acme: &Site, bolt: &Site) {
    let id = acme.create("Replace the core switch");

    // send with terms
    let out = acme.ok(&[
        "outsource",
        "send",
        &id,
        "--to",
        "bolt",
        "--hourly-rate",
        "80",
        "--currency",
        "EUR",
        "--authorized-hours",
        "10",
        "--instructions",
        "Bring a spare PSU",
        "--respond-within",
        "2d",
    ]);
    assert_eq!(out, format!("{id} Assigned (partner bolt)\n"));
    assert!(
        !bolt.has_ticket(&id),
        "bolt has the ticket before any daemon ran"
    );
    deliver(acme, bolt);
    assert_status(acme, bolt, &id, "Assigned");

    // the partner's ticket keeps the lead's ticket id, with the snapshot and the terms
    let tickets = bolt.tickets();
    assert_eq!(tickets.len(), 1, "bolt's tickets: {tickets:?}");
    assert_eq!(tickets[0]["id"], id.as_str());
    let (lv, pv) = (acme.show(&id), bolt.show(&id));
    assert_eq!(pv["id"], id.as_str());
    assert_eq!(pv["title"], "Replace the core switch");
    assert_eq!(lv["outsource"]["role"], "lead");
    assert_eq!(lv["outsource"]["counterparty"], "bolt");
    assert_eq!(pv["outsource"]["role"], "partner");
    assert_eq!(pv["outsource"]["counterparty"], "acme");
    for v in [&lv, &pv] {
        assert_eq!(v["outsource"]["lead"], "acme");
        assert_eq!(v["outsource"]["partner"], "bolt");
        assert_eq!(v["outsource"]["terms_version"], 1);
        assert_eq!(v["outsource"]["terms"]["rate_type"], "hourly");
        assert_eq!(v["outsource"]["terms"]["rate"], "80");
        assert_eq!(v["outsource"]["terms"]["currency"], "EUR");
        assert_eq!(v["outsource"]["terms"]["authorized_hours"], "10");
        assert_eq!(v["outsource"]["terms"]["instructions"], "Bring a spare PSU");
    }
    assert_eq!(pv["outsource"]["link_id"], lv["outsource"]["link_id"]);
    assert_eq!(pv["outsource"]["terms"], lv["outsource"]["terms"]);

    // accept
    let out = bolt.ok(&["outsource", "accept", &id]);
    assert_eq!(out, format!("{id} Accepted (lead acme)\n"));
    assert_eq!(
        acme.outsource_status(&id).as_deref(),
        Some("Assigned"),
        "the lead learns of the acceptance only through sync"
    );
    deliver(bolt, acme);
    assert_status(acme, bolt, &id, "Accepted");
    assert_eq!(acme.show(&id)["outsource"]["accepted_terms_version"], 1);
    assert_eq!(bolt.show(&id)["outsource"]["accepted_terms_version"], 1);

    // the partner logs time and a note: its first work starts the link
    let bt = bolt.add(&[
        "time",
        "add",
        &id,
        "--hours",
        "1.5",
        "--summary",
        "Swapped the switch",
    ]);
    let bn = bolt.add(&[
        "note",
        "add",
        &id,
        "--text",
        "The old switch had a failed PSU",
    ]);
    assert_eq!(bolt.outsource_status(&id).as_deref(), Some("In Progress"));
    deliver(bolt, acme);
    assert_status(acme, bolt, &id, "In Progress");
    let t = get_item(acme, &id, &bt);
    assert_eq!(t["kind"], "time", "partner time arrives as time: {t}");
    assert_eq!(t["hours"], "1.5");
    assert_eq!(t["summary"], "Swapped the switch");
    assert_eq!(t["author"]["instance"], "bolt");
    assert_eq!(t["author"]["user"], "bob");
    assert_eq!(t["received"], true);
    assert_eq!(t["sharing"], "shared");
    let n = get_item(acme, &id, &bn);
    assert_eq!(n["kind"], "note");
    assert_eq!(n["text"], "The old switch had a failed PSU");
    assert_eq!(
        n["internal"], true,
        "a partner note is internal on the lead: {n}"
    );
    assert_eq!(
        n["sharing"], "shared",
        "and still shared with the partner: {n}"
    );
    assert_eq!(n["received"], true);
    assert_eq!(n["author"]["instance"], "bolt");
    let pn = get_item(bolt, &id, &bn);
    assert_eq!(pn["internal"], false);
    assert_eq!(pn["sharing"], "shared");
    assert_eq!(pn["received"], false);

    // the lead logs time: it reaches the partner as a note, not as time
    let at = acme.add(&[
        "time",
        "add",
        &id,
        "--hours",
        "0.5",
        "--summary",
        "Coordinated site access",
    ]);
    deliver(acme, bolt);
    assert_status(acme, bolt, &id, "In Progress");
    let p = get_item(bolt, &id, &at);
    assert_eq!(
        p["kind"], "note",
        "the lead's time must arrive as a note: {p}"
    );
    let text = p["text"].as_str().expect("note text");
    assert!(
        text.starts_with("Time logged by alice@acme"),
        "note text: {text:?}"
    );
    assert!(text.contains("0.5 h"), "note text: {text:?}");
    assert!(
        text.contains("Coordinated site access"),
        "note text: {text:?}"
    );
    assert_eq!(p["author"]["instance"], "acme");
    assert_eq!(p["received"], true);
    assert_eq!(p["sharing"], "shared");
    let pv = bolt.show(&id);
    assert_eq!(
        pv["totals"]["hours"], "1.5",
        "only the partner's own time counts as time on the partner: {}",
        pv["totals"]
    );
    assert_eq!(acme.show(&id)["totals"]["hours"], "2");

    // the partner completes: Waiting Approval
    let out = bolt.ok(&["outsource", "complete", &id]);
    assert_eq!(out, format!("{id} Waiting Approval (lead acme)\n"));
    deliver(bolt, acme);
    assert_status(acme, bolt, &id, "Waiting Approval");

    // the lead approves: Complete
    let out = acme.ok(&["outsource", "approve", &id]);
    assert_eq!(out, format!("{id} Complete (partner bolt)\n"));
    deliver(acme, bolt);
    assert_status(acme, bolt, &id, "Complete");

    // drained: both sides hold the same channel heads, both ways
    settle(acme, bolt);
    let a = acme.channel("bolt");
    let b = bolt.channel("acme");
    assert_eq!(
        (&a["outbound"]["seq"], &a["outbound"]["hash"]),
        (&b["inbound"]["seq"], &b["inbound"]["hash"]),
        "acme -> bolt channel heads differ: acme {a} / bolt {b}"
    );
    assert_eq!(
        (&b["outbound"]["seq"], &b["outbound"]["hash"]),
        (&a["inbound"]["seq"], &a["inbound"]["hash"]),
        "bolt -> acme channel heads differ: acme {a} / bolt {b}"
    );
    for (who, r) in [("acme", &a), ("bolt", &b)] {
        let seq = r["outbound"]["seq"].as_u64().expect("seq");
        assert!(seq > 0, "{who} sent nothing: {r}");
        assert_ne!(r["outbound"]["hash"], GENESIS, "{who}: {r}");
        assert_eq!(r["outbound"]["acked"], seq, "{who}: {r}");
        assert_eq!(r["outbound"]["lag"], 0, "{who}: {r}");
        assert_eq!(r["quarantined"], 0, "{who}: {r}");
        assert_eq!(r["state"], "paired", "{who}: {r}");
    }

    // both sides hold the same link history and the same shared items, each exactly once
    let (lv, pv) = (acme.show(&id), bolt.show(&id));
    assert_eq!(link_set(&lv), link_set(&pv));
    // (the lead's own record of the completed work, a cost line and a note, stays local)
    let ids = |v: &Value| {
        let mut ids: Vec<String> = items_of(v)
            .iter()
            .filter(|i| i["sharing"] == "shared" || i["sharing"] == "diverged")
            .map(|i| i["id"].as_str().expect("id").to_string())
            .collect();
        ids.sort();
        ids
    };
    let mut want = vec![bt.clone(), bn.clone(), at.clone()];
    want.sort();
    assert_eq!(ids(&lv), want);
    assert_eq!(ids(&pv), want);
    let local: Vec<Value> = items_of(&lv)
        .into_iter()
        .filter(|i| i["sharing"] == "not shared" || i["sharing"] == "internal")
        .collect();
    assert_eq!(
        local.len(),
        2,
        "the lead records the partner's work: {local:?}"
    );
    assert!(local
        .iter()
        .any(|i| i["kind"] == "charge" && i["billable"] == false));
    let again = (acme.sync(), bolt.sync());
    assert_eq!(
        (
            again.0.applied,
            again.1.applied,
            again.0.published,
            again.1.published
        ),
        (0, 0, 0, 0),
        "a drain after settling still moved something: {again:?}"
    );
    acme.log_len();
    bolt.log_len();
}

// ---------------------------------------------------------------------------------------
// refusals of the wrong side
// ---------------------------------------------------------------------------------------

#[test]
fn given_an_assigned_ticket_when_the_lead_makes_a_partner_move_or_the_partner_a_lead_move_then_exit_3_and_nothing_changes(
) {
    let (_net, acme, bolt) = acme_and_bolt();
    let id = sent(&acme, &bolt, "Assigned");

    for args in [
        vec!["outsource", "accept", &id],
        vec!["outsource", "decline", &id, "--reason", "busy"],
        vec!["outsource", "counter", &id, "--hourly-rate", "99"],
    ] {
        let verb = args[1];
        let err = acme.refused(&args, REFUSED);
        assert!(
            err.contains(&format!("only the partner may {verb}"))
                && err.contains("outsource status is Assigned"),
            "{err}"
        );
    }
    for args in [
        vec!["outsource", "cancel", &id],
        vec!["outsource", "revise", &id, "--hourly-rate", "70"],
        vec!["outsource", "force-complete", &id],
    ] {
        let verb = args[1];
        let err = bolt.refused(&args, REFUSED);
        assert!(
            err.contains(&format!("only the lead may {verb}"))
                && err.contains("outsource status is Assigned"),
            "{err}"
        );
    }
    // nothing was sent either way: another round changes nothing
    settle(&acme, &bolt);
    assert_status(&acme, &bolt, &id, "Assigned");
    assert_eq!(acme.show(&id)["outsource"]["terms"]["rate"], "80");
    assert_eq!(bolt.show(&id)["outsource"]["terms"]["rate"], "80");
}

#[test]
fn given_an_in_progress_or_waiting_ticket_when_the_wrong_side_moves_then_exit_3_and_nothing_changes(
) {
    let (_net, acme, bolt) = acme_and_bolt();
    let id = live(&acme, &bolt, "Working");
    bolt.add(&["time", "add", &id, "--hours", "1"]);
    deliver(&bolt, &acme);
    assert_status(&acme, &bolt, &id, "In Progress");

    let err = acme.refused(&["outsource", "complete", &id], REFUSED);
    assert!(
        err.contains("only the partner may complete") && err.contains("In Progress"),
        "{err}"
    );
    let err = acme.refused(&["outsource", "accept", &id], REFUSED);
    assert!(err.contains("only the partner may accept"), "{err}");
    for args in [
        vec!["outsource", "approve", &id],
        vec!["outsource", "reject", &id, "--reason", "no"],
        vec!["outsource", "force-complete", &id],
        vec!["outsource", "cancel", &id],
        vec!["outsource", "revise", &id, "--hourly-rate", "70"],
    ] {
        let verb = args[1];
        let err = bolt.refused(&args, REFUSED);
        assert!(
            err.contains(&format!("only the lead may {verb}")),
            "{verb}: {err}"
        );
    }

    bolt.ok(&["outsource", "complete", &id]);
    deliver(&bolt, &acme);
    assert_status(&acme, &bolt, &id, "Waiting Approval");
    for args in [
        vec!["outsource", "approve", &id],
        vec!["outsource", "reject", &id, "--reason", "no"],
        vec!["outsource", "force-complete", &id],
    ] {
        let verb = args[1];
        let err = bolt.refused(&args, REFUSED);
        assert!(
            err.contains(&format!("only the lead may {verb}"))
                && err.contains("outsource status is Waiting Approval"),
            "{verb}: {err}"
        );
    }
    let err = acme.refused(&["outsource", "complete", &id], REFUSED);
    assert!(err.contains("only the partner may complete"), "{err}");
    // the lead may not cancel an accepted ticket: only force-complete takes it back
    let err = acme.refused(&["outsource", "cancel", &id], REFUSED);
    assert!(
        err.contains("outsource status is Waiting Approval") && err.contains("force-complete"),
        "{err}"
    );
    settle(&acme, &bolt);
    assert_status(&acme, &bolt, &id, "Waiting Approval");
}

// ---------------------------------------------------------------------------------------
// each transition over the wire
// ---------------------------------------------------------------------------------------

#[test]
fn given_an_assigned_ticket_when_the_partner_declines_with_a_reason_then_declined_on_both_and_the_lead_may_send_again(
) {
    let (_net, acme, bolt) = acme_and_bolt();
    let id = sent(&acme, &bolt, "Decline me");
    let first_link = acme.show(&id)["outsource"]["link_id"].clone();

    let err = bolt.refused(&["outsource", "decline", &id, "--reason", "  "], USAGE);
    assert!(err.contains("reason"), "{err}");
    let out = bolt.ok(&["outsource", "decline", &id, "--reason", "No capacity"]);
    assert_eq!(out, format!("{id} Declined (lead acme)\n"));
    deliver(&bolt, &acme);
    assert_status(&acme, &bolt, &id, "Declined");
    let decline = acme.show(&id)["links"][0]["transitions"]
        .as_array()
        .expect("transitions")
        .iter()
        .find(|t| t["move"] == "decline")
        .cloned()
        .expect("a decline transition on the lead");
    assert_eq!(decline["reason"], "No capacity");
    assert_eq!(decline["effective"], true);
    let err = bolt.refused(&["outsource", "accept", &id], REFUSED);
    assert!(err.contains("outsource status is Declined"), "{err}");

    // the lead sends again, to the same partner: the partner's ticket is linked again
    acme.ok(&[
        "outsource",
        "send",
        &id,
        "--to",
        "bolt",
        "--flat-rate",
        "500",
        "--currency",
        "EUR",
    ]);
    deliver(&acme, &bolt);
    assert_status(&acme, &bolt, &id, "Assigned");
    let (lv, pv) = (acme.show(&id), bolt.show(&id));
    assert_eq!(
        bolt.tickets().len(),
        1,
        "the partner must reuse its ticket, not create another"
    );
    assert_eq!(pv["links"].as_array().expect("links").len(), 2, "{pv}");
    assert_eq!(lv["links"].as_array().expect("links").len(), 2, "{lv}");
    assert_ne!(pv["outsource"]["link_id"], first_link);
    assert_eq!(pv["outsource"]["link_id"], lv["outsource"]["link_id"]);
    assert_eq!(pv["outsource"]["terms"]["rate_type"], "flat");
    assert_eq!(pv["outsource"]["terms"]["rate"], "500");
    assert_eq!(bolt.quarantined(), 0);

    // and the new link works: the partner accepts it
    bolt.ok(&["outsource", "accept", &id]);
    deliver(&bolt, &acme);
    assert_status(&acme, &bolt, &id, "Accepted");
}

#[test]
fn given_an_assigned_ticket_when_the_lead_cancels_then_canceled_on_both_and_the_partner_can_no_longer_accept(
) {
    let (_net, acme, bolt) = acme_and_bolt();
    let id = sent(&acme, &bolt, "Cancel me");
    let out = acme.ok(&["outsource", "cancel", &id]);
    assert_eq!(out, format!("{id} Canceled (partner bolt)\n"));
    deliver(&acme, &bolt);
    assert_status(&acme, &bolt, &id, "Canceled");
    let err = bolt.refused(&["outsource", "accept", &id], REFUSED);
    assert!(err.contains("outsource status is Canceled"), "{err}");
}

#[test]
fn given_a_cancel_and_an_accept_made_concurrently_when_both_sides_sync_then_both_resolve_to_canceled(
) {
    let (_net, acme, bolt) = acme_and_bolt();
    let id = sent(&acme, &bolt, "Race");
    // neither side has heard of the other's move
    acme.ok(&["outsource", "cancel", &id]);
    bolt.ok(&["outsource", "accept", &id]);
    assert_eq!(acme.outsource_status(&id).as_deref(), Some("Canceled"));
    assert_eq!(bolt.outsource_status(&id).as_deref(), Some("Accepted"));
    settle(&acme, &bolt);
    assert_status(&acme, &bolt, &id, "Canceled");
    let (lv, pv) = (acme.show(&id), bolt.show(&id));
    assert_eq!(link_set(&lv), link_set(&pv));
    for v in [&lv, &pv] {
        let m = moves(v);
        assert!(
            m.contains(&("cancel".into(), "lead".into(), true))
                && m.contains(&("accept".into(), "partner".into(), false)),
            "the lead's cancel wins, the accept is superseded: {m:?}"
        );
        assert_eq!(v["outsource"]["accepted_terms_version"], Value::Null);
    }
    // a superseded acceptance does not make the link live: the partner's work stays local
    let n = bolt.add(&["note", "add", &id, "--text", "too late"]);
    deliver(&bolt, &acme);
    assert_eq!(get_item(&bolt, &id, &n)["sharing"], "not shared");
    assert!(find_item(&acme.show(&id), &n).is_none());
}

#[test]
fn given_an_assigned_ticket_when_the_partner_counters_and_the_lead_revises_then_acceptance_binds_the_latest_terms_on_both(
) {
    let (_net, acme, bolt) = acme_and_bolt();
    let id = sent(&acme, &bolt, "Negotiate");

    let out = bolt.ok(&[
        "outsource",
        "counter",
        &id,
        "--hourly-rate",
        "95",
        "--authorized-hours",
        "8",
    ]);
    assert_eq!(out, format!("{id} Assigned (lead acme)\n"));
    deliver(&bolt, &acme);
    assert_status(&acme, &bolt, &id, "Assigned");
    for v in [acme.show(&id), bolt.show(&id)] {
        assert_eq!(v["outsource"]["terms_version"], 2, "{}", v["outsource"]);
        assert_eq!(v["outsource"]["terms"]["rate"], "95");
        assert_eq!(v["outsource"]["terms"]["authorized_hours"], "8");
        assert_eq!(
            v["outsource"]["terms"]["currency"], "EUR",
            "unnamed fields keep their value"
        );
    }

    acme.ok(&["outsource", "revise", &id, "--hourly-rate", "90"]);
    deliver(&acme, &bolt);
    assert_status(&acme, &bolt, &id, "Assigned");
    for v in [acme.show(&id), bolt.show(&id)] {
        assert_eq!(v["outsource"]["terms_version"], 3, "{}", v["outsource"]);
        assert_eq!(v["outsource"]["terms"]["rate"], "90");
        assert_eq!(v["outsource"]["terms"]["authorized_hours"], "8");
    }

    bolt.ok(&["outsource", "accept", &id]);
    deliver(&bolt, &acme);
    assert_status(&acme, &bolt, &id, "Accepted");
    let (lv, pv) = (acme.show(&id), bolt.show(&id));
    for v in [&lv, &pv] {
        assert_eq!(
            v["outsource"]["accepted_terms_version"], 3,
            "{}",
            v["outsource"]
        );
        assert_eq!(v["outsource"]["terms"]["rate"], "90");
    }
    assert_eq!(lv["outsource"]["terms"], pv["outsource"]["terms"]);
    assert_eq!(link_set(&lv), link_set(&pv));
    // terms may no longer change once accepted
    let err = acme.refused(
        &["outsource", "revise", &id, "--hourly-rate", "10"],
        REFUSED,
    );
    assert!(err.contains("outsource status is Accepted"), "{err}");
    let err = bolt.refused(
        &["outsource", "counter", &id, "--hourly-rate", "10"],
        REFUSED,
    );
    assert!(err.contains("outsource status is Accepted"), "{err}");
}

#[test]
fn given_waiting_approval_when_the_lead_rejects_with_a_reason_then_in_progress_on_both_and_the_work_goes_on(
) {
    let (_net, acme, bolt) = acme_and_bolt();
    let id = live(&acme, &bolt, "Reject me");
    bolt.ok(&["outsource", "complete", &id]);
    deliver(&bolt, &acme);
    assert_status(&acme, &bolt, &id, "Waiting Approval");

    let err = acme.refused(&["outsource", "reject", &id, "--reason", ""], USAGE);
    assert!(err.contains("reason"), "{err}");
    let out = acme.ok(&[
        "outsource",
        "reject",
        &id,
        "--reason",
        "The labels are missing",
    ]);
    assert_eq!(out, format!("{id} In Progress (partner bolt)\n"));
    deliver(&acme, &bolt);
    assert_status(&acme, &bolt, &id, "In Progress");
    let reject = bolt.show(&id)["links"][0]["transitions"]
        .as_array()
        .expect("transitions")
        .iter()
        .find(|t| t["move"] == "reject")
        .cloned()
        .expect("the partner knows the rejection");
    assert_eq!(reject["reason"], "The labels are missing");

    // sync resumed: the partner's work reaches the lead again
    let n = bolt.add(&["note", "add", &id, "--text", "Labels added"]);
    deliver(&bolt, &acme);
    assert_eq!(get_item(&acme, &id, &n)["text"], "Labels added");
    bolt.ok(&["outsource", "complete", &id]);
    deliver(&bolt, &acme);
    acme.ok(&["outsource", "approve", &id]);
    deliver(&acme, &bolt);
    assert_status(&acme, &bolt, &id, "Complete");
}

#[test]
fn given_an_in_progress_ticket_when_the_lead_force_completes_then_complete_on_both() {
    let (_net, acme, bolt) = acme_and_bolt();
    let id = live(&acme, &bolt, "Take it back");
    bolt.add(&["time", "add", &id, "--hours", "2"]);
    deliver(&bolt, &acme);
    assert_status(&acme, &bolt, &id, "In Progress");
    let out = acme.ok(&["outsource", "force-complete", &id]);
    assert_eq!(out, format!("{id} Complete (partner bolt)\n"));
    deliver(&acme, &bolt);
    assert_status(&acme, &bolt, &id, "Complete");
    let err = bolt.refused(&["outsource", "complete", &id], REFUSED);
    assert!(err.contains("outsource status is Complete"), "{err}");
    let err = acme.refused(&["outsource", "force-complete", &id], REFUSED);
    assert!(err.contains("outsource status is Complete"), "{err}");
}

#[test]
fn given_an_in_progress_ticket_when_the_partner_sets_ticket_status_complete_then_outsource_complete_on_both(
) {
    let (_net, acme, bolt) = acme_and_bolt();
    let id = live(&acme, &bolt, "Done by status");
    bolt.add(&["note", "add", &id, "--text", "working"]);
    deliver(&bolt, &acme);
    assert_status(&acme, &bolt, &id, "In Progress");
    bolt.ok(&["ticket", "status", &id, "Complete"]);
    assert_eq!(bolt.show(&id)["status"], "Complete");
    deliver(&bolt, &acme);
    assert_status(&acme, &bolt, &id, "Complete");
    let m = moves(&acme.show(&id));
    assert!(
        m.contains(&("complete-by-status".into(), "partner".into(), true)),
        "{m:?}"
    );
}

#[test]
fn given_an_accepted_ticket_when_the_lead_sets_ticket_status_complete_then_outsource_complete_on_both(
) {
    let (_net, acme, bolt) = acme_and_bolt();
    let id = live(&acme, &bolt, "Closed by the lead");
    acme.ok(&["ticket", "status", &id, "Complete"]);
    assert_eq!(acme.outsource_status(&id).as_deref(), Some("Complete"));
    deliver(&acme, &bolt);
    assert_status(&acme, &bolt, &id, "Complete");
    let m = moves(&bolt.show(&id));
    assert!(
        m.contains(&("complete-by-status".into(), "lead".into(), true)),
        "{m:?}"
    );
}

#[test]
fn given_an_approved_link_when_the_lead_sends_the_ticket_again_to_the_same_partner_then_a_new_link_is_accepted_and_live(
) {
    let (_net, acme, bolt) = acme_and_bolt();
    let id = live(&acme, &bolt, "Twice");
    bolt.ok(&["outsource", "complete", &id]);
    deliver(&bolt, &acme);
    acme.ok(&["outsource", "approve", &id]);
    deliver(&acme, &bolt);
    assert_status(&acme, &bolt, &id, "Complete");

    acme.ok(&[
        "outsource",
        "send",
        &id,
        "--to",
        "bolt",
        "--hourly-rate",
        "85",
    ]);
    deliver(&acme, &bolt);
    assert_status(&acme, &bolt, &id, "Assigned");
    assert_eq!(bolt.tickets().len(), 1);
    bolt.ok(&["outsource", "accept", &id]);
    deliver(&bolt, &acme);
    assert_status(&acme, &bolt, &id, "Accepted");
    let n = bolt.add(&["note", "add", &id, "--text", "second round"]);
    deliver(&bolt, &acme);
    assert_status(&acme, &bolt, &id, "In Progress");
    assert_eq!(get_item(&acme, &id, &n)["sharing"], "shared");
    let (lv, pv) = (acme.show(&id), bolt.show(&id));
    assert_eq!(link_set(&lv), link_set(&pv));
    assert_eq!(pv["outsource"]["terms"]["rate"], "85");
}

/// The lead sends with a 1-second respond-by deadline; the partner receives the offer;
/// the clock passes the deadline. Returns the ticket id.
fn overdue_offer(acme: &Site, bolt: &Site) -> String {
    let id = acme.create("Answer quickly");
    acme.ok(&[
        "outsource",
        "send",
        &id,
        "--to",
        "bolt",
        "--hourly-rate",
        "80",
        "--respond-within",
        "1s",
    ]);
    deliver(acme, bolt);
    assert_status(acme, bolt, &id, "Assigned");
    let respond_by = bolt.show(&id)["outsource"]["terms"]["respond_by_ms"]
        .as_i64()
        .expect("respond_by_ms");
    wait_until(
        std::time::Duration::from_secs(10),
        "the respond-by deadline to pass",
        || now_ms() > respond_by + 5,
    );
    id
}

#[test]
fn given_an_assigned_ticket_when_the_respond_by_deadline_passes_then_the_partner_cannot_accept_and_both_show_expired(
) {
    let (_net, acme, bolt) = acme_and_bolt();
    let id = overdue_offer(&acme, &bolt);
    let err = bolt.refused(&["outsource", "accept", &id], REFUSED);
    assert!(err.contains("deadline"), "{err}");
    assert_eq!(bolt.outsource_status(&id).as_deref(), Some("Assigned"));

    // the lead's daemon expires the offer, and the expiry reaches the partner
    acme.sync();
    assert_eq!(acme.outsource_status(&id).as_deref(), Some("Expired"));
    settle(&acme, &bolt);
    assert_status(&acme, &bolt, &id, "Expired");
    let m = moves(&bolt.show(&id));
    assert!(m.contains(&("expire".into(), "lead".into(), true)), "{m:?}");
    let err = bolt.refused(&["outsource", "accept", &id], REFUSED);
    assert!(err.contains("outsource status is Expired"), "{err}");
}

#[test]
fn given_an_overdue_offer_when_the_lead_drains_once_then_the_expiry_it_records_is_published_in_the_same_drain(
) {
    let (_net, acme, bolt) = acme_and_bolt();
    let id = overdue_offer(&acme, &bolt);
    // One `sync run --once` on each side, in turn, as for every other transition.
    acme.sync();
    assert_eq!(acme.outsource_status(&id).as_deref(), Some("Expired"));
    let ch = acme.channel("bolt");
    assert_eq!(
        ch["outbound"]["lag"], 0,
        "`sync run --once` recorded the expiry but left it unpublished: {ch}"
    );
    bolt.sync();
    assert_status(&acme, &bolt, &id, "Expired");
}
